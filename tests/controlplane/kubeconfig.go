package main

// `herald-cp kubeconfig`: client identities for the lab's node agents.
//
// The lab's kubelets and kube-proxies authenticate with client certificates
// issued by the cluster CA that `run` generated (no bootstrap tokens, no CSR
// approval round trip): a kubelet is CN system:node:NAME in O system:nodes,
// which the Node authorizer and the NodeRestriction admission plugin expect;
// kube-proxy is CN system:kube-proxy (bound to system:node-proxier by the
// default RBAC policy).

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runKubeconfig(args []string) int {
	var dataDir, user, out, bind string
	var port int
	var groups stringList
	fs := flag.NewFlagSet("herald-cp kubeconfig", flag.ContinueOnError)
	fs.StringVar(&dataDir, "data-dir", "", "the data directory of `herald-cp run` (its pki/ holds the CA)")
	fs.StringVar(&user, "user", "", "the certificate's common name, e.g. system:node:node-1")
	fs.Var(&groups, "group", "an organization (group) of the certificate; repeatable")
	fs.StringVar(&out, "out", "", "where to write the kubeconfig")
	fs.StringVar(&bind, "bind-address", "169.254.100.1", "the apiserver's address")
	fs.IntVar(&port, "secure-port", 6443, "the apiserver's port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if dataDir == "" || user == "" || out == "" || fs.NArg() != 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	p := &pki{dir: filepath.Join(dataDir, "pki")}
	if !fileExists(p.path("ca.crt")) || !fileExists(p.path("ca.key")) {
		fmt.Fprintf(os.Stderr, "herald-cp: no cluster CA in %s (run `herald-cp run` first)\n", p.dir)
		return 1
	}
	if err := p.ensureCA(); err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: loading the cluster CA: %v\n", err)
		return 1
	}
	name := certName(user)
	if err := p.ensureClient(name, user, groups); err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: issuing a certificate for %s: %v\n", user, err)
		return 1
	}
	server := "https://" + net.JoinHostPort(bind, strconv.Itoa(port))
	if err := p.writeKubeconfig(out, server, user, name); err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: writing %s: %v\n", out, err)
		return 1
	}
	return 0
}

// certName is a file-name-safe form of a common name.
func certName(cn string) string {
	return "client-" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, cn)
}

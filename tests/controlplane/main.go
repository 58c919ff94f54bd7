// herald-cp: a real Kubernetes control plane for Herald's test lab.
//
// One binary, several roles:
//
//	herald-cp run --data-dir DIR --bind-address IP --secure-port N --service-cluster-ip-range CIDR
//	    the supervisor: generates PKI + kubeconfig, runs embedded etcd in-process
//	    and spawns itself as `kube-apiserver` and `kube-controller-manager` child
//	    processes (separate processes because both components own process-global
//	    state: signal handlers, feature gates, metrics registries, klog flags).
//	herald-cp version
//	    prints the Kubernetes version this binary was built from.
//	herald-cp kubeconfig --data-dir DIR --user CN [--group G]... --out FILE
//	    issues a client certificate from the cluster CA of DIR and writes a
//	    self-contained kubeconfig for it (the lab's kubelets: system:node:NAME
//	    in group system:nodes).
//	herald-cp kube-apiserver ARGS... / kube-controller-manager ARGS... / kube-scheduler ARGS...
//	    the upstream commands, unchanged (used by `run`; handy for debugging).
//
// kubelet and kube-proxy are separate binaries built from the same module
// (tests/setup.sh): they run in the lab's node namespaces, not here.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream main
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream main
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream main
	"k8s.io/component-base/version"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

const usage = `usage:
  herald-cp run --data-dir DIR [--bind-address IP] [--secure-port N] [--service-cluster-ip-range CIDR] [--ready-timeout DURATION]
  herald-cp version
  herald-cp kubeconfig --data-dir DIR --user CN [--group G]... --out FILE
  herald-cp kube-apiserver ARGS...            (internal: upstream kube-apiserver)
  herald-cp kube-controller-manager ARGS...   (internal: upstream kube-controller-manager)
  herald-cp kube-scheduler ARGS...            (internal: upstream kube-scheduler)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "run":
		os.Exit(runSupervisor(args))
	case "version", "--version", "-version":
		fmt.Println(kubeVersion())
	case "kube-apiserver", "apiserver":
		// Build the command only here: NewAPIServerCommand installs the
		// process signal handler, which may happen once per process.
		cmd := apiserverapp.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager", "controller-manager":
		cmd := kcmapp.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler", "scheduler":
		cmd := schedulerapp.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubeconfig":
		os.Exit(runKubeconfig(args))
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "herald-cp: unknown command %q\n%s", sub, usage)
		os.Exit(2)
	}
}

// kubeVersion is the Kubernetes release this binary embeds. setup.sh stamps
// k8s.io/component-base/version via -ldflags (as upstream's build does, so
// the apiserver's /version reports it too); without the stamp fall back to
// the k8s.io/kubernetes module version from the build info.
func kubeVersion() string {
	if v := version.Get().GitVersion; v != "" && !strings.HasPrefix(v, "v0.0.0") {
		return v
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/kubernetes" {
				return d.Version
			}
		}
	}
	return "unknown"
}

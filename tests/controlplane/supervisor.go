package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Controllers kube-controller-manager runs. Deliberately no node lifecycle /
// taint eviction (there are no kubelets, they would evict everything), no
// node IPAM, no cloud or volume controllers, no scheduler-ish things.
var kcmControllers = []string{
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"endpoints-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"pod-garbage-collector-controller",
	"service-cidr-controller",
	"replicaset-controller",
	"deployment-controller",
	"daemonset-controller",
	// helm hooks (the chart's pre-delete Job) need Jobs to run.
	"job-controller",
	"ttl-after-finished-controller",
}

// With real kubelets (--node-lifecycle): Nodes whose kubelet stops
// heartbeating go NotReady/Unknown and their pods not ready. Off by default:
// the harness-played Nodes of the process-mode lab never heartbeat.
var kcmNodeLifecycleControllers = []string{
	"node-lifecycle-controller",
}

type runOpts struct {
	dataDir       string
	bindAddress   string
	securePort    int
	serviceCIDR   string
	readyTimeout  time.Duration
	scheduler     bool
	nodeLifecycle bool
}

// supervisor log: DIR/herald-cp.log (the terminal only gets the ready line
// on stdout, or one error line on stderr).
var logger = log.New(io.Discard, "", 0)

func fatalf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	logger.Print("FATAL: " + msg)
	fmt.Fprintln(os.Stderr, "herald-cp: "+msg)
}

func runSupervisor(args []string) int {
	// Children are spawned from this goroutine with Pdeathsig, which fires
	// when the *thread* that forked them exits; pin the main goroutine to its
	// thread so that only happens when the process dies.
	runtime.LockOSThread()

	var o runOpts
	fs := flag.NewFlagSet("herald-cp run", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for PKI, kubeconfig, etcd data and logs (required)")
	fs.StringVar(&o.bindAddress, "bind-address", "169.254.100.1", "IPv4 address kube-apiserver binds to (only this one)")
	fs.IntVar(&o.securePort, "secure-port", 6443, "kube-apiserver HTTPS port")
	fs.StringVar(&o.serviceCIDR, "service-cluster-ip-range", "198.19.0.0/16", "Service ClusterIP range")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 300*time.Second, "give up if not ready within this time")
	fs.BoolVar(&o.scheduler, "scheduler", true, "run kube-scheduler (Deployment and DaemonSet pods get nodes)")
	fs.BoolVar(&o.nodeLifecycle, "node-lifecycle", false, "run the node lifecycle controller (Nodes without heartbeat go NotReady; for real kubelets only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.dataDir == "" || fs.NArg() != 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	bindIP := net.ParseIP(o.bindAddress)
	if bindIP == nil {
		fmt.Fprintf(os.Stderr, "herald-cp: bad --bind-address %q\n", o.bindAddress)
		return 2
	}
	// A dual-stack range ("v4cidr,v6cidr"): the certificate names the primary family's first IP.
	svcIP, err := firstServiceIP(strings.Split(o.serviceCIDR, ",")[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: bad --service-cluster-ip-range %q: %v\n", o.serviceCIDR, err)
		return 2
	}
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: %v\n", err)
		return 1
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "herald-cp.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "herald-cp: %v\n", err)
		return 1
	}
	defer logFile.Close()
	logger = log.New(logFile, "", log.LstdFlags|log.Lmicroseconds)
	logger.Printf("starting: pid %d, kubernetes %s, data dir %s", os.Getpid(), kubeVersion(), dir)

	pidFile := filepath.Join(dir, "herald-cp.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fatalf("writing pid file: %v", err)
		return 1
	}
	defer os.Remove(pidFile)

	// Signals from here on mean "shut down cleanly".
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	s := &supervisor{opts: o, dir: dir, bindIP: bindIP, svcIP: svcIP, sigs: sigs, exited: make(chan *child, 4)}
	code := s.run()
	s.shutdown()
	logger.Printf("exiting with status %d", code)
	return code
}

type supervisor struct {
	opts     runOpts
	dir      string
	bindIP   net.IP
	svcIP    net.IP
	sigs     chan os.Signal
	etcd     *embed.Etcd
	children []*child
	exited   chan *child
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (s *supervisor) server() string {
	return "https://" + net.JoinHostPort(s.opts.bindAddress, strconv.Itoa(s.opts.securePort))
}

// errStop: a signal asked us to stop before we were ready.
var errStop = errors.New("stopped by signal")

func (s *supervisor) run() int {
	pkiDir := filepath.Join(s.dir, "pki")
	p, err := ensurePKI(pkiDir, s.bindIP, s.svcIP)
	if err != nil {
		fatalf("generating PKI in %s: %v", pkiDir, err)
		return 1
	}
	adminKubeconfig := filepath.Join(s.dir, "kubeconfig")
	if err := p.writeKubeconfig(adminKubeconfig, s.server(), "herald-admin", "admin"); err != nil {
		fatalf("writing kubeconfig: %v", err)
		return 1
	}
	kcmKubeconfig := filepath.Join(s.dir, "controller-manager.kubeconfig")
	if err := p.writeKubeconfig(kcmKubeconfig, s.server(), "system:kube-controller-manager", "controller-manager"); err != nil {
		fatalf("writing controller-manager kubeconfig: %v", err)
		return 1
	}

	schedKubeconfig := filepath.Join(s.dir, "scheduler.kubeconfig")
	if err := p.writeKubeconfig(schedKubeconfig, s.server(), "system:kube-scheduler", "scheduler"); err != nil {
		fatalf("writing scheduler kubeconfig: %v", err)
		return 1
	}
	// For the lab's kube-proxies (they run in node namespaces).
	if err := p.writeKubeconfig(filepath.Join(s.dir, "kube-proxy.kubeconfig"), s.server(), "system:kube-proxy", "kube-proxy"); err != nil {
		fatalf("writing kube-proxy kubeconfig: %v", err)
		return 1
	}

	etcdURL, err := s.startEtcd()
	if err != nil {
		fatalf("starting etcd: %v (see %s)", err, filepath.Join(s.dir, "etcd.log"))
		return 1
	}
	logger.Printf("etcd ready at %s", etcdURL)

	apiserverArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + s.opts.bindAddress,
		"--advertise-address=" + s.opts.bindAddress,
		"--secure-port=" + strconv.Itoa(s.opts.securePort),
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + p.path("apiserver.crt"),
		"--tls-private-key-file=" + p.path("apiserver.key"),
		"--client-ca-file=" + p.path("ca.crt"),
		"--service-cluster-ip-range=" + s.opts.serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--allow-privileged=true",
		// Real kubelets (logs, exec, port-forward) are reached at their
		// node address; the lab has no DNS for node names.
		"--kubelet-preferred-address-types=InternalIP",
		// The "kubernetes" Service's endpoint would be the link-local bind
		// address, which Endpoints validation rejects; nothing in the lab
		// talks to the apiserver through the Service anyway.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	if err := s.spawn("kube-apiserver", apiserverArgs); err != nil {
		fatalf("%v", err)
		return 1
	}

	client, err := s.adminHTTPClient(p)
	if err != nil {
		fatalf("%v", err)
		return 1
	}
	deadline := time.Now().Add(s.opts.readyTimeout)
	if err := s.waitFor(deadline, "apiserver /readyz", func() bool {
		return s.get(client, "/readyz") == http.StatusOK
	}); err != nil {
		return s.failed(err)
	}
	logger.Printf("kube-apiserver ready")

	controllers := kcmControllers
	if s.opts.nodeLifecycle {
		controllers = append(slices.Clone(controllers), kcmNodeLifecycleControllers...)
	}
	kcmArgs := []string{
		"--kubeconfig=" + kcmKubeconfig,
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--controllers=" + strings.Join(controllers, ","),
		"--service-account-private-key-file=" + p.path("sa.key"),
		"--root-ca-file=" + p.path("ca.crt"),
		"--service-cluster-ip-range=" + s.opts.serviceCIDR,
		// No HTTPS endpoint of its own: nothing to clash with on 10257.
		"--secure-port=0",
		"--concurrent-endpoint-syncs=5",
		"--profiling=false",
		"--v=1",
	}
	if err := s.spawn("kube-controller-manager", kcmArgs); err != nil {
		fatalf("%v", err)
		return 1
	}
	// The ServiceAccount admission plugin refuses Pods until a namespace has
	// its "default" ServiceAccount, which the controller-manager creates; so
	// "ready" also means the controller-manager is doing its job.
	if err := s.waitFor(deadline, "controller-manager (default ServiceAccount)", func() bool {
		return s.get(client, "/api/v1/namespaces/default/serviceaccounts/default") == http.StatusOK
	}); err != nil {
		return s.failed(err)
	}

	if s.opts.scheduler {
		schedArgs := []string{
			"--kubeconfig=" + schedKubeconfig,
			"--leader-elect=false",
			// No HTTPS endpoint of its own: nothing to clash with on 10259.
			"--secure-port=0",
			"--profiling=false",
			"--v=1",
		}
		if err := s.spawn("kube-scheduler", schedArgs); err != nil {
			fatalf("%v", err)
			return 1
		}
	}

	logger.Printf("ready")
	fmt.Println("herald-cp: ready")

	select {
	case sig := <-s.sigs:
		logger.Printf("received %v, shutting down", sig)
		return 0
	case c := <-s.exited:
		fatalf("%s exited unexpectedly: %v (see %s)", c.name, c.err, filepath.Join(s.dir, c.name+".log"))
		return 1
	case err := <-s.etcd.Err():
		fatalf("etcd failed: %v", err)
		return 1
	}
}

func (s *supervisor) failed(err error) int {
	if errors.Is(err, errStop) {
		logger.Printf("stopped before ready")
		return 0
	}
	fatalf("%v", err)
	return 1
}

// waitFor polls cond every 250ms until it holds, the deadline passes, a
// child exits or a signal arrives.
func (s *supervisor) waitFor(deadline time.Time, what string, cond func() bool) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s (logs in %s)", s.opts.readyTimeout, what, s.dir)
		}
		select {
		case sig := <-s.sigs:
			logger.Printf("received %v while waiting for %s", sig, what)
			return errStop
		case c := <-s.exited:
			logPath := filepath.Join(s.dir, c.name+".log")
			return fmt.Errorf("%s exited while waiting for %s: %v%s (see %s)", c.name, what, c.err, lastError(logPath), logPath)
		case <-tick.C:
		}
	}
}

func (s *supervisor) adminHTTPClient(p *pki) (*http.Client, error) {
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(p.path("admin.crt"), p.path("admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
			DisableKeepAlives: true,
		},
	}, nil
}

func (s *supervisor) get(c *http.Client, path string) int {
	resp, err := c.Get(s.server() + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// lastError returns ": <last klog error line>" from a component log, or "".
func lastError(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-50; i-- {
		l := lines[i]
		if strings.HasPrefix(l, "E") || strings.HasPrefix(l, "F") || strings.HasPrefix(l, "Error:") {
			if len(l) > 400 {
				l = l[:400] + "..."
			}
			return ": " + l
		}
	}
	return ""
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startEtcd runs etcd in this process, listening on free 127.0.0.1 ports
// (never the default 2379/2380, which something else may use).
func (s *supervisor) startEtcd() (string, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		clientPort, err := freePort()
		if err != nil {
			return "", err
		}
		peerPort, err := freePort()
		if err != nil {
			return "", err
		}
		if peerPort == clientPort {
			continue
		}
		clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
		peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}

		cfg := embed.NewConfig()
		cfg.Name = "herald-cp"
		cfg.Dir = filepath.Join(s.dir, "etcd")
		cfg.ListenClientUrls = []url.URL{clientURL}
		cfg.AdvertiseClientUrls = []url.URL{clientURL}
		cfg.ListenPeerUrls = []url.URL{peerURL}
		cfg.AdvertisePeerUrls = []url.URL{peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.ListenMetricsUrls = nil
		cfg.Logger = "zap"
		cfg.LogLevel = "warn"
		cfg.LogOutputs = []string{filepath.Join(s.dir, "etcd.log")}
		// NewConfig leaves this 0, which logs every request as "expensive".
		cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
		// Throwaway test data: skip fsync, it only costs latency.
		cfg.UnsafeNoFsync = true

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			logger.Printf("etcd start attempt %d failed: %v", attempt+1, err)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			s.etcd = e
			return clientURL.String(), nil
		case err := <-e.Err():
			e.Close()
			lastErr = err
		case <-time.After(60 * time.Second):
			e.Server.Stop()
			e.Close()
			return "", errors.New("etcd not ready after 60s")
		}
	}
	return "", lastErr
}

// spawn starts this binary again as a child running the given component.
func (s *supervisor) spawn(name string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "==== %s herald-cp starting %s\n", time.Now().Format(time.RFC3339), name)
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Dir = s.dir
	cmd.Stdin = nil
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Die with the supervisor even if it is SIGKILLed.
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a terminal's Ctrl-C reaches only the
		// supervisor, which then stops the children in order.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	logger.Printf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.children = append(s.children, c)
	go func() {
		c.err = cmd.Wait()
		lf.Close()
		close(c.done)
		if c.err == nil {
			c.err = errors.New("exit status 0")
		}
		select {
		case s.exited <- c:
		default:
		}
	}()
	return nil
}

// shutdown stops the children in reverse start order (controller-manager,
// then apiserver), each with SIGTERM and a bounded grace period, then etcd.
func (s *supervisor) shutdown() {
	for i := len(s.children) - 1; i >= 0; i-- {
		c := s.children[i]
		select {
		case <-c.done:
			continue
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			logger.Printf("%s stopped", c.name)
		case <-time.After(20 * time.Second):
			logger.Printf("%s did not stop within 20s, killing it", c.name)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	if s.etcd != nil {
		done := make(chan struct{})
		go func() { s.etcd.Close(); close(done) }()
		select {
		case <-done:
			logger.Printf("etcd stopped")
		case <-time.After(15 * time.Second):
			logger.Printf("etcd did not stop within 15s")
		}
	}
}

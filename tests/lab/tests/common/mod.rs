//! The world of the speaker end-to-end tests and benchmarks — `speaker_forwarding.rs`,
//! `speaker_bgp.rs` and `speaker_bgp_bench.rs` (through `bgp_support`), `speaker_l2.rs` and
//! `l2_failover_bench.rs` (through `l2_support`): a namespace lab whose nodes are registered
//! as Kubernetes Nodes, an install namespace with the memberlist Secret and the mode's Herald
//! objects, an apps namespace for pods and Services, the real `herald-speaker` started as a
//! process in node namespaces and, for the benchmarks, the real `herald-controller`.
//!
//! The tests play the controller unless they start one: [`World::apply_service`] writes
//! `status.loadBalancer.ingress` itself, so the addresses are known in advance. Each world
//! has its own `loadBalancerClass`, so worlds never see each other's Services.
//!
//! What differs per mode stays with the mode: it builds its [`World`] from a [`Setup`] (the
//! router, the speaker's flags) and adds the readers of its announcements (routes, neighbour
//! entries, records, nftables) in an `impl World` block of its own.
//!
//! I/O: kubectl against the shared control plane, processes and commands in the lab's
//! namespaces (`curl` for the metrics). Everything is removed when the world drops, also on
//! failure: speakers first (so nothing watches or announces while the objects go), then the
//! cluster-scoped objects, the Kubernetes namespaces and Nodes, then the network lab.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_lab::echo::EchoReply;
use herald_lab::herald::{self, MEMBERLIST_SECRET};
use herald_lab::kube::{NodeGuard, ObjectGuard, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::topology::RouterSetup;
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, LabProcess, Result, paths, plan};
use serde_json::{Value, json};

/// The echo servers' port (the pods' target port).
pub const ECHO_PORT: u16 = plan::ECHO_PORT;
/// The Services' port on the external address.
pub const SERVICE_PORT: u16 = 80;
/// The client's address (what `Local` must preserve).
pub const CLIENT_V4: &str = "198.51.100.100";
/// How long a speaker may take to list everything and apply its first plan.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long kube-controller-manager may take to reflect a change in EndpointSlices (and a
/// Service its first apply). Generous: the control plane is shared with other test
/// binaries, and a 10,000-Service benchmark next door delays EndpointSlices by a minute.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(90);

/// What a mode sets up its way.
pub struct Setup {
    /// Static routes on the router to the pod CIDRs (off when the speakers announce them).
    pub router_pod_routes: bool,
    /// The speaker's mode flags (`--layer2`, `--bgp`, `--forwarding`).
    pub speaker_flags: &'static [&'static str],
    /// The speaker's `--resync-interval`.
    pub resync_interval: &'static str,
    /// Runs the speakers under `nice` (see [`speaker_niceness`]).
    pub niced: bool,
    /// How long [`World::wait_ready_endpoints`] waits.
    pub endpoints_timeout: Duration,
}

/// One test's world. Fields drop in order: speakers first, then the cluster-scoped objects,
/// the Kubernetes namespaces and Nodes, then the network lab.
pub struct World {
    speakers: Vec<Option<LabProcess>>,
    /// Cluster-scoped objects the test created (they would outlive the namespaces).
    pub guards: Vec<ObjectGuard>,
    pub apps: TestNamespace,
    pub install: TestNamespace,
    _nodes: Vec<NodeGuard>,
    pub lab: Lab,
    pub kubectl: Kubectl,
    /// The `loadBalancerClass` of this world's speakers (and controller).
    pub class: String,
    setup: Setup,
    speaker: PathBuf,
    /// Speaker start-ups so far, to name each life's log file.
    starts: usize,
    /// Added to every speaker's command line from now on.
    extra_args: Vec<String>,
    /// A controller ran: it may have left its finalizer on the pools.
    controller_started: bool,
}

/// The shared control plane with Herald's CRDs served.
pub fn kubectl_with_crds() -> Result<Kubectl> {
    let kubectl = ControlPlane::ensure()?.kubectl()?;
    herald::install_crds(&kubectl)?;
    Ok(kubectl)
}

/// The speakers' scheduling niceness in the lab: `HERALD_SPEAKER_NICE`, default `-10`.
///
/// The lab machine has 2 cores shared with compilers and the control plane (load averages of
/// 10-14 are common). Membership probes time out after 50 ms, and at that load a speaker at
/// normal priority is often not scheduled in time: its peers suspect it and sometimes
/// declare it down, which moves addresses for no reason. A node that runs its speaker with
/// the CPU share it needs (a DaemonSet with CPU requests and a high priority class) does not
/// see that; `-10` gives the lab speakers such a share. `0` runs them at normal priority.
pub fn speaker_niceness() -> String {
    std::env::var("HERALD_SPEAKER_NICE").unwrap_or_else(|_| "-10".to_string())
}

impl World {
    /// A lab with `nodes` nodes (no pods yet, no FRR: the router only routes and resolves
    /// neighbours), registered as Nodes; an install namespace with the memberlist Secret; an
    /// apps namespace. The mode adds its Herald objects.
    pub fn create(hint: &str, nodes: usize, setup: Setup) -> Result<World> {
        let speaker = herald::speaker_binary()?;
        let kubectl = kubectl_with_crds()?;
        let lab = Lab::builder()
            .echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
            .nodes(nodes)
            .router(RouterSetup::NoFrr)
            .router_pod_routes(setup.router_pod_routes)
            .build()?;
        let node_guards = lab.register_nodes(&kubectl)?;
        let install = kubectl.test_namespace(&format!("{hint}-sys"))?;
        let apps = kubectl.test_namespace(hint)?;
        let class = format!("lab.herald.dev/{}", install.name());
        let key = format!("{}-{}", install.name(), "membership-key-for-tests-only");
        kubectl.run(&[
            "create",
            "secret",
            "generic",
            MEMBERLIST_SECRET,
            "-n",
            install.name(),
            &format!("--from-literal=secretkey={key}"),
        ])?;
        Ok(World {
            speakers: (0..nodes).map(|_| None).collect(),
            guards: Vec::new(),
            apps,
            install,
            _nodes: node_guards,
            lab,
            kubectl,
            class,
            setup,
            speaker,
            starts: 0,
            extra_args: Vec::new(),
            controller_started: false,
        })
    }

    /// Applies the Herald object `kind`/`name` with `spec` in the install namespace.
    pub fn install_object(&self, kind: &str, name: &str, spec: Value) -> Result<()> {
        let object = herald::object(kind, name, self.install.name(), spec);
        self.install.apply(&object.to_string()).map(|_| ())
    }

    /// Node `node`'s (1-based) Kubernetes name, which is also its namespace's name.
    pub fn node_name(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.name.clone())
    }

    /// The 1-based index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Result<usize> {
        self.lab
            .nodes()
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.index)
            .ok_or_else(|| LabError::Invalid(format!("no lab node called {name:?}")))
    }

    pub fn lan_v4(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.lan_v4.to_string())
    }

    pub fn lan_v6(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.lan_v6.to_string())
    }

    /// Adds `args` to the command line of every speaker started from now on.
    pub fn speaker_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts the speaker of node `node` (1-based) with the lab's admin kubeconfig and waits
    /// until it applied its first full plan.
    pub fn start_speaker(&mut self, node: usize) -> Result<()> {
        self.start_speaker_with_kubeconfig(node, &paths::kubeconfig_path())
    }

    /// [`World::start_speaker`] with another kubeconfig (e.g. a ServiceAccount's token).
    /// Each life logs to its own file (`speaker-nI-K.log`).
    pub fn start_speaker_with_kubeconfig(&mut self, node: usize, kubeconfig: &Path) -> Result<()> {
        let node_name = self.node_name(node)?;
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        let binary = self.speaker.to_string_lossy().into_owned();
        let niceness = speaker_niceness();
        let mut argv: Vec<&str> = Vec::new();
        if self.setup.niced && niceness != "0" {
            argv.extend(["nice", "-n", niceness.as_str()]);
        }
        argv.extend([
            binary.as_str(),
            "--node-name",
            &node_name,
            "--namespace",
            self.install.name(),
            "--kubeconfig",
            &kubeconfig,
        ]);
        argv.extend(self.setup.speaker_flags);
        argv.extend([
            "--memberlist-secret",
            MEMBERLIST_SECRET,
            "--load-balancer-class",
            &self.class,
            "--ignore-classless",
            "--resync-interval",
            self.setup.resync_interval,
        ]);
        argv.extend(self.extra_args.iter().map(String::as_str));
        self.starts += 1;
        let mut process =
            self.lab
                .spawn_in_node(node, &format!("speaker-n{node}-{}", self.starts), &argv)?;
        let ready = process.wait_for_log("first full apply done", READY_TIMEOUT);
        self.speakers[node - 1] = Some(process);
        ready
    }

    pub fn start_all_speakers(&mut self) -> Result<()> {
        for node in 1..=self.lab.nodes().len() {
            self.start_speaker(node)?;
        }
        Ok(())
    }

    pub fn speaker_mut(&mut self, node: usize) -> Result<&mut LabProcess> {
        node.checked_sub(1)
            .and_then(|index| self.speakers.get_mut(index))
            .and_then(Option::as_mut)
            .ok_or_else(|| LabError::Invalid(format!("no speaker running on node {node}")))
    }

    /// Every speaker started so far (the latest life of each node's).
    pub fn speakers_mut(&mut self) -> impl Iterator<Item = &mut LabProcess> {
        self.speakers.iter_mut().flatten()
    }

    /// SIGKILL of node `node`'s speaker (no goodbye to its peers, nothing cleaned up).
    pub fn kill_speaker(&mut self, node: usize) -> Result<()> {
        self.speaker_mut(node)?.kill()
    }

    /// The last 40 lines of every speaker's log (for failure messages).
    pub fn speaker_logs(&self) -> String {
        let mut out = String::new();
        for process in self.speakers.iter().flatten() {
            let log = process.log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            out.push_str(&format!("--- {} (tail)\n{tail}\n", process.name()));
        }
        out
    }

    /// Starts the real `herald-controller` for this world's install namespace and class,
    /// inside node `node`'s namespace (it reaches the apiserver over the control-plane
    /// link), without leader election; killed when the handle drops.
    pub fn start_controller(&mut self, node: usize) -> Result<LabProcess> {
        let binary = herald::controller_binary()?.to_string_lossy().into_owned();
        let kubeconfig = paths::kubeconfig_path().to_string_lossy().into_owned();
        self.controller_started = true;
        self.lab.spawn_in_node(
            node,
            "controller",
            &[
                &binary,
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                self.install.name(),
                "--load-balancer-class",
                &self.class,
                "--ignore-classless",
                "--leader-elect",
                "false",
                "--identity",
                "bench",
                "--metrics-addr",
                "127.0.0.1:7472",
            ],
        )
    }

    /// Adds a pod namespace on `node` with an echo server and registers it as a Ready Pod
    /// labelled `app=APP`.
    pub fn add_pod(&mut self, node: usize, name: &str, app: &str) -> Result<()> {
        self.lab.add_pod(node, name)?;
        self.apps
            .create_pod(&self.lab.pod_spec(name)?.label("app", app))
    }

    pub fn set_pod_ready(&self, name: &str, app: &str, ready: bool) -> Result<()> {
        self.apps
            .set_pod_ready(&self.lab.pod_spec(name)?.label("app", app), ready)
    }

    /// A LoadBalancer Service of this world's class selecting `app=APP`, TCP 80 -> 8080.
    pub fn service(&self, name: &str, app: &str, policy: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, app)
            .load_balancer()
            .traffic_policy(policy)
            .port(PortSpec::tcp("http", SERVICE_PORT).target(ECHO_PORT));
        spec.load_balancer_class = Some(self.class.clone());
        spec
    }

    /// Creates the Service and writes its ingress addresses, as the controller would.
    /// No NodePorts: Herald's forwarding does not use them (and the shared cluster's
    /// NodePort range may be exhausted by other tests).
    pub fn apply_service(&self, spec: &ServiceSpec, ingress: &[&str]) -> Result<()> {
        let manifest = spec.clone().without_node_ports().manifest(self.apps.name());
        self.apps.apply(&manifest.to_string())?;
        let ingress: Vec<Value> = ingress
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        self.kubectl.patch_status(
            "service",
            &spec.name,
            Some(self.apps.name()),
            &json!({"status": {"loadBalancer": {"ingress": ingress}}}),
        )
    }

    /// Waits until Service `service` has `count` ready endpoints (bounded by the mode's
    /// [`Setup::endpoints_timeout`]).
    pub fn wait_ready_endpoints(&self, service: &str, count: usize) -> Result<()> {
        self.apps
            .wait_endpoints(service, self.setup.endpoints_timeout, |eps| {
                eps.iter().filter(|e| e.ready).count() == count
            })
            .map(|_| ())
    }

    /// `count` requests from the client to `ip:80`; every one must succeed.
    pub fn sample(&self, ip: &str, count: usize) -> Result<Vec<EchoReply>> {
        let ip = parse_ip(ip)?;
        (0..count)
            .map(|_| self.lab.client_get(ip, SERVICE_PORT))
            .collect()
    }

    /// Node `node`'s speaker metrics text.
    pub fn metrics(&self, node: usize) -> Result<String> {
        herald::speaker_metrics(&self.lab.node(node)?.netns)
    }

    /// Node `node`'s series `name` (exact series text, e.g.
    /// `herald_speaker_bgp_session_up{peer="router"}`); an error when absent.
    pub fn metric(&self, node: usize, name: &str) -> Result<f64> {
        let text = self.metrics(node)?;
        herald::metric(&text, name)
            .ok_or_else(|| LabError::parse(format!("metric {name} on node {node}"), text))
    }

    /// Sum of every series of metric family `name` on node `node` (0 when absent).
    pub fn metric_sum(&self, node: usize, name: &str) -> Result<f64> {
        Ok(herald::metric_sum(&self.metrics(node)?, name))
    }
}

impl Drop for World {
    /// A controller marks the pools in use with a finalizer; once it is gone (tests stop it
    /// before the world) nobody removes that, and the install namespace would hang in
    /// Terminating. Runs before the fields drop (speakers, namespaces, lab).
    fn drop(&mut self) {
        if self.controller_started {
            herald::release_pools(&self.kubectl, self.install.name());
        }
    }
}

pub fn parse_ip(text: &str) -> Result<IpAddr> {
    text.parse()
        .map_err(|e| LabError::parse(format!("address {text:?}"), e))
}

/// The pods that answered.
pub fn pods_of(replies: &[EchoReply]) -> BTreeSet<String> {
    replies.iter().map(|r| r.pod.clone()).collect()
}

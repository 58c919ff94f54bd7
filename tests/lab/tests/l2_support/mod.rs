//! Shared world of the layer-2 end-to-end tests (`speaker_l2.rs`) and the failover
//! benchmark (`l2_failover_bench.rs`): a namespace lab whose router sits on the node LAN, real
//! `herald-speaker` processes in the node namespaces (layer 2 on, forwarding on, membership
//! authenticated with a Secret's key), an install namespace with an IPAddressPool in the
//! LAN's L2 range (192.0.2.128/25, 2001:db8:1::100/120) and an L2Advertisement for it, and an
//! apps namespace for Services.
//!
//! The tests play the controller (they write `status.loadBalancer.ingress` themselves) so the
//! address is known in advance. The router has the L2 range on-link, so it resolves every
//! address with ARP / Neighbor Solicitations and learns whatever MAC the owning speaker
//! answers with; the owner's nftables DNAT then carries the traffic to the pods.
//!
//! What "who owns it" means here, three independent ways: the current-announcer record on
//! the Service (`l2-announcer.herald.dev/<address>` annotation), the MAC in the router's
//! neighbour table, and — with `externalTrafficPolicy: Local` and one pod per node — the node
//! the echo reply comes from. Everything is removed when the world drops, also on failure.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_lab::echo::EchoReply;
use herald_lab::kube::{NodeGuard, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::topology::{RouterSetup, http_get_from};
use herald_lab::wait::{Poll, poll_until, poll_until_ok};
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, LabProcess, Result, paths};
use serde_json::{Value, json};

/// Name of the memberlist Secret the tests create.
pub const MEMBERLIST_SECRET: &str = "herald-memberlist";
/// The echo servers' port (the pods' target port).
pub const ECHO_PORT: u16 = 8080;
/// The Services' port on the external address.
pub const SERVICE_PORT: u16 = 80;
/// The client's address (what `Local` preserves).
pub const CLIENT_V4: &str = "198.51.100.100";
/// The L2-mode pool of the address plan (inside the node LAN).
pub const L2_POOL: [&str; 2] = ["192.0.2.128/25", "2001:db8:1::100/120"];
/// Prefix of the speakers' current-announcer record annotations.
pub const RECORD_PREFIX: &str = "l2-announcer.herald.dev/";
/// How long a speaker may take to list everything and apply its first plan.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long setting up a Service (EndpointSlice, first announcement) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Generous bound for a failover (the goal is under one second).
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(10);

pub fn speaker_binary() -> Result<PathBuf> {
    let path = std::env::var_os("HERALD_SPEAKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::target_dir().join("debug/herald-speaker"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::MissingTool {
            tool: "herald-speaker".into(),
            hint: format!(
                "{} is missing: run `cargo build -p herald-speaker` (tests/run.sh builds the workspace)",
                path.display()
            ),
        })
    }
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

pub fn kubectl_with_crds() -> Result<Kubectl> {
    let kubectl = ControlPlane::ensure()?.kubectl()?;
    let crd_dir = paths::repo_root().join("charts/herald/crds");
    kubectl.run(&["apply", "-f", &crd_dir.to_string_lossy()])?;
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "crd/ipaddresspools.herald.dev",
        "crd/l2advertisements.herald.dev",
        "crd/bgpadvertisements.herald.dev",
        "crd/bgppeers.herald.dev",
        "crd/communities.herald.dev",
        "--timeout=60s",
    ])?;
    Ok(kubectl)
}

pub fn parse_ip(text: &str) -> Result<IpAddr> {
    text.parse()
        .map_err(|e| LabError::parse(format!("address {text:?}"), e))
}

/// The record annotation key for `address` (the speaker's own encoding: IPv4 dotted quad,
/// IPv6 as eight 4-digit groups joined by `-`).
pub fn record_key(address: IpAddr) -> String {
    let label = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|segment| format!("{segment:04x}"))
            .collect::<Vec<_>>()
            .join("-"),
    };
    format!("{RECORD_PREFIX}{label}")
}

/// The p-th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

/// One test's world. Fields drop in order: speakers first (so nothing watches or announces
/// while the objects go), then the Kubernetes namespaces and Nodes, then the network lab.
pub struct L2World {
    speakers: Vec<Option<LabProcess>>,
    pub apps: TestNamespace,
    pub install: TestNamespace,
    _nodes: Vec<NodeGuard>,
    pub lab: Lab,
    pub kubectl: Kubectl,
    pub class: String,
    speaker: PathBuf,
    /// Speaker start-ups so far, to name each life's log file.
    starts: usize,
    /// Added to every speaker's command line from now on.
    extra_args: Vec<String>,
}

impl L2World {
    /// A lab with `nodes` nodes (no pods yet, no FRR: the router only routes and resolves
    /// neighbours), registered as Nodes; the install namespace with the memberlist Secret,
    /// the pool `l2` (the address plan's L2 range) and an L2Advertisement for it; an apps
    /// namespace.
    pub fn new(hint: &str, nodes: usize) -> Result<L2World> {
        let speaker = speaker_binary()?;
        let kubectl = kubectl_with_crds()?;
        let lab = Lab::builder()
            .echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
            .nodes(nodes)
            .router(RouterSetup::NoFrr)
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
        let world = L2World {
            speakers: (0..nodes).map(|_| None).collect(),
            apps,
            install,
            _nodes: node_guards,
            lab,
            kubectl,
            class,
            speaker,
            starts: 0,
            extra_args: Vec::new(),
        };
        let pool = json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "IPAddressPool",
            "metadata": {"name": "l2", "namespace": world.install.name()},
            "spec": {"addresses": L2_POOL},
        });
        world.install.apply(&pool.to_string())?;
        let advertisement = json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "L2Advertisement",
            "metadata": {"name": "l2", "namespace": world.install.name()},
            "spec": {"pools": ["l2"]},
        });
        world.install.apply(&advertisement.to_string())?;
        Ok(world)
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

    /// Adds `args` to the command line of every speaker started from now on.
    pub fn speaker_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts the speaker of node `node` (1-based) and waits until it applied its first
    /// plan. Each life logs to its own file (`speaker-nI-K.log`).
    pub fn start_speaker(&mut self, node: usize) -> Result<()> {
        let node_name = self.node_name(node)?;
        let kubeconfig = paths::kubeconfig_path().to_string_lossy().into_owned();
        let binary = self.speaker.to_string_lossy().into_owned();
        let niceness = speaker_niceness();
        let mut argv: Vec<&str> = Vec::new();
        if niceness != "0" {
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
            "--layer2",
            "on",
            // The owner's DNAT carries the traffic to the pods (no kube-proxy in the lab).
            "--forwarding",
            "on",
            "--memberlist-secret",
            MEMBERLIST_SECRET,
            "--load-balancer-class",
            &self.class,
            "--ignore-classless",
            "--resync-interval",
            "5s",
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
        self.speakers
            .get_mut(node.wrapping_sub(1))
            .and_then(Option::as_mut)
            .ok_or_else(|| LabError::Invalid(format!("no speaker running on node {node}")))
    }

    /// SIGKILL of node `node`'s speaker (no goodbye to its peers, nothing cleaned up).
    pub fn kill_speaker(&mut self, node: usize) -> Result<()> {
        self.speaker_mut(node)?.kill()
    }

    /// Every speaker log of this world so far (for failure messages).
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

    /// A dual-stack LoadBalancer Service of this world's class selecting `app=APP`,
    /// TCP 80 -> 8080.
    pub fn service(&self, name: &str, app: &str, policy: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, app)
            .load_balancer()
            .traffic_policy(policy)
            .port(PortSpec::tcp("http", SERVICE_PORT).target(ECHO_PORT));
        spec.load_balancer_class = Some(self.class.clone());
        spec.ip_family_policy = Some("RequireDualStack".into());
        spec.ip_families = vec!["IPv4".into(), "IPv6".into()];
        spec
    }

    /// Creates the Service and writes its ingress addresses, as the controller would.
    /// No NodePorts: Herald's forwarding does not use them.
    pub fn apply_service(&self, spec: &ServiceSpec, ingress: &[&str]) -> Result<()> {
        let mut manifest = spec.manifest(self.apps.name());
        manifest["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
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

    pub fn wait_ready_endpoints(&self, service: &str, count: usize) -> Result<()> {
        self.apps
            .wait_endpoints(service, SETUP_TIMEOUT, |eps| {
                eps.iter().filter(|e| e.ready).count() == count
            })
            .map(|_| ())
    }

    /// The node the current-announcer record on Service `service` names for `address`.
    pub fn recorded_owner(&self, service: &str, address: IpAddr) -> Result<Option<String>> {
        let Some(object) = self.apps.get("service", service)? else {
            return Ok(None);
        };
        let value = object["metadata"]["annotations"][record_key(address)]
            .as_str()
            .map(str::to_string);
        Ok(value.and_then(|v| {
            let node = v.split('/').next().unwrap_or_default().trim().to_string();
            (!node.is_empty()).then_some(node)
        }))
    }

    /// Waits until the record for `address` names `node` (1-based); returns how long it took.
    pub fn wait_record(&self, service: &str, address: IpAddr, node: usize) -> Result<Duration> {
        let started = Instant::now();
        let wanted = self.node_name(node)?;
        poll_until(
            &format!("the record for {address} to name {wanted}"),
            FAILOVER_DEADLINE,
            Duration::from_millis(50),
            || {
                let owner = self.recorded_owner(service, address)?;
                Ok(if owner.as_deref() == Some(wanted.as_str()) {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{owner:?}"))
                })
            },
        )
    }

    /// The MAC the router's neighbour table holds for `address`, if resolved.
    pub fn router_mac_for(&self, address: IpAddr) -> Result<Option<String>> {
        let wanted = address.to_string();
        Ok(self
            .lab
            .router_neighbours()?
            .into_iter()
            .find(|n| n.dst == wanted && n.is_resolved())
            .and_then(|n| n.lladdr)
            .map(|mac| mac.to_ascii_lowercase()))
    }

    /// The node whose LAN MAC the router holds for `address`.
    pub fn router_owner(&self, address: IpAddr) -> Result<Option<usize>> {
        let Some(mac) = self.router_mac_for(address)? else {
            return Ok(None);
        };
        for node in 1..=self.lab.nodes().len() {
            if self.lab.node_lan_mac(node)?.eq_ignore_ascii_case(&mac) {
                return Ok(Some(node));
            }
        }
        Err(LabError::Invalid(format!(
            "the router maps {address} to {mac}, which is no node's LAN MAC"
        )))
    }

    /// One request from the client to `address:80`.
    pub fn get(&self, address: IpAddr) -> Result<EchoReply> {
        self.lab.client_get(address, SERVICE_PORT)
    }

    /// One request with a short timeout.
    pub fn get_within(&self, address: IpAddr, timeout: Duration) -> Result<EchoReply> {
        http_get_from(self.lab.client(), address, SERVICE_PORT, timeout)
    }

    /// Retries requests until one succeeds (bounded).
    pub fn wait_get(&self, address: IpAddr) -> Result<EchoReply> {
        poll_until_ok(
            &format!("the client to reach {address}"),
            SETUP_TIMEOUT,
            Duration::from_millis(200),
            || {
                self.get_within(address, Duration::from_secs(2))
                    .map(Poll::Ready)
            },
        )
    }

    /// Node `node`'s metric `name` (exact series text, e.g. `herald_speaker_l2_owned_addresses`).
    pub fn metric(&self, node: usize, name: &str) -> Result<f64> {
        let text = self.lab.node(node)?.netns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:7473/metrics",
        ])?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse::<f64>().ok()).flatten()
            })
            .ok_or_else(|| LabError::parse(format!("metric {name} on node {node}"), text))
    }

    /// Sum of every series of metric family `name` on node `node` (0 when absent).
    pub fn metric_sum(&self, node: usize, name: &str) -> Result<f64> {
        let text = self.lab.node(node)?.netns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:7473/metrics",
        ])?;
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                let family = key.split('{').next()?;
                (family == name)
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum())
    }

    /// Waits until the speakers on `nodes` each see `count` live members.
    pub fn wait_membership(&self, nodes: &[usize], count: usize) -> Result<Duration> {
        let started = Instant::now();
        poll_until(
            &format!("speakers {nodes:?} to see {count} live members"),
            SETUP_TIMEOUT,
            Duration::from_millis(100),
            || {
                let mut seen = Vec::new();
                for &node in nodes {
                    seen.push(
                        self.metric(node, "herald_speaker_membership_live_members")
                            .unwrap_or(-1.0),
                    );
                }
                Ok(if seen.iter().all(|&live| live == count as f64) {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{seen:?}"))
                })
            },
        )
    }

    /// Probes `address` from the client every `interval` (each probe in its own thread with
    /// `request_timeout`, so a probe lost to a stale neighbour entry does not delay the next)
    /// until a reply satisfies `accept`; returns it with the time from `since` to its arrival.
    /// Bounded by [`FAILOVER_DEADLINE`] and so by `FAILOVER_DEADLINE / interval` probes.
    pub fn probe_until(
        &self,
        address: IpAddr,
        since: Instant,
        interval: Duration,
        request_timeout: Duration,
        accept: impl Fn(&EchoReply) -> bool,
    ) -> Result<(EchoReply, Duration)> {
        self.probe_until_within(
            address,
            since,
            interval,
            request_timeout,
            FAILOVER_DEADLINE,
            accept,
        )
    }

    /// [`L2World::probe_until`] with another deadline.
    pub fn probe_until_within(
        &self,
        address: IpAddr,
        since: Instant,
        interval: Duration,
        request_timeout: Duration,
        deadline: Duration,
        accept: impl Fn(&EchoReply) -> bool,
    ) -> Result<(EchoReply, Duration)> {
        let (tx, rx) = mpsc::channel::<(Instant, Result<EchoReply>)>();
        let client = self.lab.client().clone();
        let mut last = String::from("no reply yet");
        let mut next_probe = Instant::now();
        let mut in_flight = 0usize;
        let outcome = loop {
            let now = Instant::now();
            if now.duration_since(since) > deadline {
                break Err(LabError::WaitTimedOut {
                    what: format!("a request to {address} to be answered as expected"),
                    timeout: deadline,
                    last: Some(last.clone()),
                });
            }
            if now >= next_probe {
                let tx = tx.clone();
                let client = client.clone();
                in_flight += 1;
                std::thread::spawn(move || {
                    let reply = http_get_from(&client, address, SERVICE_PORT, request_timeout);
                    let _ = tx.send((Instant::now(), reply));
                });
                next_probe = now + interval;
            }
            let wait = next_probe.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((arrived, reply)) => {
                    in_flight -= 1;
                    match reply {
                        Ok(reply) if accept(&reply) => {
                            break Ok((reply, arrived.duration_since(since)));
                        }
                        Ok(reply) => last = format!("answered by {} ({})", reply.pod, reply.node),
                        Err(error) => last = short(&error.to_string()),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(LabError::Invalid("probe channel closed".into()));
                }
            }
        };
        // Let the probes still running finish (each is bounded by its own timeout).
        drop(tx);
        let drain_until = Instant::now() + request_timeout + Duration::from_secs(6);
        while in_flight > 0 && Instant::now() < drain_until {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(_) => in_flight -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        outcome
    }
}

/// The first line of an error, clipped (for "last seen" reports).
pub fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

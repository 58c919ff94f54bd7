//! Shared helpers of the BGP end-to-end tests and benchmark: a lab whose nodes run the real
//! `herald-speaker` with BGP on, FRR on the router, an install namespace (pool, peers,
//! advertisements, Secrets) and an apps namespace, and readers of the router's routes, the
//! BGPPeer status, the Service annotations and the speakers' metrics.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald_lab::echo::EchoReply;
use herald_lab::frr::RouterConfig;
use herald_lab::inspect::{Route, route_for};
use herald_lab::kube::{NodeGuard, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::topology::RouterSetup;
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{ControlPlane, Family, Kubectl, Lab, LabError, LabProcess, Result, paths};
use serde_json::{Value, json};

/// Name of the memberlist Secret the tests create.
pub const MEMBERLIST_SECRET: &str = "herald-memberlist";
/// The echo servers' port (the pods' target port).
pub const ECHO_PORT: u16 = 8080;
/// The Services' port on the external address.
pub const SERVICE_PORT: u16 = 80;
/// The client's address (what `Local` must preserve).
pub const CLIENT_V4: &str = "198.51.100.100";
/// Our nodes' AS for eBGP; the router is AS 64500 (`herald_lab::plan::ROUTER_ASN`).
pub const NODE_ASN: u32 = 64512;
pub const ROUTER_ASN: u32 = 64500;
/// The TCP-MD5 password of the MD5 scenarios.
pub const PASSWORD: &str = "herald-lab-md5";
/// How long a speaker may take to list everything and apply the first plan.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous bound for sessions to come up and routes to reach the router's kernel.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// Generous bound for a change (pod readiness, a killed speaker) to reach the router.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(30);

pub fn speaker_binary() -> Result<PathBuf> {
    let path = paths::target_dir().join("debug/herald-speaker");
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

pub fn kubectl_with_crds() -> Result<Kubectl> {
    let kubectl = ControlPlane::ensure()?.kubectl()?;
    let crd_dir = paths::repo_root().join("charts/herald/crds");
    kubectl.run(&["apply", "-f", &crd_dir.to_string_lossy()])?;
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "crd/ipaddresspools.herald.dev",
        "crd/bgpadvertisements.herald.dev",
        "crd/bgppeers.herald.dev",
        "--timeout=60s",
    ])?;
    Ok(kubectl)
}

/// One test's world. Fields drop in order: speakers first (so nothing watches while the
/// objects go), then the Kubernetes namespaces and Nodes, then the network lab.
pub struct World {
    pub speakers: Vec<Option<LabProcess>>,
    pub apps: TestNamespace,
    pub install: TestNamespace,
    pub _nodes: Vec<NodeGuard>,
    pub lab: Lab,
    pub kubectl: Kubectl,
    pub class: String,
    pub speaker: PathBuf,
}

impl World {
    /// A lab with `nodes` nodes (no pods yet, no FRR yet), registered as Nodes; an install
    /// namespace with the memberlist Secret and the BGP pool `bgp` (203.0.113.0/24,
    /// 2001:db8:100::/120); an apps namespace. The router hashes ECMP on ports (L4), so
    /// one client's connections spread over the next hops.
    pub fn new(hint: &str, nodes: usize) -> Result<World> {
        let speaker = speaker_binary()?;
        let kubectl = kubectl_with_crds()?;
        let lab = Lab::builder()
            .echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
            .nodes(nodes)
            .router(RouterSetup::NoFrr)
            .router_pod_routes(false)
            .build()?;
        lab.router().sysctl(&[
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv6.fib_multipath_hash_policy", "1"),
        ])?;
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
        let world = World {
            speakers: (0..nodes).map(|_| None).collect(),
            apps,
            install,
            _nodes: node_guards,
            lab,
            kubectl,
            class,
            speaker,
        };
        world.install.apply(
            &json!({
                "apiVersion": "herald.dev/v1alpha1",
                "kind": "IPAddressPool",
                "metadata": {"name": "bgp", "namespace": world.install.name()},
                "spec": {"addresses": ["203.0.113.0/24", "2001:db8:100::/120"]},
            })
            .to_string(),
        )?;
        Ok(world)
    }

    /// The router's config: every node's LAN IPv4 address as an eBGP neighbor.
    pub fn router_config(&self) -> RouterConfig {
        self.lab.standard_router_config()
    }

    pub fn start_frr(&mut self, config: &RouterConfig) -> Result<()> {
        self.lab.load_frr_config(&config.render())
    }

    pub fn node_name(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.name.clone())
    }

    pub fn lan_v4(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.lan_v4.to_string())
    }

    pub fn lan_v6(&self, node: usize) -> Result<String> {
        Ok(self.lab.node(node)?.lan_v6.to_string())
    }

    /// A Secret in the install namespace with key `password`.
    pub fn password_secret(&self, name: &str, password: &str) -> Result<()> {
        self.install
            .apply(
                &json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": self.install.name()},
                    "stringData": {"password": password},
                })
                .to_string(),
            )
            .map(|_| ())
    }

    /// A BGPPeer; `spec` is merged over `myASN`/`peerASN`/`peerAddress`, a 9 s hold time and
    /// a 2 s connect time.
    pub fn peer(&self, name: &str, address: &str, spec: Value) -> Result<()> {
        let mut full = json!({
            "myASN": NODE_ASN,
            "peerASN": ROUTER_ASN,
            "peerAddress": address,
            "holdTime": "9s",
            "connectTime": "2s",
        });
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            for (key, value) in extra {
                full.insert(key.clone(), value.clone());
            }
        }
        self.install
            .apply(
                &json!({
                    "apiVersion": "herald.dev/v1alpha1",
                    "kind": "BGPPeer",
                    "metadata": {"name": name, "namespace": self.install.name()},
                    "spec": full,
                })
                .to_string(),
            )
            .map(|_| ())
    }

    /// A BGPAdvertisement of the pool `bgp` to every peer.
    pub fn advertise(&self, spec: Value) -> Result<()> {
        let mut full = json!({"pools": ["bgp"]});
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            for (key, value) in extra {
                full.insert(key.clone(), value.clone());
            }
        }
        self.install
            .apply(
                &json!({
                    "apiVersion": "herald.dev/v1alpha1",
                    "kind": "BGPAdvertisement",
                    "metadata": {"name": "bgp", "namespace": self.install.name()},
                    "spec": full,
                })
                .to_string(),
            )
            .map(|_| ())
    }

    /// Starts the speaker of node `node` (1-based) and waits until it applied its first
    /// full plan.
    pub fn start_speaker(&mut self, node: usize) -> Result<()> {
        let node_name = self.node_name(node)?;
        let kubeconfig = paths::kubeconfig_path().to_string_lossy().into_owned();
        let binary = self.speaker.to_string_lossy().into_owned();
        let argv = [
            binary.as_str(),
            "--node-name",
            &node_name,
            "--namespace",
            self.install.name(),
            "--kubeconfig",
            &kubeconfig,
            "--forwarding",
            "on",
            "--layer2",
            "off",
            "--bgp",
            "on",
            "--memberlist-secret",
            MEMBERLIST_SECRET,
            "--load-balancer-class",
            &self.class,
            "--ignore-classless",
            "--resync-interval",
            "2s",
        ];
        let mut process = self
            .lab
            .spawn_in_node(node, &format!("speaker-n{node}"), &argv)?;
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
            .get_mut(node - 1)
            .and_then(Option::as_mut)
            .ok_or_else(|| LabError::Invalid(format!("no speaker running on node {node}")))
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

    /// A LoadBalancer Service of this test's class selecting `app=APP`, TCP 80 -> 8080.
    pub fn service(&self, name: &str, app: &str, policy: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, app)
            .load_balancer()
            .traffic_policy(policy)
            .port(PortSpec::tcp("http", SERVICE_PORT).target(ECHO_PORT));
        spec.load_balancer_class = Some(self.class.clone());
        spec
    }

    /// Creates the Service and writes its ingress addresses, as the controller would.
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
            .wait_endpoints(service, Duration::from_secs(60), |eps| {
                eps.iter().filter(|e| e.ready).count() == count
            })
            .map(|_| ())
    }

    /// The router's kernel route for `prefix`, if any.
    pub fn router_route(&self, prefix: &str) -> Result<Option<Route>> {
        let family = if prefix.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        let routes = self.lab.router_routes(family)?;
        Ok(route_for(&routes, prefix).cloned())
    }

    /// Waits until the router's kernel route for `prefix` goes exactly via `gateways`
    /// (empty: no route at all); returns how long it took.
    pub fn wait_gateways(
        &self,
        prefix: &str,
        gateways: &[String],
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let want: BTreeSet<String> = gateways.iter().cloned().collect();
        poll_until(
            &format!("the router's route for {prefix} via {want:?}"),
            timeout,
            Duration::from_millis(20),
            || {
                let route = self.router_route(prefix)?;
                let have: BTreeSet<String> = route
                    .as_ref()
                    .map(|r| r.gateways().into_iter().collect())
                    .unwrap_or_default();
                let present = route.is_some();
                Ok(if have == want && present != want.is_empty() {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{route:?}"))
                })
            },
        )
    }

    /// `count` requests from the client to `ip:80`; every one must succeed.
    pub fn sample(&self, ip: &str, count: usize) -> Result<Vec<EchoReply>> {
        let ip = parse_ip(ip)?;
        (0..count)
            .map(|_| self.lab.client_get(ip, SERVICE_PORT))
            .collect()
    }

    /// This node's entry in the BGPPeer's status, if any.
    pub fn session_entry(&self, peer: &str, node: usize) -> Result<Option<Value>> {
        let node_name = self.node_name(node)?;
        let object = self.install.get("bgppeer", peer)?;
        Ok(object.and_then(|peer| {
            peer["status"]["sessions"]
                .as_array()
                .and_then(|sessions| {
                    sessions
                        .iter()
                        .find(|s| s["node"].as_str() == Some(&node_name))
                })
                .cloned()
        }))
    }

    /// Waits until `condition` holds for node `node`'s entry in the peer's status.
    pub fn wait_session_entry(
        &self,
        peer: &str,
        node: usize,
        what: &str,
        condition: impl Fn(Option<&Value>) -> bool,
    ) -> Result<Option<Value>> {
        poll_until(
            &format!("BGPPeer {peer}, node {node}: {what}"),
            CONVERGE,
            Duration::from_millis(250),
            || {
                let entry = self.session_entry(peer, node)?;
                Ok(if condition(entry.as_ref()) {
                    Poll::Ready(entry)
                } else {
                    Poll::Pending(format!("{entry:?}"))
                })
            },
        )
    }

    /// The Service's `bgp-peers.herald.dev/<node>` annotation of node `node`.
    pub fn carriers(&self, service: &str, node: usize) -> Result<Option<String>> {
        let key = format!("bgp-peers.herald.dev/{}", self.node_name(node)?);
        Ok(self.apps.get("service", service)?.and_then(|s| {
            s["metadata"]["annotations"][&key]
                .as_str()
                .map(str::to_string)
        }))
    }

    /// Waits until the carrier annotations of every node are as given (`None`: absent).
    pub fn wait_carriers(&self, service: &str, expected: &[Option<&str>]) -> Result<()> {
        poll_until(
            &format!("the carrier annotations of Service {service} to be {expected:?}"),
            CONVERGE,
            Duration::from_millis(250),
            || {
                let have: Vec<Option<String>> = (1..=expected.len())
                    .map(|node| self.carriers(service, node))
                    .collect::<Result<_>>()?;
                let want: Vec<Option<String>> =
                    expected.iter().map(|v| v.map(str::to_string)).collect();
                Ok(if have == want {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{have:?}"))
                })
            },
        )
    }

    pub fn metrics(&self, node: usize) -> Result<String> {
        self.lab.node(node)?.netns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:7473/metrics",
        ])
    }

    pub fn metric(&self, node: usize, name: &str) -> Result<f64> {
        let text = self.metrics(node)?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse::<f64>().ok()).flatten()
            })
            .ok_or_else(|| LabError::parse(format!("metric {name} on node {node}"), text))
    }
}

pub fn parse_ip(text: &str) -> Result<IpAddr> {
    text.parse()
        .map_err(|e| LabError::parse(format!("address {text:?}"), e))
}

pub fn pods_of(replies: &[EchoReply]) -> BTreeSet<String> {
    replies.iter().map(|r| r.pod.clone()).collect()
}

pub fn state_of(entry: Option<&Value>) -> Option<&str> {
    entry.and_then(|e| e["state"].as_str())
}

pub fn error_of(entry: Option<&Value>) -> String {
    entry
        .and_then(|e| e["lastError"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Polls the API (`api_shows`) and the router (`router_shows`) side by side after a
/// change; returns when each showed it, counted from `started`.
pub fn measure_api_and_router(
    what: &str,
    started: Instant,
    api_shows: impl Fn() -> Result<bool> + Send,
    router_shows: impl Fn() -> Result<bool>,
) -> Result<(Duration, Duration)> {
    std::thread::scope(|scope| {
        let api = scope.spawn(move || {
            poll_until(
                &format!("{what}: the API to show the change"),
                CHANGE_DEADLINE,
                Duration::from_millis(20),
                || {
                    Ok(if api_shows()? {
                        Poll::Ready(started.elapsed())
                    } else {
                        Poll::Pending(String::new())
                    })
                },
            )
        });
        let router = poll_until(
            &format!("{what}: the router to follow"),
            CHANGE_DEADLINE,
            Duration::from_millis(20),
            || {
                Ok(if router_shows()? {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(String::new())
                })
            },
        );
        let api = api
            .join()
            .map_err(|_| LabError::Invalid(format!("{what}: API poller panicked")))?;
        Ok((api?, router?))
    })
}

impl Drop for World {
    /// A controller marks the pool in use with a finalizer; once it is gone (tests stop it
    /// before the world) nobody removes that, and the install namespace would hang in
    /// Terminating. Runs before the fields drop (speakers, namespaces, lab).
    fn drop(&mut self) {
        let _ = self.kubectl.run(&[
            "patch",
            "ipaddresspool",
            "bgp",
            "-n",
            self.install.name(),
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

/// `$HERALD_CONTROLLER`, else `target/debug/herald-controller`.
pub fn controller_binary() -> Result<PathBuf> {
    let path = std::env::var_os("HERALD_CONTROLLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::target_dir().join("debug/herald-controller"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::MissingTool {
            tool: "herald-controller".into(),
            hint: format!(
                "{} is missing: run `cargo build -p herald-controller`",
                path.display()
            ),
        })
    }
}

impl World {
    /// Starts the real `herald-controller` for this world's install namespace and class,
    /// inside node `node`'s namespace (it reaches the apiserver over the control-plane
    /// link), without leader election; killed when the handle drops.
    pub fn start_controller(&self, node: usize) -> Result<LabProcess> {
        let binary = controller_binary()?.to_string_lossy().into_owned();
        let kubeconfig = paths::kubeconfig_path().to_string_lossy().into_owned();
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
}

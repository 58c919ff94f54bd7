//! The lab topology: namespaces, veths and bridges laid out per DESIGN.md, built by
//! [`LabBuilder`] and torn down when the [`Lab`] is dropped (panics included).
//!
//! ```text
//!                 client (198.51.100.100, 2001:db8:2::100)
//!                   │ eth0
//!                   │ cli  198.51.100.1, 2001:db8:2::1
//!                 router (FRR, AS 64500)
//!                   │ lan  192.0.2.1, 2001:db8:1::1
//!                   │ r
//!                 switch (bridge br0)
//!          ┌────────┼──────────┐ n1, n2, ...
//!          │ eth0   │          │
//!        node1    node2  ...  nodeN     192.0.2.(10+i), 2001:db8:1::(10+i)
//!          │ pods0 (198.18.i.1, 2001:db8:244:i::1)
//!        pod namespaces (eth0 198.18.i.(10+j), echo server on :8080)
//!
//!   every node also: cp0 169.254.100.(10+i) ── root bridge hlcp0 (169.254.100.1 = apiserver)
//! ```
//!
//! Routing: nodes route the other nodes' pod CIDRs via their LAN addresses and the client
//! net via the router; the router routes pod CIDRs via the nodes (optional: BGP scenarios
//! may turn it off); the client routes the lab ranges via the router; pods default-route
//! to their node. No namespace has a route towards the host's network, and the root
//! namespace gets no lab route: the lab cannot reach outside the machine.
//!
//! Only one lab exists at a time (they share 169.254.100.0/24 on hlcp0): the builder holds
//! an flock for the lab's lifetime, and clears what crashed labs left behind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cleanup;
use crate::cmd::{self, SHORT};
use crate::echo::{self, EchoReply};
use crate::error::{LabError, Result};
use crate::frr::{FrrInstance, RouterConfig};
use crate::inspect::{self, Neighbour, Route};
use crate::kube::{Kubectl, NodeGuard, NodeSpec, PodSpec, PortSpec, TestNamespace};
use crate::lock::LockGuard;
use crate::netns::{Family, LabProcess, Netns};
use crate::paths;
use crate::plan::{self, Names, ifname};
use crate::wait::{Poll, poll_until, poll_until_ok};

/// How long a new lab waits for the previous one to finish.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// curl's budget for one request from the client.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates the root-namespace bridge `hlcp0` with 169.254.100.1/24 if it is missing.
/// Idempotent. The root namespace gets nothing else from the lab.
pub fn ensure_cp_bridge() -> Result<()> {
    let exists = cmd::run(
        std::process::Command::new("ip").args(["link", "show", plan::CP_BRIDGE]),
        None,
        SHORT,
    )?
    .success();
    if !exists {
        cmd::sh(
            "ip",
            &[
                "link",
                "add",
                plan::CP_BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
    }
    let cidr = format!("{}/{}", plan::CP_ADDRESS, plan::CP_PREFIX_LEN);
    let addresses = cmd::sh("ip", &["-o", "-4", "addr", "show", "dev", plan::CP_BRIDGE])?;
    if !addresses.contains(&format!("inet {cidr}")) {
        cmd::sh("ip", &["addr", "add", &cidr, "dev", plan::CP_BRIDGE])?;
    }
    cmd::sh("ip", &["link", "set", plan::CP_BRIDGE, "up"]).map(|_| ())
}

/// Whether and how the router runs FRR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterSetup {
    /// Kernel routing only.
    NoFrr,
    /// FRR with [`RouterConfig::standard`] (every node an eBGP neighbor).
    StandardFrr,
    /// FRR with this `frr.conf` text.
    FrrConfig(String),
}

/// Configures and builds a [`Lab`].
#[derive(Debug, Clone)]
pub struct LabBuilder {
    prefix: Option<String>,
    nodes: usize,
    pods_per_node: usize,
    control_plane_links: bool,
    router: RouterSetup,
    router_pod_routes: bool,
    echo_port: u16,
    echo_binary: Option<PathBuf>,
    lock_timeout: Duration,
}

impl Default for LabBuilder {
    fn default() -> Self {
        LabBuilder {
            prefix: None,
            nodes: 2,
            pods_per_node: 0,
            control_plane_links: true,
            router: RouterSetup::StandardFrr,
            router_pod_routes: true,
            echo_port: plan::ECHO_PORT,
            echo_binary: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl LabBuilder {
    /// Number of nodes (default 2).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Echo pods started on every node at build time (default 0; see [`Lab::add_pod`]).
    pub fn pods_per_node(mut self, pods: usize) -> Self {
        self.pods_per_node = pods;
        self
    }

    /// A fixed name prefix instead of a unique one (see [`Names::new`]).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_string());
        self
    }

    /// Whether nodes get a link to the control plane (default true).
    pub fn control_plane_links(mut self, enabled: bool) -> Self {
        self.control_plane_links = enabled;
        self
    }

    /// How the router runs (default: FRR with the standard config).
    pub fn router(mut self, router: RouterSetup) -> Self {
        self.router = router;
        self
    }

    /// Whether the router gets static routes to the pod CIDRs via the nodes (default true).
    pub fn router_pod_routes(mut self, enabled: bool) -> Self {
        self.router_pod_routes = enabled;
        self
    }

    /// The echo servers' port (default 8080).
    pub fn echo_port(mut self, port: u16) -> Self {
        self.echo_port = port;
        self
    }

    /// The `herald-lab` binary that runs echo servers (default: [`paths::herald_lab_binary`];
    /// integration tests of this crate pass `env!("CARGO_BIN_EXE_herald-lab")`).
    pub fn echo_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.echo_binary = Some(path.into());
        self
    }

    /// How long to wait for another lab to finish (default 30 min).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Builds the lab. On error everything built so far is torn down.
    pub fn build(self) -> Result<Lab> {
        if !(1..=plan::MAX_NODES).contains(&self.nodes) {
            return Err(LabError::Invalid(format!(
                "{} nodes (1..={} supported)",
                self.nodes,
                plan::MAX_NODES
            )));
        }
        let names = match &self.prefix {
            Some(prefix) => Names::new(prefix)?,
            None => Names::unique(),
        };
        let lock = LockGuard::acquire(&paths::lab_lock_path(), self.lock_timeout)?;
        clear_stale_labs(&names, self.control_plane_links)?;
        let log_dir = paths::logs_dir().join(names.prefix());
        let _ = std::fs::remove_dir_all(&log_dir);
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| LabError::io(format!("creating {}", log_dir.display()), e))?;
        let echo_binary = match &self.echo_binary {
            Some(path) => path.clone(),
            None => paths::herald_lab_binary()?,
        };

        let mut lab = Lab {
            switch: Netns::existing(&names.switch_ns()),
            router: Netns::existing(&names.router_ns()),
            client: Netns::existing(&names.client_ns()),
            names,
            log_dir,
            nodes: Vec::new(),
            pods: Vec::new(),
            processes: Vec::new(),
            frr: None,
            namespaces: Vec::new(),
            root_links: Vec::new(),
            echo_port: self.echo_port,
            echo_binary,
            persistent: false,
            _lock: Some(lock),
        };
        lab.build_core()?;
        for node in 1..=self.nodes {
            lab.build_node(node, self.control_plane_links)?;
        }
        lab.build_routes(self.router_pod_routes)?;
        match &self.router {
            RouterSetup::NoFrr => {}
            RouterSetup::StandardFrr => {
                let config = lab.standard_router_config().render();
                lab.start_frr(&config)?;
            }
            RouterSetup::FrrConfig(config) => lab.start_frr(config)?,
        }
        for node in 1..=self.nodes {
            for pod in 1..=self.pods_per_node {
                lab.add_pod(node, &format!("echo-{node}-{pod}"))?;
            }
        }
        Ok(lab)
    }
}

/// Removes leftovers of crashed labs; refuses to share the control-plane segment with a
/// running `herald-lab up` lab. Called with the lab lock held, so no live test lab exists.
fn clear_stale_labs(names: &Names, control_plane_links: bool) -> Result<()> {
    let up_running = !cleanup::namespaces_with_prefix(&format!("{}-", plan::UP_PREFIX))?.is_empty();
    if names.prefix() == plan::UP_PREFIX {
        cleanup::sweep(&format!("{}-", plan::UP_PREFIX))?;
        cleanup::sweep(&format!("{}c", plan::UP_PREFIX))?;
    } else if up_running && control_plane_links {
        return Err(LabError::Conflict(format!(
            "the `herald-lab up` lab ({}-*) is running and uses the control-plane addresses \
             169.254.100.11..; run `herald-lab down` (or build this lab with \
             control_plane_links(false))",
            plan::UP_PREFIX
        )));
    }
    // Test labs have prefixes `hl` + digit + 3 characters; any still present are stale.
    for ns in cleanup::namespaces_with_prefix(plan::GLOBAL_PREFIX)? {
        let is_test_lab = ns.as_bytes().get(2).is_some_and(u8::is_ascii_digit);
        if is_test_lab && let Some(prefix) = ns.split('-').next() {
            cleanup::sweep(&format!("{prefix}-"))?;
            cleanup::sweep(&format!("{prefix}c"))?;
        }
    }
    if !cleanup::namespaces_with_prefix(&format!("{}-", names.prefix()))?.is_empty() {
        return Err(LabError::Conflict(format!(
            "namespaces with prefix {}- already exist",
            names.prefix()
        )));
    }
    Ok(())
}

/// One node of the lab.
#[derive(Debug, Clone)]
pub struct LabNode {
    /// 1-based index.
    pub index: usize,
    /// Namespace name, also the Kubernetes Node name.
    pub name: String,
    pub netns: Netns,
    pub lan_v4: Ipv4Addr,
    pub lan_v6: Ipv6Addr,
    /// Address on the control-plane link, if the node has one.
    pub cp_v4: Option<Ipv4Addr>,
    pub pod_cidr_v4: String,
    pub pod_cidr_v6: String,
    /// Pods created on this node so far.
    pub pod_count: usize,
}

impl LabNode {
    /// The Node object a kubelet on this node would register (Ready, both InternalIPs,
    /// both pod CIDRs).
    pub fn node_spec(&self) -> NodeSpec {
        NodeSpec::new(&self.name)
            .address(IpAddr::V4(self.lan_v4))
            .address(IpAddr::V6(self.lan_v6))
            .pod_cidr(&self.pod_cidr_v4)
            .pod_cidr(&self.pod_cidr_v6)
    }
}

/// One pod namespace with its echo server.
#[derive(Debug, Clone)]
pub struct LabPod {
    pub name: String,
    /// The node's 1-based index.
    pub node: usize,
    pub node_name: String,
    pub netns: Netns,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub port: u16,
}

impl LabPod {
    /// The Pod object matching this pod (bound to its node, both IPs, label
    /// `app=echo`, port `http`); add labels as needed.
    pub fn pod_spec(&self, host_v4: Ipv4Addr, host_v6: Ipv6Addr) -> PodSpec {
        PodSpec::new(&self.name, &self.node_name)
            .ip(IpAddr::V4(self.ipv4))
            .ip(IpAddr::V6(self.ipv6))
            .host_ip(IpAddr::V4(host_v4))
            .host_ip(IpAddr::V6(host_v6))
            .label("app", "echo")
            .port(PortSpec::tcp("http", self.port))
            .port(PortSpec::udp("udp", self.port))
    }
}

/// A built lab. Dropping it kills every process it started and removes every namespace,
/// link and FRR directory it created.
pub struct Lab {
    names: Names,
    log_dir: PathBuf,
    switch: Netns,
    router: Netns,
    client: Netns,
    nodes: Vec<LabNode>,
    pods: Vec<LabPod>,
    processes: Vec<LabProcess>,
    frr: Option<FrrInstance>,
    /// Every namespace created, in creation order.
    namespaces: Vec<Netns>,
    /// Root-namespace links created (control-plane veths).
    root_links: Vec<String>,
    echo_port: u16,
    echo_binary: PathBuf,
    persistent: bool,
    _lock: Option<LockGuard>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.names.prefix())
            .field("nodes", &self.nodes.len())
            .field("pods", &self.pods.len())
            .finish()
    }
}

impl Lab {
    /// A builder with the defaults (2 nodes, no pods, FRR, control-plane links).
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    fn create_ns(&mut self, name: &str) -> Result<Netns> {
        let ns = Netns::create(name)?;
        self.namespaces.push(ns.clone());
        // Lab namespaces route asymmetrically at times (DNAT, failover): no rp_filter.
        ns.sysctl(&[
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ])?;
        Ok(ns)
    }

    /// `ip link add A netns NS_A type veth peer name B netns NS_B`: both ends are created
    /// directly in their namespaces, so names only need to be unique per namespace.
    fn veth(a: (&Netns, &str), b: (&Netns, &str)) -> Result<()> {
        cmd::sh(
            "ip",
            &[
                "link",
                "add",
                a.1,
                "netns",
                a.0.name(),
                "type",
                "veth",
                "peer",
                "name",
                b.1,
                "netns",
                b.0.name(),
            ],
        )
        .map(|_| ())
    }

    fn build_core(&mut self) -> Result<()> {
        let switch = self.create_ns(&self.names.switch_ns())?;
        let router = self.create_ns(&self.names.router_ns())?;
        let client = self.create_ns(&self.names.client_ns())?;

        // The switch: one bridge, no STP, no multicast snooping (NDP must always flood).
        switch.ip(&[
            "link",
            "add",
            ifname::SWITCH_BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        switch.set_link(ifname::SWITCH_BRIDGE, true)?;

        // Router ↔ switch.
        Self::veth(
            (&router, ifname::ROUTER_LAN),
            (&switch, ifname::SWITCH_ROUTER_PORT),
        )?;
        switch.ip(&[
            "link",
            "set",
            ifname::SWITCH_ROUTER_PORT,
            "master",
            ifname::SWITCH_BRIDGE,
        ])?;
        switch.set_link(ifname::SWITCH_ROUTER_PORT, true)?;
        add_addresses(
            &router,
            ifname::ROUTER_LAN,
            &format!("{}/24", plan::ROUTER_LAN_V4),
            &format!("{}/64", plan::ROUTER_LAN_V6),
        )?;

        // Router ↔ client.
        Self::veth((&router, ifname::ROUTER_CLIENT), (&client, ifname::ETH0))?;
        add_addresses(
            &router,
            ifname::ROUTER_CLIENT,
            &format!("{}/24", plan::ROUTER_CLIENT_V4),
            &format!("{}/64", plan::ROUTER_CLIENT_V6),
        )?;
        add_addresses(
            &client,
            ifname::ETH0,
            &format!("{}/24", plan::CLIENT_V4),
            &format!("{}/64", plan::CLIENT_V6),
        )?;
        router.enable_forwarding()?;

        // The client reaches the lab's ranges through the router, and nothing else.
        let via4 = plan::ROUTER_CLIENT_V4.to_string();
        for dst in [plan::LAN_V4, plan::POD_SUPERNET_V4, plan::BGP_POOL_V4] {
            client.ip(&["route", "add", dst, "via", &via4])?;
        }
        let via6 = plan::ROUTER_CLIENT_V6.to_string();
        client.ip(&["-6", "route", "add", plan::DOC_V6, "via", &via6])?;
        Ok(())
    }

    fn build_node(&mut self, index: usize, control_plane_link: bool) -> Result<()> {
        let name = self.names.node_ns(index);
        let ns = self.create_ns(&name)?;
        let switch = self.switch.clone();
        let port = ifname::switch_node_port(index);
        Self::veth((&ns, ifname::NODE_LAN), (&switch, &port))?;
        switch.ip(&["link", "set", &port, "master", ifname::SWITCH_BRIDGE])?;
        switch.set_link(&port, true)?;
        let lan_v4 = plan::node_lan_v4(index)?;
        let lan_v6 = plan::node_lan_v6(index)?;
        add_addresses(
            &ns,
            ifname::NODE_LAN,
            &format!("{lan_v4}/24"),
            &format!("{lan_v6}/64"),
        )?;
        ns.enable_forwarding()?;

        // The pod bridge.
        ns.ip(&[
            "link",
            "add",
            ifname::NODE_POD_BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
        ])?;
        add_addresses(
            &ns,
            ifname::NODE_POD_BRIDGE,
            &format!("{}/24", plan::pod_gateway_v4(index)?),
            &format!("{}/64", plan::pod_gateway_v6(index)?),
        )?;

        let cp_v4 = if control_plane_link {
            ensure_cp_bridge()?;
            let root_end = self.names.cp_port(index);
            cmd::sh(
                "ip",
                &[
                    "link",
                    "add",
                    &root_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    ifname::NODE_CP,
                    "netns",
                    &name,
                ],
            )?;
            self.root_links.push(root_end.clone());
            cmd::sh("ip", &["link", "set", &root_end, "master", plan::CP_BRIDGE])?;
            cmd::sh("ip", &["link", "set", &root_end, "up"])?;
            let cp = plan::node_cp_v4(index)?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{cp}/{}", plan::CP_PREFIX_LEN),
                "dev",
                ifname::NODE_CP,
            ])?;
            ns.set_link(ifname::NODE_CP, true)?;
            Some(cp)
        } else {
            None
        };

        self.nodes.push(LabNode {
            index,
            name,
            netns: ns,
            lan_v4,
            lan_v6,
            cp_v4,
            pod_cidr_v4: plan::pod_cidr_v4(index)?,
            pod_cidr_v6: plan::pod_cidr_v6(index)?,
            pod_count: 0,
        });
        Ok(())
    }

    fn build_routes(&mut self, router_pod_routes: bool) -> Result<()> {
        let router_v4 = plan::ROUTER_LAN_V4.to_string();
        let router_v6 = plan::ROUTER_LAN_V6.to_string();
        for node in &self.nodes {
            node.netns
                .ip(&["route", "add", plan::CLIENT_NET_V4, "via", &router_v4])?;
            node.netns
                .ip(&["-6", "route", "add", plan::CLIENT_NET_V6, "via", &router_v6])?;
            for peer in self.nodes.iter().filter(|p| p.index != node.index) {
                node.netns.ip(&[
                    "route",
                    "add",
                    &peer.pod_cidr_v4,
                    "via",
                    &peer.lan_v4.to_string(),
                ])?;
                node.netns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &peer.pod_cidr_v6,
                    "via",
                    &peer.lan_v6.to_string(),
                ])?;
            }
            if router_pod_routes {
                self.router.ip(&[
                    "route",
                    "add",
                    &node.pod_cidr_v4,
                    "via",
                    &node.lan_v4.to_string(),
                ])?;
                self.router.ip(&[
                    "-6",
                    "route",
                    "add",
                    &node.pod_cidr_v6,
                    "via",
                    &node.lan_v6.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    fn start_frr(&mut self, config: &str) -> Result<()> {
        let frr = FrrInstance::start(
            &self.router,
            &self.names.frr_instance(),
            config,
            &self.log_dir,
        )?;
        self.frr = Some(frr);
        Ok(())
    }

    /// The standard router config for this lab: every node's LAN IPv4 address as an eBGP
    /// neighbor (IPv4 and IPv6 unicast), ASN 64500, `maximum-paths 8`.
    pub fn standard_router_config(&self) -> RouterConfig {
        let neighbors: Vec<IpAddr> = self.nodes.iter().map(|n| IpAddr::V4(n.lan_v4)).collect();
        RouterConfig::standard(&self.names.frr_instance(), &neighbors)
    }

    /// Adds a pod namespace on node `node` (1-based) behind its pod bridge and starts an
    /// echo server in it answering as pod `name`. Waits until the server listens.
    pub fn add_pod(&mut self, node: usize, name: &str) -> Result<LabPod> {
        let lab_node = self.node(node)?.clone();
        let index = lab_node.pod_count + 1;
        let ns = self.create_ns(&self.names.pod_ns(node, index))?;
        let port = ifname::node_pod_port(index);
        Self::veth((&lab_node.netns, &port), (&ns, ifname::ETH0))?;
        lab_node
            .netns
            .ip(&["link", "set", &port, "master", ifname::NODE_POD_BRIDGE])?;
        lab_node.netns.set_link(&port, true)?;
        lab_node.netns.set_link(ifname::NODE_POD_BRIDGE, true)?;
        let ipv4 = plan::pod_v4(node, index)?;
        let ipv6 = plan::pod_v6(node, index)?;
        add_addresses(
            &ns,
            ifname::ETH0,
            &format!("{ipv4}/24"),
            &format!("{ipv6}/64"),
        )?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &plan::pod_gateway_v4(node)?.to_string(),
        ])?;
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &plan::pod_gateway_v6(node)?.to_string(),
        ])?;
        if let Some(n) = self.nodes.iter_mut().find(|n| n.index == node) {
            n.pod_count = index;
        }

        let binary = self.echo_binary.to_string_lossy().into_owned();
        let port_text = self.echo_port.to_string();
        let mut process = LabProcess::spawn(
            &ns,
            &format!("echo-{name}"),
            &[
                &binary,
                "echo",
                "--pod",
                name,
                "--node",
                &lab_node.name,
                "--port",
                &port_text,
            ],
            &self.log_dir,
        )?;
        let ready = process.wait_for_log(echo::READY_LINE, Duration::from_secs(10));
        self.processes.push(process);
        ready?;
        let pod = LabPod {
            name: name.to_string(),
            node,
            node_name: lab_node.name.clone(),
            netns: ns,
            ipv4,
            ipv6,
            port: self.echo_port,
        };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// The prefix of every name in this lab.
    pub fn prefix(&self) -> &str {
        self.names.prefix()
    }

    /// The lab's naming scheme.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// `target/lab/logs/PREFIX`: process logs, FRR logs.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Every node.
    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: usize) -> Result<&LabNode> {
        self.nodes
            .iter()
            .find(|n| n.index == index)
            .ok_or_else(|| LabError::Invalid(format!("no node {index} in lab {}", self.prefix())))
    }

    /// Every pod.
    pub fn pods(&self) -> &[LabPod] {
        &self.pods
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> Result<&LabPod> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no pod {name} in lab {}", self.prefix())))
    }

    /// The Pod object for lab pod `name` (see [`LabPod::pod_spec`]).
    pub fn pod_spec(&self, name: &str) -> Result<PodSpec> {
        let pod = self.pod(name)?;
        let node = self.node(pod.node)?;
        Ok(pod.pod_spec(node.lan_v4, node.lan_v6))
    }

    /// The router namespace.
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The client namespace.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The switch namespace.
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The router's FRR instance.
    pub fn frr(&self) -> Result<&FrrInstance> {
        self.frr
            .as_ref()
            .ok_or_else(|| LabError::Invalid("this lab runs no FRR".into()))
    }

    /// The router's FRR instance, mutable (stop/start/reload).
    pub fn frr_mut(&mut self) -> Result<&mut FrrInstance> {
        self.frr
            .as_mut()
            .ok_or_else(|| LabError::Invalid("this lab runs no FRR".into()))
    }

    /// Starts FRR on the router with `config` (replacing a running instance's config).
    pub fn load_frr_config(&mut self, config: &str) -> Result<()> {
        match self.frr.as_mut() {
            Some(frr) => frr.reload(config),
            None => self.start_frr(config),
        }
    }

    /// Starts `argv` inside node `node`'s namespace; killed when the handle drops (and
    /// in any case when the lab is torn down). Output goes to `log_dir()/NAME.log`.
    pub fn spawn_in_node(&self, node: usize, name: &str, argv: &[&str]) -> Result<LabProcess> {
        LabProcess::spawn(&self.node(node)?.netns, name, argv, &self.log_dir)
    }

    /// Starts `argv` inside any namespace, logging to this lab's log directory.
    pub fn spawn_in(&self, netns: &Netns, name: &str, argv: &[&str]) -> Result<LabProcess> {
        LabProcess::spawn(netns, name, argv, &self.log_dir)
    }

    /// Runs `argv` inside node `node`'s namespace; returns stdout.
    pub fn exec_in_node(&self, node: usize, argv: &[&str]) -> Result<String> {
        self.node(node)?.netns.exec(argv)
    }

    /// One HTTP GET from the client to `ip:port`, parsed as an echo reply.
    pub fn client_get(&self, ip: IpAddr, port: u16) -> Result<EchoReply> {
        http_get_from(&self.client, ip, port, CLIENT_REQUEST_TIMEOUT)
    }

    /// Retries [`Lab::client_get`] until it succeeds, at most `timeout`.
    pub fn wait_client_get(&self, ip: IpAddr, port: u16, timeout: Duration) -> Result<EchoReply> {
        poll_until_ok(
            &format!("the client to reach {ip} port {port}"),
            timeout,
            Duration::from_millis(100),
            || self.client_get(ip, port).map(Poll::Ready),
        )
    }

    /// One UDP datagram from the client to `ip:port`, parsed as an echo reply.
    pub fn client_udp(&self, ip: IpAddr, port: u16) -> Result<EchoReply> {
        let binary = self.echo_binary.to_string_lossy().into_owned();
        let target = std::net::SocketAddr::new(ip, port).to_string();
        let out = self.client.exec_unchecked(
            &[&binary, "probe-udp", &target, "--timeout-ms", "2000"],
            Duration::from_secs(10),
        )?;
        if !out.success() {
            return Err(LabError::CommandFailed {
                command: format!("herald-lab probe-udp {target} (in {})", self.client.name()),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr: out.stderr,
            });
        }
        EchoReply::parse(&out.stdout)
    }

    /// Registers every lab node as a Ready Kubernetes Node (deleted when the guards drop).
    pub fn register_nodes(&self, kubectl: &Kubectl) -> Result<Vec<NodeGuard>> {
        self.nodes
            .iter()
            .map(|node| kubectl.create_node(&node.node_spec()))
            .collect()
    }

    /// Creates a Ready Pod in `namespace` for every lab pod (see [`LabPod::pod_spec`]).
    pub fn register_pods(&self, namespace: &TestNamespace) -> Result<()> {
        for pod in &self.pods {
            namespace.create_pod(&self.pod_spec(&pod.name)?)?;
        }
        Ok(())
    }

    /// The MAC address of node `node`'s LAN interface (what the router's neighbour table
    /// shows for addresses the node answers for).
    pub fn node_lan_mac(&self, node: usize) -> Result<String> {
        let links = self.node(node)?.netns.addresses()?;
        inspect::mac_of(&links, ifname::NODE_LAN)
            .map(str::to_string)
            .ok_or_else(|| LabError::parse("ip -j addr", "the node has no LAN MAC"))
    }

    /// Waits (bounded) until the router's kernel table has a route for `prefix` (IPv4 or
    /// IPv6, `203.0.113.10/32` or `2001:db8:100::10/128`) that satisfies `condition`.
    pub fn wait_router_route(
        &self,
        prefix: &str,
        timeout: Duration,
        condition: impl Fn(&Route) -> bool,
    ) -> Result<Route> {
        let family = if prefix.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        poll_until(
            &format!("a matching route for {prefix} in the router"),
            timeout,
            Duration::from_millis(100),
            || {
                let routes = self.router.routes(family)?;
                Ok(match inspect::route_for(&routes, prefix) {
                    Some(route) if condition(route) => Poll::Ready(route.clone()),
                    Some(route) => Poll::Pending(format!("{route:?}")),
                    None => Poll::Pending("no route".into()),
                })
            },
        )
    }

    /// Waits (bounded) until the router's kernel table has no route for `prefix`.
    pub fn wait_router_route_gone(&self, prefix: &str, timeout: Duration) -> Result<()> {
        let family = if prefix.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        poll_until(
            &format!("the route for {prefix} to leave the router"),
            timeout,
            Duration::from_millis(100),
            || {
                let routes = self.router.routes(family)?;
                Ok(match inspect::route_for(&routes, prefix) {
                    Some(route) => Poll::Pending(format!("{route:?}")),
                    None => Poll::Ready(()),
                })
            },
        )
    }

    /// The router's kernel routes of one family.
    pub fn router_routes(&self, family: Family) -> Result<Vec<Route>> {
        self.router.routes(family)
    }

    /// The router's neighbour (ARP/NDP) table.
    pub fn router_neighbours(&self) -> Result<Vec<Neighbour>> {
        self.router.neighbours()
    }

    /// Fault: unplugs node `node`'s LAN cable (`up = false`) or plugs it back in. The
    /// switch port goes down, so the node's `eth0` loses carrier but keeps its addresses
    /// and routes, as with a real cable pull (setting `eth0` itself down would make the
    /// kernel flush the node's routes).
    pub fn set_node_lan(&self, node: usize, up: bool) -> Result<()> {
        self.node(node)?;
        self.switch.set_link(&ifname::switch_node_port(node), up)
    }

    /// Fault: stops the router's FRR (peers see their sessions drop).
    pub fn stop_frr(&mut self) -> Result<()> {
        self.frr_mut()?.stop()
    }

    /// Starts the router's FRR again after [`Lab::stop_frr`].
    pub fn start_frr_again(&mut self) -> Result<()> {
        self.frr_mut()?.start_again()
    }

    /// Leaves everything running when dropped (what `herald-lab up` does, and how a test
    /// simulates a crashed run); `herald-lab down` removes it later. Returns the lab lock:
    /// other labs are kept out until it is dropped.
    pub fn persist(mut self) -> Option<LockGuard> {
        self.persistent = true;
        // Processes must outlive their handles: forget them (their pids stay in the
        // namespaces, where `down` finds them).
        for process in self.processes.drain(..) {
            std::mem::forget(process);
        }
        if let Some(frr) = self.frr.take() {
            std::mem::forget(frr);
        }
        self._lock.take()
    }

    /// Tears the lab down now (also what drop does). Returns the leftovers found after
    /// teardown (normally none).
    pub fn teardown(mut self) -> Result<cleanup::Leftovers> {
        self.teardown_inner();
        self.persistent = true; // nothing left for drop to do
        let prefix = format!("{}-", self.prefix());
        cleanup::wait_clean(&prefix, Duration::from_secs(10))?;
        cleanup::Leftovers::find(&prefix)
    }

    fn teardown_inner(&mut self) {
        for mut process in self.processes.drain(..) {
            let _ = process.kill();
        }
        if let Some(frr) = self.frr.take() {
            drop(frr);
        }
        for link in self.root_links.drain(..) {
            let _ = cmd::sh("ip", &["link", "del", &link]);
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ns.delete() {
                eprintln!("herald-lab: could not delete namespace {}: {e}", ns.name());
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.persistent {
            self.teardown_inner();
        }
    }
}

/// Adds an IPv4 and an IPv6 address (no DAD) to `dev` in `ns` and sets it up.
fn add_addresses(ns: &Netns, dev: &str, v4: &str, v6: &str) -> Result<()> {
    ns.ip(&["addr", "add", v4, "dev", dev])?;
    ns.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"])?;
    ns.set_link(dev, true)
}

/// One HTTP GET from inside `ns` to `ip:port` with curl, parsed as an echo reply.
pub fn http_get_from(ns: &Netns, ip: IpAddr, port: u16, timeout: Duration) -> Result<EchoReply> {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    };
    let max_time = format!("{:.1}", timeout.as_secs_f64());
    let out = ns.exec_unchecked(
        &[
            "curl",
            "-sS",
            "-g",
            "--max-time",
            &max_time,
            "--connect-timeout",
            &max_time,
            &url,
        ],
        timeout + Duration::from_secs(5),
    )?;
    if !out.success() {
        return Err(LabError::CommandFailed {
            command: format!("curl {url} (in {})", ns.name()),
            status: out.status.to_string(),
            stdout: out.stdout,
            stderr: out.stderr,
        });
    }
    EchoReply::parse(&out.stdout)
}

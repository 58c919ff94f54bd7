//! `herald-lab`: the lab's command line. A thin shell over the library: `setup` runs
//! tests/setup.sh; `up`/`down`/`status` manage a long-lived lab for people to explore;
//! `demo` shows the cluster and the lab working; `chaos` runs the chaos soak; `echo` and
//! `probe-udp` run inside lab namespaces (the pods' echo server and the client's UDP probe).

mod chaos_cmd;
mod demo_bgp;
mod demo_herald;
mod demo_l2;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use herald_lab::cleanup::{self, Leftovers};
use herald_lab::echo::{self, EchoIdentity, EchoServer};
use herald_lab::kube::{ControlPlane, Kubectl, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::topology::Lab;
use herald_lab::{paths, plan};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "herald-lab",
    version,
    about = "Herald's test lab: a real control plane and a network of namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install and build what the lab needs (runs tests/setup.sh).
    Setup,
    /// Start the control plane and a lab topology, and leave them running.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Echo pods per node.
        #[arg(long, default_value_t = 1)]
        pods_per_node: usize,
    },
    /// Remove every lab namespace, link, process and FRR instance, and stop the control plane.
    Down {
        /// Keep the control plane's data directory (certificates, etcd).
        #[arg(long)]
        keep_data: bool,
        /// Remove only the lab with this prefix (e.g. hlup); leave the control plane.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Show what is running.
    Status,
    /// Set up, bring the lab up, install Herald, and show it all working.
    Demo {
        /// Skip tests/setup.sh (when it already ran).
        #[arg(long)]
        skip_setup: bool,
    },
    /// Run the chaos soak: random API faults while a client sends requests; prints the table.
    Chaos {
        /// How long: 300, 300s, 15m, 2h.
        #[arg(long, default_value = "5m", value_parser = |s: &str| herald_lab::chaos::parse_duration(s).map_err(|e| e.to_string()))]
        duration: Duration,
        /// Seed of the fault sequence (the same seed gives the same sequence).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the echo server (inside a pod namespace).
    Echo {
        #[arg(long)]
        pod: String,
        #[arg(long)]
        node: String,
        #[arg(long, default_value_t = plan::ECHO_PORT)]
        port: u16,
    },
    /// Send one UDP datagram to an echo server and print its reply.
    #[command(hide = true)]
    ProbeUdp {
        target: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// The Kubernetes namespace `up` puts the echo pods and Service in.
const UP_NAMESPACE: &str = "lab";

/// What `up` left running (`target/lab/state.json`).
#[derive(Debug, Serialize, Deserialize)]
struct State {
    prefix: String,
    kubeconfig: String,
    kube_namespace: String,
    router_netns: String,
    client_netns: String,
    frr_instance: String,
    nodes: Vec<NodeState>,
    pods: Vec<PodState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeState {
    name: String,
    netns: String,
    lan_v4: String,
    lan_v6: String,
    pod_cidrs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PodState {
    name: String,
    netns: String,
    node: String,
    ipv4: String,
    ipv6: String,
    port: u16,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup(),
        Cmd::Up {
            nodes,
            pods_per_node,
        } => up(nodes, pods_per_node).map(|_| ()),
        Cmd::Down { keep_data, prefix } => match prefix {
            Some(prefix) => down_lab(&prefix),
            None => down(keep_data),
        },
        Cmd::Status => status(),
        Cmd::Demo { skip_setup } => demo(skip_setup),
        Cmd::Chaos { duration, seed } => chaos_cmd::run(duration, seed),
        Cmd::Echo { pod, node, port } => serve_echo(pod, node, port),
        Cmd::ProbeUdp { target, timeout_ms } => {
            let reply = echo::probe_udp(target, Duration::from_millis(timeout_ms))?;
            println!("{}", serde_json::to_string(&reply)?);
            Ok(())
        }
    }
}

fn setup() -> anyhow::Result<()> {
    let script = paths::setup_script();
    if !script.is_file() {
        bail!("{} is missing", script.display());
    }
    let status = Command::new("bash")
        .arg(&script)
        .current_dir(paths::repo_root())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

fn up(nodes: usize, pods_per_node: usize) -> anyhow::Result<State> {
    println!("herald-lab: starting the control plane (first start takes a while)...");
    let cp = ControlPlane::ensure().context("starting the control plane")?;
    let kubectl = cp.kubectl()?;
    println!(
        "herald-lab: building the {nodes}-node topology {}-* ...",
        plan::UP_PREFIX
    );
    let lab = Lab::builder()
        .prefix(plan::UP_PREFIX)
        .nodes(nodes)
        .pods_per_node(pods_per_node)
        .build()
        .context("building the lab topology")?;

    // The cluster's view: Nodes, the echo Pods (made Ready), and a Service over them.
    for node in lab.nodes() {
        kubectl.create_node(&node.node_spec())?.keep();
    }
    let ns = TestNamespace::create_named(&kubectl, UP_NAMESPACE)?;
    for pod in lab.pods() {
        ns.delete_pod_now(&pod.name)?;
        wait_pod_gone(&kubectl, &pod.name)?;
        ns.create_pod(&lab.pod_spec(&pod.name)?)?;
    }
    ns.apply_service(
        &ServiceSpec::new("echo", "echo")
            .port(PortSpec::tcp("http", plan::ECHO_PORT))
            .port(PortSpec::udp("udp", plan::ECHO_PORT)),
    )?;
    ns.keep();

    let state = State {
        prefix: lab.prefix().to_string(),
        kubeconfig: cp.kubeconfig_path().display().to_string(),
        kube_namespace: UP_NAMESPACE.to_string(),
        router_netns: lab.router().name().to_string(),
        client_netns: lab.client().name().to_string(),
        frr_instance: lab.names().frr_instance(),
        nodes: lab
            .nodes()
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                netns: n.netns.name().to_string(),
                lan_v4: n.lan_v4.to_string(),
                lan_v6: n.lan_v6.to_string(),
                pod_cidrs: vec![n.pod_cidr_v4.clone(), n.pod_cidr_v6.clone()],
            })
            .collect(),
        pods: lab
            .pods()
            .iter()
            .map(|p| PodState {
                name: p.name.clone(),
                netns: p.netns.name().to_string(),
                node: p.node_name.clone(),
                ipv4: p.ipv4.to_string(),
                ipv6: p.ipv6.to_string(),
                port: p.port,
            })
            .collect(),
    };
    std::fs::write(paths::state_path(), serde_json::to_string_pretty(&state)?)?;
    drop(lab.persist());
    emit(&usage_text(&state)?)?;
    Ok(state)
}

fn wait_pod_gone(kubectl: &Kubectl, name: &str) -> anyhow::Result<()> {
    kubectl.wait_for(
        &format!("pod {name} to be gone"),
        Duration::from_secs(30),
        |k| {
            Ok(match k.get("pod", name, Some(UP_NAMESPACE))? {
                None => herald_lab::wait::Poll::Ready(()),
                Some(_) => herald_lab::wait::Poll::Pending("still there".into()),
            })
        },
    )?;
    Ok(())
}

/// How to use the lab that is up, as text.
fn usage_text(state: &State) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let kubectl = paths::tool("kubectl", "KUBECTL")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "kubectl".into());
    writeln!(out)?;
    writeln!(
        out,
        "The lab is up (state in {}).",
        paths::state_path().display()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "  Kubernetes:   export KUBECONFIG={}",
        state.kubeconfig
    )?;
    writeln!(out, "                {kubectl} get nodes -o wide")?;
    writeln!(
        out,
        "                {kubectl} -n {} get pods,svc,endpointslices -o wide",
        state.kube_namespace
    )?;
    writeln!(
        out,
        "  Router:       ip netns exec {} vtysh -N {} -c 'show bgp summary'",
        state.router_netns, state.frr_instance
    )?;
    writeln!(out, "                ip -n {} route", state.router_netns)?;
    writeln!(
        out,
        "  Client:       ip netns exec {} curl -s http://{}:{}/",
        state.client_netns,
        state
            .pods
            .first()
            .map(|p| p.ipv4.as_str())
            .unwrap_or("198.18.1.11"),
        plan::ECHO_PORT
    )?;
    writeln!(out, "  Nodes:")?;
    for node in &state.nodes {
        writeln!(
            out,
            "    {:<10} ip netns exec {:<10} ...   LAN {} / {}, pods {}",
            node.name,
            node.netns,
            node.lan_v4,
            node.lan_v6,
            node.pod_cidrs.join(" ")
        )?;
    }
    writeln!(out, "  Pods:")?;
    for pod in &state.pods {
        writeln!(
            out,
            "    {:<10} on {:<10} {} / {}  (namespace {})",
            pod.name, pod.node, pod.ipv4, pod.ipv6, pod.netns
        )?;
    }
    writeln!(out)?;
    writeln!(out, "  Tear down:    target/debug/herald-lab down")?;
    Ok(out)
}

fn down(keep_data: bool) -> anyhow::Result<()> {
    let removed = cleanup::sweep(plan::GLOBAL_PREFIX)?;
    // After the node namespaces (and the containerds, kubelets and shims in them) are
    // gone: containers of real nodes, their pod namespaces, mounts and cgroups.
    let real_node_leftovers = herald_lab::realnode::sweep_leftovers();
    if real_node_leftovers > 0 {
        println!(
            "herald-lab down: removed {real_node_leftovers} real-node leftovers (containers, pod namespaces, mounts, cgroups)"
        );
    }
    let stopped = ControlPlane::stop()?;
    let _ = std::fs::remove_file(paths::state_path());
    let _ = std::fs::remove_file(paths::kubeconfig_path());
    if !keep_data {
        let _ = std::fs::remove_dir_all(ControlPlane::data_dir());
    }
    cleanup::wait_clean(plan::GLOBAL_PREFIX, Duration::from_secs(15))
        .context("waiting for the kernel to finish removing lab namespaces")?;
    println!("herald-lab down: removed {removed}");
    println!(
        "herald-lab down: control plane {}",
        if stopped {
            "stopped"
        } else {
            "was not running"
        }
    );
    Ok(())
}

fn down_lab(prefix: &str) -> anyhow::Result<()> {
    let names = herald_lab::plan::Names::new(prefix)?;
    forget_lab_nodes(names.prefix());
    let mut removed = cleanup::sweep(&format!("{}-", names.prefix()))?;
    let ports = cleanup::sweep(&format!("{}c", names.prefix()))?;
    removed.links.extend(ports.links);
    cleanup::wait_clean(&format!("{}-", names.prefix()), Duration::from_secs(15))?;
    cleanup::wait_clean(&format!("{}c", names.prefix()), Duration::from_secs(15))?;
    if names.prefix() == plan::UP_PREFIX {
        let _ = std::fs::remove_file(paths::state_path());
    }
    println!("herald-lab down: removed {removed}");
    Ok(())
}

/// Writes `text` to standard output; a reader that went away (`herald-lab status | head`)
/// is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// With the control plane running, deletes the lab's Node objects (`<prefix>-*`): they would
/// stay Ready forever and count as nodes of the next lab's cluster. Best effort.
fn forget_lab_nodes(prefix: &str) {
    let Ok(cp) = ControlPlane::running() else {
        return;
    };
    let Ok(kubectl) = cp.kubectl() else {
        return;
    };
    let Ok(nodes) = kubectl.list("nodes", None, None) else {
        return;
    };
    let own = format!("{prefix}-");
    for node in &nodes {
        if let Some(name) = node["metadata"]["name"].as_str()
            && name.starts_with(&own)
        {
            let _ = kubectl.run(&["delete", "node", name, "--wait=false"]);
        }
    }
}

fn status() -> anyhow::Result<()> {
    let mut out = String::new();
    match ControlPlane::pid() {
        Some(pid) => writeln!(
            out,
            "control plane: pid {pid}, {}",
            if ControlPlane::is_healthy() {
                "ready"
            } else {
                "NOT ready"
            }
        ),
        None => writeln!(out, "control plane: not running"),
    }?;
    let found = Leftovers::find(plan::GLOBAL_PREFIX)?;
    let mut prefixes: Vec<String> = found
        .namespaces
        .iter()
        .filter_map(|n| n.split('-').next())
        .map(str::to_string)
        .collect();
    prefixes.dedup();
    if prefixes.is_empty() {
        writeln!(out, "labs: none")?;
    }
    for prefix in prefixes {
        let members: Vec<&String> = found
            .namespaces
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .collect();
        writeln!(
            out,
            "lab {prefix}: {} namespaces ({})",
            members.len(),
            members
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        )?;
    }
    writeln!(out, "root links: {}", found.links.join(" "))?;
    writeln!(out, "lab processes: {}", found.processes.len())?;
    real_nodes_status(&mut out)?;
    if let Ok(text) = std::fs::read_to_string(paths::state_path()) {
        let state: State = serde_json::from_str(&text)?;
        out.push_str(&usage_text(&state)?);
    }
    emit(&out)
}

/// Real nodes (containerd, kubelet, kube-proxy: running or the end of their log) and
/// Herald's pods wherever they run, with the node and log end of any that cannot run.
fn real_nodes_status(out: &mut String) -> anyhow::Result<()> {
    use herald_lab::realnode;
    let nodes = realnode::real_node_names();
    if nodes.is_empty() {
        writeln!(out, "real nodes: none")?;
    }
    for node in &nodes {
        writeln!(out, "{}", realnode::agents_report(node, 8))?;
    }
    let Ok(kubectl) = ControlPlane::running().and_then(|cp| cp.kubectl()) else {
        return Ok(());
    };
    let selector = "app.kubernetes.io/name=herald";
    let pods = kubectl
        .run(&["get", "pods", "-A", "-l", selector, "-o", "wide"])
        .unwrap_or_default();
    if pods.trim().is_empty() {
        writeln!(out, "Herald pods: none")?;
        return Ok(());
    }
    writeln!(out, "Herald pods:")?;
    out.push_str(&pods);
    let list = kubectl.run(&["get", "pods", "-A", "-l", selector, "-o", "json"])?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    for pod in list["items"].as_array().into_iter().flatten() {
        for problem in realnode::pod_problems(pod) {
            writeln!(out, "{}", problem.report(10))?;
        }
    }
    Ok(())
}

fn demo(skip_setup: bool) -> anyhow::Result<()> {
    if !skip_setup {
        section("setup (tests/setup.sh)");
        setup()?;
    }
    section("bringing the lab up");
    let state = up(3, 1)?;
    let cp = ControlPlane::running()?;
    let kubectl = cp.kubectl()?;

    section("installing Herald");
    build_herald_binaries()?;
    demo_install_herald(&kubectl, &state)?;

    section("the cluster: nodes, pods, endpoints (EndpointSlices from kube-controller-manager)");
    print!("{}", kubectl.run(&["get", "nodes", "-o", "wide"])?);
    print!(
        "{}",
        kubectl.run(&[
            "-n",
            UP_NAMESPACE,
            "get",
            "pods,endpointslices",
            "-o",
            "wide"
        ])?
    );

    section("the network: the client reaches every pod through the router");
    let client = herald_lab::Netns::existing(&state.client_netns);
    for pod in &state.pods {
        for ip in [&pod.ipv4, &pod.ipv6] {
            let ip: IpAddr = ip.parse()?;
            let reply =
                herald_lab::topology::http_get_from(&client, ip, pod.port, Duration::from_secs(3))?;
            println!(
                "  client -> {:<26} answered by pod {} on {} (saw client {})",
                format!("{ip}:{}", pod.port),
                reply.pod,
                reply.node,
                reply.client
            );
        }
    }
    section("the router (FRR)");
    let out = Command::new("vtysh")
        .args(["-N", &state.frr_instance, "-c", "show bgp summary"])
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!();
    println!("demo done; the lab stays up. `target/debug/herald-lab down` removes it.");
    Ok(())
}

/// Installs Herald into the demo cluster (controller, speakers with forwarding) and shows
/// the client reaching a LoadBalancer Service: see `demo_herald`.
fn demo_install_herald(kubectl: &Kubectl, state: &State) -> anyhow::Result<()> {
    let lab = demo_herald::DemoLab {
        prefix: &state.prefix,
        kubeconfig: &state.kubeconfig,
        apps_namespace: &state.kube_namespace,
        router_netns: &state.router_netns,
        client_netns: &state.client_netns,
        nodes: state
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.netns.as_str(), n.lan_v4.as_str()))
            .collect(),
    };
    demo_herald::install_and_show(kubectl, &lab)?;
    section("layer 2: ARP/NDP announcement and failover");
    demo_l2::show(kubectl, &lab)?;
    section("BGP: every node announces, the router spreads connections (ECMP)");
    demo_bgp::show(kubectl, &lab)
}

/// Builds herald-controller and herald-speaker (quick when they are up to date), so that
/// `cargo run -p herald-lab -- demo` on a fresh checkout installs the real binaries.
fn build_herald_binaries() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(paths::repo_root())
        .args(["build", "-p", "herald-controller", "-p", "herald-speaker"])
        .status()
        .context("running cargo build for herald-controller and herald-speaker")?;
    if !status.success() {
        bail!("cargo build -p herald-controller -p herald-speaker failed ({status})");
    }
    Ok(())
}

fn section(title: &str) {
    println!();
    println!("==> {title}");
}

fn serve_echo(pod: String, node: String, port: u16) -> anyhow::Result<()> {
    let server = EchoServer::start_any(EchoIdentity { pod, node }, port)
        .with_context(|| format!("binding port {port}"))?;
    println!("{} on port {}", echo::READY_LINE, server.port());
    server.run_forever();
    Ok(())
}

//! `herald-lab demo`, the Herald part: installs Herald into the `up` lab and shows the client
//! reaching a LoadBalancer Service through it.
//!
//! Runs the real binaries from `target/debug`: `herald-controller` (in node 1's namespace,
//! which reaches the apiserver over the control-plane link) hands the Service an address
//! from a pool; a `herald-speaker` in every node namespace wires nftables forwarding to the
//! echo pods. Until the speakers announce over BGP or layer 2 in the demo, a static route on
//! the router sends the address to node 1. The processes are detached so they outlive the
//! demo; `herald-lab down` stops them with the namespaces they run in.

use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use herald_lab::kube::{Kubectl, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::wait::Poll;
use herald_lab::{Netns, paths, plan};
use serde_json::json;

/// Where the demo installs Herald.
const INSTALL_NAMESPACE: &str = "herald-system";
const MEMBERLIST_SECRET: &str = "herald-memberlist";
/// The demo pool: the BGP-mode range of the address plan.
const DEMO_POOL: &str = "203.0.113.0/25";

/// What the demo needs to know about the `up` lab.
pub struct DemoLab<'a> {
    pub prefix: &'a str,
    pub kubeconfig: &'a str,
    pub apps_namespace: &'a str,
    pub router_netns: &'a str,
    pub client_netns: &'a str,
    /// (node name, namespace, LAN IPv4) of every node.
    pub nodes: Vec<(&'a str, &'a str, &'a str)>,
}

/// Installs Herald and shows a Service working; prints a note and returns when the
/// binaries are not built.
pub fn install_and_show(kubectl: &Kubectl, lab: &DemoLab<'_>) -> anyhow::Result<()> {
    let debug = paths::target_dir().join("debug");
    let controller = debug.join("herald-controller");
    let speaker = debug.join("herald-speaker");
    if !controller.is_file() || !speaker.is_file() {
        println!(
            "  (herald-controller / herald-speaker not built: run `cargo build -p herald-controller -p herald-speaker` and the demo again)"
        );
        return Ok(());
    }
    let Some((_, controller_netns, ingress_node_v4)) = lab.nodes.first().copied() else {
        anyhow::bail!("the lab has no nodes");
    };

    println!("  CRDs, namespace {INSTALL_NAMESPACE}, pool {DEMO_POOL}, memberlist Secret");
    let crds = paths::repo_root().join("charts/herald/crds");
    kubectl.run(&["apply", "-f", &crds.to_string_lossy()])?;
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "crd/ipaddresspools.herald.dev",
        "--timeout=60s",
    ])?;
    TestNamespace::create_named(kubectl, INSTALL_NAMESPACE)?.keep();
    kubectl.apply(
        &json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "demo", "namespace": INSTALL_NAMESPACE},
            // No .0/.255 addresses: some client networks still drop them.
            "spec": {"addresses": [DEMO_POOL], "avoidBuggyIPs": true},
        })
        .to_string(),
    )?;
    if kubectl
        .get("secret", MEMBERLIST_SECRET, Some(INSTALL_NAMESPACE))?
        .is_none()
    {
        kubectl.apply(
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": MEMBERLIST_SECRET, "namespace": INSTALL_NAMESPACE},
                "stringData": {"secretkey": random_key()?},
            })
            .to_string(),
        )?;
    }

    let log_dir = paths::logs_dir().join(lab.prefix);
    std::fs::create_dir_all(&log_dir)?;
    println!("  herald-controller in {controller_netns}");
    spawn_detached(
        controller_netns,
        &controller,
        &[
            "--kubeconfig",
            lab.kubeconfig,
            "--namespace",
            INSTALL_NAMESPACE,
            "--metrics-addr",
            "127.0.0.1:7472",
        ],
        &log_dir.join("herald-controller.log"),
    )?;
    for (name, netns, _) in &lab.nodes {
        println!("  herald-speaker in {netns} (--forwarding on)");
        spawn_detached(
            netns,
            &speaker,
            &[
                "--node-name",
                name,
                "--namespace",
                INSTALL_NAMESPACE,
                "--kubeconfig",
                lab.kubeconfig,
                "--forwarding",
                "on",
                "--memberlist-secret",
                MEMBERLIST_SECRET,
            ],
            &log_dir.join(format!("herald-speaker-{name}.log")),
        )?;
    }

    println!(
        "  Service {}/demo (type LoadBalancer, port 80 -> echo 8080)",
        lab.apps_namespace
    );
    let mut manifest = ServiceSpec::new("demo", "echo")
        .load_balancer()
        .port(PortSpec::tcp("http", 80).target(plan::ECHO_PORT))
        .manifest(lab.apps_namespace);
    manifest["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
    kubectl.apply(&manifest.to_string())?;
    let address: IpAddr = kubectl.wait_for(
        "the controller to give Service demo an address",
        Duration::from_secs(60),
        |k| {
            let service = k.get("service", "demo", Some(lab.apps_namespace))?;
            let ip = service
                .as_ref()
                .and_then(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str())
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            Ok(match ip {
                Some(ip) => Poll::Ready(ip),
                None => Poll::Pending("no ingress yet".into()),
            })
        },
    )?;
    println!(
        "  the controller gave it {address}; static route on the router: {address} via node 1 ({ingress_node_v4})"
    );
    Netns::existing(lab.router_netns).ip(&[
        "route",
        "replace",
        &format!("{address}/32"),
        "via",
        ingress_node_v4,
    ])?;

    println!("  the client asks {address}:80 six times:");
    let client = Netns::existing(lab.client_netns);
    let first = herald_lab::wait::poll_until_ok(
        "the client to reach the Service",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            herald_lab::topology::http_get_from(&client, address, 80, Duration::from_secs(2))
                .map(Poll::Ready)
        },
    )?;
    let mut replies = vec![first];
    for _ in 0..5 {
        replies.push(herald_lab::topology::http_get_from(
            &client,
            address,
            80,
            Duration::from_secs(3),
        )?);
    }
    for reply in replies {
        println!(
            "    answered by pod {} on {} (saw client {})",
            reply.pod, reply.node, reply.client
        );
    }
    println!(
        "  speaker and controller logs: {}; nft rules: ip netns exec {} nft list table inet herald",
        log_dir.display(),
        controller_netns
    );
    Ok(())
}

/// A 32-byte key from the kernel's random source, hex-encoded.
fn random_key() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts `program args` inside `netns` in its own process group, logging to `log`, and
/// lets it run on after this process exits.
fn spawn_detached(netns: &str, program: &Path, args: &[&str], log: &PathBuf) -> anyhow::Result<()> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Netns::existing(netns)
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} in {netns}", program.display()))?;
    // Not waited for: `herald-lab down` ends it with its namespace.
    drop(child);
    Ok(())
}

//! `herald-lab demo`, the Herald part: installs Herald into the `up` lab and shows the client
//! reaching a LoadBalancer Service through it.
//!
//! Runs the real binaries from `target/debug`: `herald-controller` (in node 1's namespace,
//! which reaches the apiserver over the control-plane link) hands the Service an address
//! from a pool; a `herald-speaker` in every node namespace wires nftables forwarding to the
//! echo pods. Until the speakers announce over BGP or layer 2 in the demo, a static route on
//! the router sends the address to node 1. The processes are detached so they outlive the
//! demo; `herald-lab down` stops them with the namespaces they run in.
//!
//! Also what the other demo parts (`demo_l2`, `demo_bgp`) share: [`DemoLab`], the install
//! namespace, applying a Herald object, waiting for a Service's address, the client's first
//! reply and starting a detached process.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use herald_lab::echo::EchoReply;
use herald_lab::herald::{self, MEMBERLIST_SECRET};
use herald_lab::kube::{Kubectl, PortSpec, ServiceSpec, TestNamespace};
use herald_lab::topology::http_get_from;
use herald_lab::wait::{Poll, poll_until_ok};
use herald_lab::{Netns, paths, plan};
use serde_json::{Value, json};

/// Where the demo installs Herald.
pub const INSTALL_NAMESPACE: &str = "herald-system";
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
    herald::install_crds(kubectl)?;
    TestNamespace::create_named(kubectl, INSTALL_NAMESPACE)?.keep();
    // No .0/.255 addresses: some client networks still drop them.
    apply_herald_object(
        kubectl,
        "IPAddressPool",
        "demo",
        json!({"addresses": [DEMO_POOL], "avoidBuggyIPs": true}),
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
    let new_log = |name: &str| {
        let path = log_dir.join(name);
        File::create(&path).with_context(|| format!("creating {}", path.display()))
    };
    println!("  herald-controller in {controller_netns}");
    spawn_detached(
        &Netns::existing(controller_netns),
        &controller,
        &[
            "--kubeconfig",
            lab.kubeconfig,
            "--namespace",
            INSTALL_NAMESPACE,
            "--metrics-addr",
            "127.0.0.1:7472",
        ],
        new_log("herald-controller.log")?,
    )?;
    for (name, netns, _) in &lab.nodes {
        println!("  herald-speaker in {netns} (--forwarding on)");
        spawn_detached(
            &Netns::existing(netns),
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
            new_log(&format!("herald-speaker-{name}.log"))?,
        )?;
    }

    println!(
        "  Service {}/demo (type LoadBalancer, port 80 -> echo 8080)",
        lab.apps_namespace
    );
    let manifest = ServiceSpec::new("demo", "echo")
        .load_balancer()
        .port(PortSpec::tcp("http", 80).target(plan::ECHO_PORT))
        .without_node_ports()
        .manifest(lab.apps_namespace);
    kubectl.apply(&manifest.to_string())?;
    let address = wait_address(
        kubectl,
        lab,
        "demo",
        "the controller to give Service demo an address",
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
    let mut replies = vec![first_reply(&client, address)?];
    for _ in 0..5 {
        replies.push(http_get_from(&client, address, 80, Duration::from_secs(3))?);
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

/// Applies the Herald object `kind`/`name` with `spec` in the install namespace.
pub fn apply_herald_object(
    kubectl: &Kubectl,
    kind: &str,
    name: &str,
    spec: Value,
) -> anyhow::Result<()> {
    kubectl.apply(&herald::object(kind, name, INSTALL_NAMESPACE, spec).to_string())?;
    Ok(())
}

/// Waits (60 s) for the controller to give Service `service` of the apps namespace its
/// first address.
pub fn wait_address(
    kubectl: &Kubectl,
    lab: &DemoLab<'_>,
    service: &str,
    what: &str,
) -> anyhow::Result<IpAddr> {
    let ips = herald::wait_ingress(
        kubectl,
        lab.apps_namespace,
        service,
        1,
        what,
        Duration::from_secs(60),
    )?;
    ips.first().copied().context("no ingress address")
}

/// The client's first reply from `address:80`, retried for 30 s (the address may still be
/// on its way to the router).
pub fn first_reply(client: &Netns, address: IpAddr) -> anyhow::Result<EchoReply> {
    Ok(poll_until_ok(
        &format!("the client to reach {address}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || http_get_from(client, address, 80, Duration::from_secs(2)).map(Poll::Ready),
    )?)
}

/// Starts `program args` inside `netns` in its own process group, its output going to
/// `log`, and lets it run on after this process exits.
pub fn spawn_detached(
    netns: &Netns,
    program: impl AsRef<OsStr>,
    args: &[impl AsRef<OsStr>],
    log: File,
) -> anyhow::Result<()> {
    let program = program.as_ref();
    let err = log.try_clone()?;
    let child = netns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} in {}", program.display(), netns.name()))?;
    // Not waited for: `herald-lab down` ends it with its namespace.
    drop(child);
    Ok(())
}

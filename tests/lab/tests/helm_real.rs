//! Herald as its users run it: `helm install` of charts/herald on real nodes (containerd,
//! kubelet, kube-proxy in the lab's node namespaces), the image built locally without
//! Docker, the controller Deployment and speaker DaemonSet as real pods whose probes must
//! pass, and the chart's defaults (`speaker.forwarding: false`: kube-proxy DNATs the
//! LoadBalancer addresses). The client behind the router is the user's user.
//!
//! Needs root, `tests/setup.sh`, the workspace built (the image takes `target/release`
//! binaries when present, else `target/debug`), and the machine-wide lab lock.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_lab::helm::{self, HelmRelease};
use herald_lab::herald;
use herald_lab::image::{self, BuiltImage};
use herald_lab::kube::{PortSpec, ServiceSpec};
use herald_lab::realnode::{self, ProxyMode, RealNodeOptions};
use herald_lab::topology::{RouterSetup, http_get_from};
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Netns, Result, paths, plan};
use serde_json::json;

const NODES: usize = 2;
const PODS_TIMEOUT: Duration = Duration::from_secs(150);
const SERVICE_PORT: u16 = 80;

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_IMAGE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let release = paths::target_dir().join("release");
    if release.join("herald-controller").is_file() && release.join("herald-speaker").is_file() {
        release
    } else {
        paths::target_dir().join("debug")
    }
}

fn build_images() -> Result<Vec<BuiltImage>> {
    let dir = paths::lab_dir().join("images");
    Ok(vec![
        image::build(&image::pause_image(), &dir.join("pause"))?,
        image::build(
            &image::echo_image(&paths::herald_lab_binary()?),
            &dir.join("echo"),
        )?,
        image::build(&image::herald_image(&bin_dir()), &dir.join("herald"))?,
    ])
}

/// The echo Deployment: one pod per listed node, HTTP readiness probe.
fn echo_deployment(nodes: &[String]) -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": nodes.len(),
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}
                        ]}]}}},
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "echo"}}
                    }],
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "echo",
                        "image": format!("{}:{}", image::ECHO_REPOSITORY, image::LAB_TAG),
                        "imagePullPolicy": "Never",
                        "args": ["--pod", "$(POD_NAME)", "--node", "$(NODE_NAME)",
                                 "--port", plan::ECHO_PORT.to_string()],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                        ],
                        "ports": [{"containerPort": plan::ECHO_PORT, "name": "http"}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": plan::ECHO_PORT}, "periodSeconds": 1},
                        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
                                            "allowPrivilegeEscalation": false,
                                            "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }
        }
    })
    .to_string()
}

/// `curl` from the client namespace; returns (HTTP status, body).
fn client_http(lab: &Lab, url: &str) -> Result<(u16, String)> {
    http_from(lab.client(), url)
}

/// `curl` from `netns`; returns (HTTP status, body).
fn http_from(netns: &Netns, url: &str) -> Result<(u16, String)> {
    let out = netns.exec_unchecked(
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            url,
        ],
        Duration::from_secs(10),
    )?;
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn url(ip: IpAddr, port: u16, path: &str) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}{path}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}{path}"),
    }
}

/// How the address reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Layer2,
    Bgp,
}

/// One user setup: announcement mode and who DNATs the address (kube-proxy in a mode,
/// or Herald's own table with `speaker.forwarding: true` and no kube-proxy).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    mode: Mode,
    kube_proxy: Option<ProxyMode>,
    /// `helm upgrade` rolling the speaker DaemonSet while the client keeps asking.
    upgrade: bool,
}

impl Scenario {
    fn forwarding(self) -> bool {
        self.kube_proxy.is_none()
    }
    fn describe(self) -> String {
        format!(
            "{}, {}",
            match self.mode {
                Mode::Layer2 => "layer 2",
                Mode::Bgp => "BGP",
            },
            match self.kube_proxy {
                Some(mode) => format!("kube-proxy {}", mode.flag()),
                None => "no kube-proxy, speaker.forwarding=true".to_string(),
            }
        )
    }
}

/// Our nodes' AS and the router's (FRR, every node a neighbor).
const NODE_ASN: u32 = 64512;

fn run(scenario: Scenario) -> Result<()> {
    let what = scenario.describe();
    let cp = ControlPlane::ensure()?;
    let kubectl: Kubectl = cp.kubectl()?;
    let lab = Lab::builder()
        .nodes(NODES)
        .pods_per_node(0)
        .router(match scenario.mode {
            Mode::Layer2 => RouterSetup::NoFrr,
            Mode::Bgp => RouterSetup::StandardFrr,
        })
        // BGP: the router learns the address from the speakers only.
        .router_pod_routes(scenario.mode == Mode::Layer2)
        .build()?;
    let t0 = Instant::now();
    let images = build_images()?;
    println!(
        "[{what}] images built in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let (nodes, bring_up) = realnode::start_all(
        lab.nodes(),
        RealNodeOptions {
            kube_proxy: scenario.kube_proxy,
        },
        &images,
        &kubectl,
    )?;
    println!(
        "[{what}] {NODES} real nodes Ready in {:.1}s",
        bring_up.as_secs_f64()
    );
    let names: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();

    // helm install, as a user would (the lab's image, the apiserver's address).
    let install = kubectl.test_namespace("herald")?;
    let apps = kubectl.test_namespace("apps")?;
    let t_install = Instant::now();
    let mut values = helm::lab_image_values();
    if scenario.forwarding() {
        values.push("speaker.forwarding=true".into());
    }
    let mut release = HelmRelease::install(&kubectl, "herald", install.name(), &values)?;
    let controllers = realnode::wait_pods_ready(
        &kubectl,
        install.name(),
        "app.kubernetes.io/component=controller",
        2,
        PODS_TIMEOUT,
    )?;
    let speakers = realnode::wait_pods_ready(
        &kubectl,
        install.name(),
        "app.kubernetes.io/component=speaker",
        NODES,
        PODS_TIMEOUT,
    )?;
    println!(
        "[{what}] helm install: controller x2 and speaker x{NODES} Ready (probes passing) in {:.1}s",
        t_install.elapsed().as_secs_f64()
    );
    let mut speaker_nodes: Vec<&str> = speakers.iter().map(|p| p.node.as_str()).collect();
    speaker_nodes.sort_unstable();
    assert_eq!(
        speaker_nodes,
        names.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Metrics scraped over the network, from the client behind the router.
    for node in lab.nodes() {
        let (code, body) = client_http(&lab, &url(IpAddr::V4(node.lan_v4), 7473, "/metrics"))?;
        assert_eq!(code, 200, "speaker metrics on {}", node.name);
        assert!(body.contains("herald_"), "speaker metrics on {}", node.name);
    }
    for pod in &controllers {
        let ip = pod
            .ips
            .first()
            .copied()
            .ok_or_else(|| LabError::Invalid("controller pod without IP".into()))?;
        // From another node, across the LAN (in BGP scenarios the router has no pod
        // routes, so the client cannot reach pod addresses).
        let from = lab
            .nodes()
            .iter()
            .find(|n| n.name != pod.node)
            .ok_or_else(|| LabError::Invalid("no other node".into()))?;
        let (code, body) = http_from(&from.netns, &url(ip, 7472, "/metrics"))?;
        assert_eq!(code, 200, "controller metrics of {}", pod.name);
        assert!(
            body.contains("herald_"),
            "controller metrics of {}",
            pod.name
        );
    }

    let objects = match scenario.mode {
        Mode::Layer2 => vec![
            (
                "IPAddressPool",
                "pool",
                json!({"addresses": [plan::L2_POOL_V4]}),
            ),
            ("L2Advertisement", "l2", json!({"pools": ["pool"]})),
        ],
        Mode::Bgp => vec![
            (
                "IPAddressPool",
                "pool",
                json!({"addresses": [plan::BGP_POOL_V4]}),
            ),
            (
                "BGPPeer",
                "router",
                json!({"myASN": NODE_ASN, "peerASN": plan::ROUTER_ASN,
                       "peerAddress": plan::ROUTER_LAN_V4.to_string(),
                       "holdTime": "9s", "connectTime": "2s"}),
            ),
            ("BGPAdvertisement", "bgp", json!({"pools": ["pool"]})),
        ],
    };
    for (kind, name, spec) in objects {
        install.apply(&herald::object(kind, name, install.name(), spec).to_string())?;
    }
    apps.apply(&echo_deployment(&names))?;
    realnode::wait_pods_ready(&kubectl, apps.name(), "app=echo", NODES, PODS_TIMEOUT)?;
    apps.apply_service(
        &ServiceSpec::new("echo", "echo")
            .load_balancer()
            .port(PortSpec::tcp("http", SERVICE_PORT).target(plan::ECHO_PORT))
            .traffic_policy("Local"),
    )?;
    let ips = herald::wait_ingress(
        &kubectl,
        apps.name(),
        "echo",
        1,
        "the helm-installed controller to give the Service an address",
        Duration::from_secs(60),
    )?;
    let vip = ips[0];
    let t_reach = Instant::now();
    let reply = lab.wait_client_get(vip, SERVICE_PORT, Duration::from_secs(60))?;
    println!(
        "[{what}] client reached {vip} {:.1}s after the address was assigned; answered by {} on {}",
        t_reach.elapsed().as_secs_f64(),
        reply.pod,
        reply.node
    );
    assert!(names.contains(&reply.node));
    // Local: the pod sees the client's own address.
    assert!(
        reply.client.starts_with(&format!("{}:", plan::CLIENT_V4)),
        "Local must keep the client's address, the pod saw {}",
        reply.client
    );
    if scenario.mode == Mode::Bgp {
        // Every node has a local endpoint: both announce (ECMP at the router).
        let route = lab.wait_router_route(&format!("{vip}/32"), Duration::from_secs(30), |r| {
            r.gateways().len() == NODES
        })?;
        println!("[{what}] router route {route:?}");
    }

    if scenario.upgrade {
        upgrade_under_load(
            &what,
            &lab,
            &kubectl,
            &release,
            install.name(),
            vip,
            scenario.mode == Mode::Layer2,
        )?;
    }

    // healthCheckNodePort: served by kube-proxy on every node, 200 where a local endpoint
    // is ready (here: every node). Without kube-proxy nobody serves it.
    if scenario.kube_proxy.is_some() {
        let service = apps
            .get("service", "echo")?
            .ok_or_else(|| LabError::Invalid("Service echo vanished".into()))?;
        let hc_port = service["spec"]["healthCheckNodePort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| LabError::Invalid("Local Service without healthCheckNodePort".into()))?;
        for node in lab.nodes() {
            let (code, body) = client_http(&lab, &url(IpAddr::V4(node.lan_v4), hc_port, "/"))?;
            assert_eq!(code, 200, "healthCheckNodePort on {}: {body}", node.name);
            assert!(
                body.replace(' ', "").contains("\"localEndpoints\":1"),
                "{body}"
            );
        }
    }

    // Uninstall in the order that leaves nothing behind: the Service goes, the pools go
    // (the running controller releases their finalizers), then the release.
    kubectl.run(&[
        "-n",
        apps.name(),
        "delete",
        "service",
        "echo",
        "--timeout=60s",
    ])?;
    if scenario.mode == Mode::Bgp {
        lab.wait_router_route_gone(&format!("{vip}/32"), Duration::from_secs(30))?;
    }
    kubectl.run(&[
        "-n",
        install.name(),
        "delete",
        "ipaddresspools.herald.dev,l2advertisements.herald.dev,bgpadvertisements.herald.dev,bgppeers.herald.dev",
        "--all",
        "--timeout=60s",
    ])?;
    release.uninstall()?;
    poll_until(
        "helm uninstall to leave nothing in the install namespace",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let left = kubectl.run(&[
                "-n",
                install.name(),
                "get",
                "all,secrets,configmaps",
                "-o",
                "name",
            ])?;
            let left: Vec<&str> = left
                .lines()
                // kube-root-ca.crt is the namespace's, not the release's.
                .filter(|l| !l.contains("kube-root-ca.crt") && !l.trim().is_empty())
                .collect();
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(left.join(" "))
            })
        },
    )?;
    // The controller's leader-election Lease is made at run time, not by the chart: helm
    // does not know it, so it stays until the namespace goes (reported, not an error).
    let leases = kubectl.run(&["-n", install.name(), "get", "leases", "-o", "name"])?;
    println!(
        "[{what}] after helm uninstall, leases left: {:?}",
        leases.trim()
    );
    for node in lab.nodes() {
        let tables = node.netns.exec(&["nft", "list", "tables"])?;
        assert!(
            !tables.contains("inet herald"),
            "{}: Herald's nftables table outlived the uninstall: {tables}",
            node.name
        );
    }

    drop(apps);
    drop(install);
    drop(nodes);
    drop(lab);
    Ok(())
}

/// `helm upgrade` that changes the speaker's pod template (so the DaemonSet rolls, one
/// node at a time), while the client sends one request after another to `vip`; prints how
/// many failed. BGP: none may fail (a stopping speaker withdraws its route first, the other
/// nodes keep announcing). Layer 2 (`allow_loss`): requests may fail while the owner's
/// speaker restarts and the address moves; the window is printed, not asserted (a bound
/// on it is the failover benchmark's business).
fn upgrade_under_load(
    what: &str,
    lab: &Lab,
    kubectl: &Kubectl,
    release: &HelmRelease,
    namespace: &str,
    vip: IpAddr,
    allow_loss: bool,
) -> Result<()> {
    let client = lab.client().clone();
    let stop = AtomicBool::new(false);
    type Failures = Vec<(Duration, String)>;
    let (sent, failed, took) = std::thread::scope(|scope| -> Result<(u32, Failures, Duration)> {
        let load = scope.spawn(|| {
            let mut sent = 0u32;
            let mut failed = Vec::new();
            let begin = Instant::now();
            // Bounded: at most 20,000 requests (the rollout has its own deadline).
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                sent += 1;
                let at = begin.elapsed();
                if let Err(e) = http_get_from(&client, vip, SERVICE_PORT, Duration::from_secs(2)) {
                    failed.push((at, e.to_string()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (sent, failed)
        });
        let started = Instant::now();
        let result = release
            .upgrade(&["speaker.resyncInterval=31s".to_string()])
            .and_then(|()| {
                kubectl.run(&[
                    "-n",
                    namespace,
                    "rollout",
                    "status",
                    "daemonset/herald-speaker",
                    "--timeout=150s",
                ])
            });
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (sent, failed) = load
            .join()
            .map_err(|_| LabError::Invalid("the load thread panicked".into()))?;
        result?;
        Ok((sent, failed, took))
    })?;
    let window = match (failed.first(), failed.last()) {
        (Some((first, _)), Some((last, _))) => format!(
            ", failures from {:.2}s to {:.2}s after the upgrade began (window {:.2}s)",
            first.as_secs_f64(),
            last.as_secs_f64(),
            (*last - *first).as_secs_f64()
        ),
        _ => String::new(),
    };
    println!(
        "[{what}] helm upgrade rolled the speaker DaemonSet in {:.1}s: {sent} requests, {} failed{window}",
        took.as_secs_f64(),
        failed.len()
    );
    if !allow_loss {
        assert!(
            failed.is_empty(),
            "requests failed during the speaker rollout: {:?}",
            &failed[..failed.len().min(5)]
        );
    }
    // Whatever happened during the rollout, the address answers afterwards.
    lab.wait_client_get(vip, SERVICE_PORT, Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn chart_defaults_layer2_with_kube_proxy_nftables() -> Result<()> {
    run(Scenario {
        mode: Mode::Layer2,
        kube_proxy: Some(ProxyMode::Nftables),
        upgrade: true,
    })
}

#[test]
fn chart_defaults_bgp_with_kube_proxy_nftables() -> Result<()> {
    run(Scenario {
        mode: Mode::Bgp,
        kube_proxy: Some(ProxyMode::Nftables),
        upgrade: true,
    })
}

#[test]
fn layer2_with_kube_proxy_iptables() -> Result<()> {
    run(Scenario {
        mode: Mode::Layer2,
        kube_proxy: Some(ProxyMode::Iptables),
        upgrade: false,
    })
}

#[test]
fn bgp_without_kube_proxy_and_herald_forwarding() -> Result<()> {
    run(Scenario {
        mode: Mode::Bgp,
        kube_proxy: None,
        upgrade: false,
    })
}

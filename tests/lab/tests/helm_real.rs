//! Herald as its users run it: `helm install` of charts/herald on real nodes (containerd,
//! kubelet, kube-proxy in the lab's node namespaces), the image built locally without
//! Docker, the controller Deployment and speaker DaemonSet as real pods whose probes must
//! pass, and the chart's defaults (`speaker.forwarding: false`: kube-proxy DNATs the
//! LoadBalancer addresses). The client behind the router is the user's user.
//!
//! Needs root, `tests/setup.sh`, the workspace built (the image takes `target/release`
//! binaries when present, else `target/debug`), and the machine-wide lab lock.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_lab::helm::HelmRelease;
use herald_lab::realcluster::{self, HeraldInstall, Mode, RealCluster, under_load};
use herald_lab::realnode::{ProxyMode, RealNodeOptions};
use herald_lab::topology::RouterSetup;
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Netns, Result, plan};

const NODES: usize = 2;
const SERVICE_PORT: u16 = 80;

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

fn run(scenario: Scenario) -> Result<()> {
    let what = scenario.describe();
    let cp = ControlPlane::ensure()?;
    let RealCluster {
        nodes,
        lab,
        kubectl,
        images_took,
        bring_up,
    } = RealCluster::start(
        &cp,
        Lab::builder()
            .nodes(NODES)
            .pods_per_node(0)
            .router(match scenario.mode {
                Mode::Layer2 => RouterSetup::NoFrr,
                Mode::Bgp => RouterSetup::StandardFrr,
            })
            // BGP: the router learns the address from the speakers only.
            .router_pod_routes(scenario.mode == Mode::Layer2),
        RealNodeOptions {
            kube_proxy: scenario.kube_proxy,
        },
        true,
    )?;
    println!(
        "[{what}] images built in {:.1}s; {NODES} real nodes Ready in {:.1}s",
        images_took.as_secs_f64(),
        bring_up.as_secs_f64()
    );
    let names: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();

    // helm install, as a user would (the lab's image, the apiserver's address).
    let install = kubectl.test_namespace("herald")?;
    let apps = kubectl.test_namespace("apps")?;
    let extra = if scenario.forwarding() {
        vec!["speaker.forwarding=true".to_string()]
    } else {
        Vec::new()
    };
    let HeraldInstall {
        mut release,
        controllers,
        speakers,
        took,
    } = realcluster::install_herald(&kubectl, install.name(), NODES, &extra)?;
    println!(
        "[{what}] helm install: controller x2 and speaker x{NODES} Ready (probes passing) in {:.1}s",
        took.as_secs_f64()
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

    let vip = realcluster::echo_service(&install, &apps, scenario.mode, &names, SERVICE_PORT)?;
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

    // A plain `helm uninstall`, the Service and the pool still in use: the chart's
    // pre-delete hook stops the controller and releases the pool's finalizer first.
    let in_use = kubectl
        .get("ipaddresspools.herald.dev", "pool", Some(install.name()))?
        .ok_or_else(|| LabError::Invalid("pool vanished".into()))?;
    assert!(
        in_use["metadata"]["finalizers"]
            .to_string()
            .contains("herald.dev/pool-in-use"),
        "the pool in use should carry the finalizer before the uninstall: {}",
        in_use["metadata"]
    );
    let t_uninstall = Instant::now();
    release.uninstall()?;
    println!(
        "[{what}] helm uninstall (pre-delete hook included) took {:.1}s",
        t_uninstall.elapsed().as_secs_f64()
    );
    if scenario.mode == Mode::Bgp {
        lab.wait_router_route_gone(&format!("{vip}/32"), Duration::from_secs(30))?;
    }
    poll_until(
        "helm uninstall to leave nothing in the install namespace",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let left = kubectl.run(&[
                "-n",
                install.name(),
                "get",
                "all,jobs,secrets,configmaps,serviceaccounts,roles,rolebindings,leases",
                "-o",
                "name",
            ])?;
            let left: Vec<&str> = left
                .lines()
                // The namespace's own, not the release's.
                .filter(|l| {
                    !l.contains("kube-root-ca.crt")
                        && *l != "serviceaccount/default"
                        && !l.trim().is_empty()
                })
                .collect();
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(left.join(" "))
            })
        },
    )?;
    // No stuck finalizer: the user's pool stays (their configuration) without Herald's
    // finalizer, and deleting it (or the namespace) completes at once.
    let pool = kubectl
        .get("ipaddresspools.herald.dev", "pool", Some(install.name()))?
        .ok_or_else(|| LabError::Invalid("the uninstall deleted the user's pool".into()))?;
    assert!(
        !pool["metadata"]["finalizers"]
            .to_string()
            .contains("herald.dev/pool-in-use"),
        "the pool kept Herald's finalizer after the uninstall: {}",
        pool["metadata"]
    );
    kubectl.run(&[
        "-n",
        install.name(),
        "delete",
        "ipaddresspools.herald.dev,l2advertisements.herald.dev,bgpadvertisements.herald.dev,bgppeers.herald.dev",
        "--all",
        "--timeout=20s",
    ])?;
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
    let started = Instant::now();
    let ((), sent, failed) = under_load(lab, vip, SERVICE_PORT, || {
        release.upgrade(&["speaker.resyncInterval=31s".to_string()])?;
        kubectl.run(&[
            "-n",
            namespace,
            "rollout",
            "status",
            "daemonset/herald-speaker",
            "--timeout=150s",
        ])?;
        Ok(())
    })?;
    let took = started.elapsed();
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

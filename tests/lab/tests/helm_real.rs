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
use std::time::{Duration, Instant};

use herald_lab::helm::{self, HelmRelease};
use herald_lab::herald;
use herald_lab::image::{self, BuiltImage};
use herald_lab::kube::{PortSpec, ServiceSpec};
use herald_lab::realnode::{self, ProxyMode, RealNodeOptions};
use herald_lab::topology::RouterSetup;
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Result, paths, plan};
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
    let out = lab.client().exec_unchecked(
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

#[test]
fn helm_installed_herald_on_real_nodes_serves_layer2_through_kube_proxy_nftables() -> Result<()> {
    let cp = ControlPlane::ensure()?;
    let kubectl: Kubectl = cp.kubectl()?;
    let lab = Lab::builder()
        .nodes(NODES)
        .pods_per_node(0)
        .router(RouterSetup::NoFrr)
        .build()?;
    let t0 = Instant::now();
    let images = build_images()?;
    println!("images built in {:.1}s", t0.elapsed().as_secs_f64());
    let (nodes, bring_up) = realnode::start_all(
        lab.nodes(),
        RealNodeOptions {
            kube_proxy: Some(ProxyMode::Nftables),
        },
        &images,
        &kubectl,
    )?;
    println!("{NODES} real nodes Ready in {:.1}s", bring_up.as_secs_f64());
    let names: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();

    // helm install, as a user would (the lab's image, the apiserver's address).
    let install = kubectl.test_namespace("herald")?;
    let apps = kubectl.test_namespace("apps")?;
    let t_install = Instant::now();
    let mut release = HelmRelease::install(
        &kubectl,
        "herald",
        install.name(),
        &helm::lab_image_values(),
    )?;
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
        "helm install: controller x2 and speaker x{NODES} Ready (probes passing) in {:.1}s",
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
        assert!(
            body.contains("herald_"),
            "speaker metrics on {}: {body:.200}",
            node.name
        );
    }
    for pod in &controllers {
        let ip = pod
            .ips
            .first()
            .copied()
            .ok_or_else(|| LabError::Invalid("controller pod without IP".into()))?;
        let (code, body) = client_http(&lab, &url(ip, 7472, "/metrics"))?;
        assert_eq!(code, 200, "controller metrics of {}", pod.name);
        assert!(
            body.contains("herald_"),
            "controller metrics of {}",
            pod.name
        );
    }

    // Layer 2, chart defaults: kube-proxy (nftables) carries the traffic.
    for (kind, name, spec) in [
        (
            "IPAddressPool",
            "l2",
            json!({"addresses": [plan::L2_POOL_V4]}),
        ),
        ("L2Advertisement", "l2", json!({"pools": ["l2"]})),
    ] {
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
        "client reached {vip} (layer 2, kube-proxy nftables) {:.1}s after the address was assigned; answered by {} on {}",
        t_reach.elapsed().as_secs_f64(),
        reply.pod,
        reply.node
    );
    assert!(names.contains(&reply.node));
    // Local: the pod sees the client's own address through kube-proxy.
    assert!(
        reply.client.starts_with(&format!("{}:", plan::CLIENT_V4)),
        "Local must keep the client's address, the pod saw {}",
        reply.client
    );

    // healthCheckNodePort: served by kube-proxy on every node, 200 where a local
    // endpoint is ready (here: every node).
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
            body.contains("\"localEndpoints\": 1") || body.contains("\"localEndpoints\":1"),
            "{body}"
        );
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
    kubectl.run(&[
        "-n",
        install.name(),
        "delete",
        "ipaddresspools.herald.dev,l2advertisements.herald.dev",
        "--all",
        "--timeout=60s",
    ])?;
    release.uninstall()?;
    herald::release_pools(&kubectl, install.name());
    let leftover = kubectl.run(&[
        "-n",
        install.name(),
        "get",
        "all,ipaddresspools.herald.dev",
        "-o",
        "name",
    ])?;
    println!(
        "after helm uninstall, left in {}: {:?}",
        install.name(),
        leftover.trim()
    );

    drop(apps);
    drop(install);
    drop(nodes);
    drop(lab);
    Ok(())
}

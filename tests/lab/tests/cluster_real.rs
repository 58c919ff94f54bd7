//! Real nodes: containerd + kubelet + kube-proxy in the lab's node namespaces, the
//! control plane's kube-scheduler placing pods, CNI giving them addresses from the
//! address plan, real readiness probes. No part of a node is played by the harness here.
//!
//! Needs root, `tests/setup.sh` (kubelet, kube-proxy, containerd, runc, CNI plugins,
//! umoci) and the machine-wide lab lock (run under the outer flock, one lab at a time).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_lab::realcluster::{RealCluster, echo_deployment};
use herald_lab::realnode::{self, RealNode, RealNodeOptions};
use herald_lab::topology::RouterSetup;
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Result, plan};
use serde_json::Value;

// Three nodes: the size the issue budgets (up in under 2 minutes; memory reported).
const ECHO_REPLICAS: usize = 3;
const PODS_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// (pod name, node name, pod IPs) of Ready pods labelled app=echo.
fn ready_echo_pods(
    kubectl: &Kubectl,
    namespace: &str,
) -> Result<Vec<(String, String, Vec<IpAddr>)>> {
    let list = kubectl.run(&[
        "-n", namespace, "get", "pods", "-l", "app=echo", "-o", "json",
    ])?;
    let list: Value = serde_json::from_str(&list).map_err(|e| LabError::parse("pod list", e))?;
    let mut ready = Vec::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        let is_ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if !is_ready {
            continue;
        }
        let ips = pod["status"]["podIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["ip"].as_str()?.parse().ok())
            .collect();
        ready.push((
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ips,
        ));
    }
    Ok(ready)
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[test]
fn real_kubelets_register_and_run_a_deployment_on_the_pod_network() -> Result<()> {
    let cp = ControlPlane::ensure()?;
    let kubectl = cp.kubectl()?;
    let cni_before: Vec<String> = cni_netns();
    let RealCluster {
        mut nodes,
        lab,
        images_took,
        bring_up,
        ..
    } = RealCluster::start(
        &cp,
        Lab::builder()
            .nodes(ECHO_REPLICAS)
            .pods_per_node(0)
            .router(RouterSetup::NoFrr),
        RealNodeOptions::default(),
        false,
    )?;
    let rss_kb: u64 = nodes.iter().map(RealNode::agents_rss_kb).sum();
    println!(
        "real nodes: images built in {:.1}s; {} nodes Ready in {:.1}s; containerd+kubelet+kube-proxy RSS {} MiB total",
        images_took.as_secs_f64(),
        nodes.len(),
        bring_up.as_secs_f64(),
        rss_kb / 1024
    );

    let names: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    let ns = kubectl.test_namespace("real-nodes")?;
    ns.apply(&echo_deployment(&names))?;
    let pods = poll_until(
        "the echo Deployment's pods Ready on real nodes",
        PODS_READY_TIMEOUT,
        Duration::from_millis(500),
        || {
            let ready = ready_echo_pods(&kubectl, ns.name())?;
            Ok(if ready.len() == ECHO_REPLICAS {
                Poll::Ready(ready)
            } else {
                let status: Vec<String> = nodes.iter_mut().map(RealNode::status).collect();
                let pods = kubectl
                    .run(&["-n", ns.name(), "get", "pods", "-o", "wide"])
                    .unwrap_or_default();
                let events = kubectl
                    .run(&["-n", ns.name(), "get", "events", "--sort-by=.lastTimestamp"])
                    .unwrap_or_default();
                Poll::Pending(format!(
                    "{} ready; {}\n{pods}\n{}",
                    ready.len(),
                    status.join("; "),
                    tail(&events, 15)
                ))
            })
        },
    )?;

    // Placement comes from the API: one pod per node, addresses from that node's CIDRs,
    // and the pod that answers is the one the API says is there.
    let mut placed: Vec<&str> = pods.iter().map(|(_, node, _)| node.as_str()).collect();
    placed.sort_unstable();
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(placed, expected, "one echo pod per real node");
    for (pod, node_name, ips) in &pods {
        let node = lab
            .nodes()
            .iter()
            .find(|n| &n.name == node_name)
            .ok_or_else(|| LabError::Invalid(format!("pod {pod} on unknown node {node_name}")))?;
        assert_eq!(ips.len(), 2, "pod {pod} has both families: {ips:?}");
        for ip in ips {
            assert!(
                in_cidr(*ip, &node.pod_cidr_v4) || in_cidr(*ip, &node.pod_cidr_v6),
                "pod {pod} address {ip} is outside node {node_name}'s pod CIDRs"
            );
            let reply = lab.wait_client_get(*ip, plan::ECHO_PORT, Duration::from_secs(20))?;
            assert_eq!(&reply.pod, pod);
            assert_eq!(&reply.node, node_name);
        }
    }

    bad_input_is_reported_with_node_and_log(&kubectl, &ns, &names)?;

    // `herald-lab status` lists every real node's agents, running.
    let status = std::process::Command::new(herald_lab::paths::herald_lab_binary()?)
        .arg("status")
        .output()
        .map_err(|e| LabError::io("running herald-lab status", e))?;
    let status = String::from_utf8_lossy(&status.stdout);
    for name in &names {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("node {name}:")))
            .unwrap_or_else(|| panic!("herald-lab status does not list {name}:\n{status}"));
        for agent in ["containerd", "kubelet", "kube-proxy"] {
            assert!(
                line.contains(&format!("{agent} running")),
                "status line of {name}: {line}"
            );
        }
    }

    // Teardown removes containers, mounts, pod network namespaces.
    let node_dirs: Vec<PathBuf> = nodes.iter().map(|n| n.dirs.base.clone()).collect();
    drop(ns);
    for node in &mut nodes {
        node.teardown()?;
    }
    drop(nodes);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for dir in &node_dirs {
        let dir = dir.display().to_string();
        assert!(!mountinfo.contains(&dir), "mounts left under {dir}");
        assert!(!PathBuf::from(&dir).exists(), "{dir} left behind");
    }
    assert_eq!(
        cni_netns(),
        cni_before,
        "pod network namespaces left behind"
    );
    drop(lab);
    Ok(())
}

/// A missing image and a container that crashes: `wait_pods_ready` says which node and
/// what is wrong (a missing image at once), and a crash loop's report carries the last
/// lines of the container's log.
fn bad_input_is_reported_with_node_and_log(
    kubectl: &Kubectl,
    ns: &herald_lab::kube::TestNamespace,
    nodes: &[String],
) -> Result<()> {
    let pod = |name: &str, image: &str, args: &[&str]| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "nodeName": nodes[0],
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                "args": args}]
            }
        })
        .to_string()
    };
    ns.apply(&pod("missing", "localhost/no-such-image:lab", &[]))?;
    let started = std::time::Instant::now();
    let error = realnode::wait_pods_ready(
        kubectl,
        ns.name(),
        "app=missing",
        1,
        Duration::from_secs(60),
    )
    .expect_err("a pod whose image is on no node cannot become Ready");
    let text = error.to_string();
    println!(
        "missing image reported after {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        text.lines().next().unwrap_or_default()
    );
    assert!(text.contains("ErrImageNeverPull"), "{text}");
    assert!(text.contains(&format!("on node {}", nodes[0])), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "a missing image must fail at once, not at the timeout"
    );

    let echo = format!(
        "{}:{}",
        herald_lab::image::ECHO_REPOSITORY,
        herald_lab::image::LAB_TAG
    );
    ns.apply(&pod("crasher", &echo, &["--no-such-flag"]))?;
    let report = poll_until(
        "the crashing pod to be reported in CrashLoopBackOff with its log",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let pod = ns
                .get("pod", "crasher")?
                .ok_or_else(|| LabError::Invalid("pod crasher vanished".into()))?;
            Ok(
                match realnode::pod_problems(&pod)
                    .into_iter()
                    .find(|p| p.reason == "CrashLoopBackOff")
                {
                    Some(problem) => Poll::Ready(problem.report(10)),
                    None => Poll::Pending(pod["status"]["containerStatuses"].to_string()),
                },
            )
        },
    )?;
    println!("crash loop reported:\n{report}");
    assert!(
        report.contains(&format!("on node {}", nodes[0])),
        "{report}"
    );
    assert!(report.contains("last lines of"), "{report}");
    assert!(report.contains("no-such-flag"), "the log's end: {report}");
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn cni_netns() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

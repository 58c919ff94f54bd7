//! What happens to a helm-installed Herald on real nodes when pods and kubelets go away
//! (issue 10, scenarios 6 and 7), in BGP mode with kube-proxy (nftables), the chart's
//! defaults, and a `Local` Service whose echo pods run one per node:
//!
//! 1. a speaker pod deleted comes back (DaemonSet) and changes nothing: the address
//!    stays, the route comes back on both nodes, no request of a steady client is lost;
//! 2. the leader controller pod deleted while Services are being created: every Service
//!    gets an address and none ever changes;
//! 3. a node's kubelet stops (SIGKILL): with the node lifecycle controller running, the
//!    Node goes NotReady, its pods not ready, its `Local` endpoint leaves the
//!    EndpointSlice's ready set, and the node's route is withdrawn at the router; the
//!    times are printed.
//!
//! One cluster for the three (bring-up is the expensive part); the kubelet stop is last
//! because it leaves a node without a kubelet. Needs root, `tests/setup.sh`, the
//! workspace built, and the machine-wide lab lock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_lab::herald;
use herald_lab::kube::{PortSpec, ServiceSpec, TestNamespace};
use herald_lab::realcluster::{
    self, Mode, NodeLifecycleController, PODS_TIMEOUT, RealCluster, under_load,
};
use herald_lab::realnode::{self, RealNodeOptions, node_ready_status};
use herald_lab::topology::RouterSetup;
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Result};

const NODES: usize = 2;
const SERVICE_PORT: u16 = 80;
const SPEAKERS: &str = "app.kubernetes.io/component=speaker";
const CONTROLLERS: &str = "app.kubernetes.io/component=controller";
/// The node lifecycle controller's `--node-monitor-grace-period` (Kubernetes' default
/// is 50 s; shorter keeps the test short, still twice the kubelet's 10 s lease renewal).
const NODE_GRACE: Duration = Duration::from_secs(20);
/// Services created while the leader controller is deleted.
const CHURN_SERVICES: usize = 6;

/// Ingress addresses of every Service in `namespace`, by name.
fn ingress_by_service(kubectl: &Kubectl, namespace: &str) -> Result<BTreeMap<String, Vec<IpAddr>>> {
    Ok(kubectl
        .list("services", Some(namespace), None)?
        .iter()
        .filter_map(|s| {
            let name = s["metadata"]["name"].as_str()?.to_string();
            Some((name, herald::ingress_ips(s)))
        })
        .collect())
}

#[test]
fn pods_come_back_unchanged_and_a_stopped_kubelet_withdraws_its_route() -> Result<()> {
    let cp = ControlPlane::ensure()?;
    let cluster = RealCluster::start(
        &cp,
        Lab::builder()
            .nodes(NODES)
            .pods_per_node(0)
            .router(RouterSetup::StandardFrr)
            // The router learns the address from the speakers only.
            .router_pod_routes(false),
        RealNodeOptions::default(),
        true,
    )?;
    let kubectl = cluster.kubectl.clone();
    let lab = &cluster.lab;
    let names = cluster.node_names();
    println!(
        "{NODES} real nodes Ready in {:.1}s (images {:.1}s)",
        cluster.bring_up.as_secs_f64(),
        cluster.images_took.as_secs_f64()
    );
    let install = kubectl.test_namespace("herald")?;
    let apps = kubectl.test_namespace("apps")?;
    let herald_install = realcluster::install_herald(&kubectl, install.name(), NODES, &[])?;
    println!(
        "helm install: all pods Ready in {:.1}s",
        herald_install.took.as_secs_f64()
    );
    let vip = realcluster::echo_service(&install, &apps, Mode::Bgp, &names, SERVICE_PORT)?;
    let prefix = format!("{vip}/32");
    lab.wait_client_get(vip, SERVICE_PORT, Duration::from_secs(60))?;
    lab.wait_router_route(&prefix, Duration::from_secs(30), |r| {
        r.gateways().len() == NODES
    })?;

    speaker_pod_deleted(&cluster, &install, vip)?;
    controller_deleted_while_services_are_created(&kubectl, &install, &apps, vip)?;
    kubelet_stops(cp, cluster, &install, &apps, vip)
}

/// Scenario 7, speaker: delete the speaker pod of the first node under load.
fn speaker_pod_deleted(cluster: &RealCluster, install: &TestNamespace, vip: IpAddr) -> Result<()> {
    let kubectl = &cluster.kubectl;
    let lab = &cluster.lab;
    let prefix = format!("{vip}/32");
    let node = lab.nodes()[0].name.clone();
    let before = realnode::placed_pods(kubectl, install.name(), SPEAKERS)?;
    let victim = before
        .iter()
        .find(|p| p.node == node)
        .ok_or_else(|| LabError::Invalid(format!("no speaker pod on {node}")))?
        .name
        .clone();
    let other: Vec<String> = before
        .iter()
        .filter(|p| p.node != node)
        .map(|p| p.name.clone())
        .collect();
    let started = Instant::now();
    let (replacement, sent, failed) = under_load(lab, vip, SERVICE_PORT, || {
        kubectl.run(&[
            "-n",
            install.name(),
            "delete",
            "pod",
            &victim,
            "--timeout=60s",
        ])?;
        let pods = poll_until(
            "the DaemonSet to bring the speaker back, Ready",
            PODS_TIMEOUT,
            Duration::from_millis(500),
            || {
                let pods = realnode::placed_pods(kubectl, install.name(), SPEAKERS)?;
                Ok(
                    match pods.iter().find(|p| p.node == node && p.name != victim) {
                        Some(p) if p.ready && pods.len() == NODES => Poll::Ready(p.clone()),
                        _ => Poll::Pending(format!("{pods:?}")),
                    },
                )
            },
        )?;
        // The new speaker announces again: both nodes carry the route.
        lab.wait_router_route(&prefix, Duration::from_secs(60), |r| {
            r.gateways().len() == NODES
        })?;
        Ok(pods)
    })?;
    println!(
        "speaker pod {victim} deleted: {} came back Ready and the route is on both nodes again after {:.1}s; {sent} requests, {} failed",
        replacement.name,
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed while a speaker pod was replaced: {:?}",
        &failed[..failed.len().min(5)]
    );
    // Nothing else changed: the other speakers are the same pods, the address is the same.
    let after = realnode::placed_pods(kubectl, install.name(), SPEAKERS)?;
    for name in &other {
        assert!(
            after.iter().any(|p| &p.name == name),
            "speaker {name} on another node was replaced too: {after:?}"
        );
    }
    Ok(())
}

/// Scenario 7, controller: create Services one after another and delete the leader
/// controller pod after the first two; a watcher records every address each Service
/// ever shows.
fn controller_deleted_while_services_are_created(
    kubectl: &Kubectl,
    install: &TestNamespace,
    apps: &TestNamespace,
    vip: IpAddr,
) -> Result<()> {
    let lease = kubectl
        .get("lease", "herald-controller", Some(install.name()))?
        .ok_or_else(|| LabError::Invalid("no leader Lease herald-controller".into()))?;
    let leader = lease["spec"]["holderIdentity"]
        .as_str()
        .ok_or_else(|| LabError::Invalid(format!("Lease without holder: {lease}")))?
        .to_string();
    let stop = AtomicBool::new(false);
    let seen: std::sync::Mutex<BTreeMap<String, BTreeSet<IpAddr>>> = Default::default();
    let started = Instant::now();
    let deleted_at = std::thread::scope(|scope| -> Result<Duration> {
        let watcher = scope.spawn(|| {
            // Bounded: stops when told, or after 3 minutes.
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(180) {
                if let Ok(now) = ingress_by_service(kubectl, apps.name())
                    && let Ok(mut seen) = seen.lock()
                {
                    for (name, ips) in now {
                        seen.entry(name).or_default().extend(ips);
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let result = (|| -> Result<Duration> {
            let mut deleted_at = Duration::ZERO;
            for i in 0..CHURN_SERVICES {
                if i == 2 {
                    kubectl.run(&[
                        "-n",
                        install.name(),
                        "delete",
                        "pod",
                        &leader,
                        "--wait=false",
                    ])?;
                    deleted_at = started.elapsed();
                }
                apps.apply_service(
                    &ServiceSpec::new(&format!("churn-{i}"), "echo")
                        .load_balancer()
                        .port(PortSpec::tcp("http", SERVICE_PORT)),
                )?;
                std::thread::sleep(Duration::from_millis(500));
            }
            for i in 0..CHURN_SERVICES {
                herald::wait_ingress(
                    kubectl,
                    apps.name(),
                    &format!("churn-{i}"),
                    1,
                    "every Service created during the leader change to get an address",
                    Duration::from_secs(90),
                )?;
            }
            realnode::wait_pods_ready(kubectl, install.name(), CONTROLLERS, 2, PODS_TIMEOUT)?;
            // A few more observations after the new leader settled.
            std::thread::sleep(Duration::from_secs(5));
            Ok(deleted_at)
        })();
        stop.store(true, Ordering::Relaxed);
        watcher
            .join()
            .map_err(|_| LabError::Invalid("the watcher thread panicked".into()))?;
        result
    })?;
    let seen = seen
        .into_inner()
        .map_err(|_| LabError::Invalid("watcher lock poisoned".into()))?;
    let final_ips = ingress_by_service(kubectl, apps.name())?;
    println!(
        "leader controller {leader} deleted at {:.1}s while {CHURN_SERVICES} Services were created; all had addresses {:.1}s after the start: {final_ips:?}",
        deleted_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let mut all = BTreeSet::new();
    for (name, ips) in &seen {
        assert!(
            ips.len() <= 1,
            "Service {name} showed more than one address over time: {ips:?}"
        );
        all.extend(ips.iter().copied());
    }
    assert_eq!(
        all.len(),
        final_ips.values().map(Vec::len).sum::<usize>(),
        "two Services shared an address: {final_ips:?}"
    );
    assert_eq!(
        final_ips.get("echo"),
        Some(&vec![vip]),
        "the echo address moved"
    );
    for i in 0..CHURN_SERVICES {
        apps.kubectl().run(&[
            "-n",
            apps.name(),
            "delete",
            "service",
            &format!("churn-{i}"),
            "--wait=false",
        ])?;
    }
    Ok(())
}

/// Scenario 6: the second node's kubelet is killed; times to NotReady, endpoint not
/// ready, route withdrawn. Consumes the cluster (the node stays without a kubelet).
fn kubelet_stops(
    cp: ControlPlane,
    mut cluster: RealCluster,
    install: &TestNamespace,
    apps: &TestNamespace,
    vip: IpAddr,
) -> Result<()> {
    let kubectl = cluster.kubectl.clone();
    let prefix = format!("{vip}/32");
    let mut lifecycle = NodeLifecycleController::start(&cp, NODE_GRACE)?;
    // It first sees every Node healthy: give it a few monitor periods, then check that
    // it runs and nothing went NotReady on its own.
    std::thread::sleep(Duration::from_secs(5));
    lifecycle.check_running()?;
    let lab_node = cluster.lab.nodes()[1].clone();
    let survivor = cluster.lab.nodes()[0].clone();
    for name in cluster.node_names() {
        let node = kubectl.get("node", &name, None)?;
        assert_eq!(
            node.as_ref().and_then(node_ready_status).as_deref(),
            Some("True"),
            "{name} is not Ready before its kubelet stops"
        );
    }

    let stopped = Instant::now();
    cluster.nodes[1].stop_kubelet()?;
    let not_ready = poll_until(
        &format!("Node {} to go NotReady", lab_node.name),
        NODE_GRACE + Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let node = kubectl.get("node", &lab_node.name, None)?;
            Ok(match node.as_ref().and_then(node_ready_status).as_deref() {
                Some("True") => Poll::Pending("Ready".into()),
                Some(other) => Poll::Ready(other.to_string()),
                None => Poll::Pending("no Ready condition".into()),
            })
        },
    );
    let not_ready = match not_ready {
        Ok(status) => status,
        Err(e) => {
            lifecycle.check_running()?;
            return Err(e);
        }
    };
    let t_not_ready = stopped.elapsed();
    poll_until(
        &format!("the echo endpoint on {} to be not ready", lab_node.name),
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let endpoints = apps.endpoints("echo")?;
            let on_node: Vec<_> = endpoints
                .iter()
                .filter(|e| e.node_name.as_deref() == Some(lab_node.name.as_str()))
                .collect();
            Ok(if on_node.iter().all(|e| !e.ready) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{on_node:?}"))
            })
        },
    )?;
    let t_endpoint = stopped.elapsed();
    let survivor_gw = survivor.lan_v4.to_string();
    let route = cluster
        .lab
        .wait_router_route(&prefix, Duration::from_secs(60), |r| {
            r.gateways() == vec![survivor_gw.clone()]
        })?;
    let t_withdrawn = stopped.elapsed();
    println!(
        "kubelet of {} stopped: Node {not_ready} after {:.1}s, its Local endpoint not ready after {:.1}s, its route withdrawn at the router after {:.1}s (node-monitor-grace-period {}s); route now {route:?}",
        lab_node.name,
        t_not_ready.as_secs_f64(),
        t_endpoint.as_secs_f64(),
        t_withdrawn.as_secs_f64(),
        NODE_GRACE.as_secs()
    );
    // The client still gets answers, from the node that kept its route.
    let reply = cluster
        .lab
        .wait_client_get(vip, SERVICE_PORT, Duration::from_secs(30))?;
    assert_eq!(reply.node, survivor.name);

    // Leave nothing: the Service, then the Herald objects (the controller releases the
    // pool's finalizer), then the release without waiting (the node without a kubelet
    // cannot finish its pods' graceful deletion; the namespaces force-delete them).
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
        "ipaddresspools.herald.dev,bgpadvertisements.herald.dev,bgppeers.herald.dev",
        "--all",
        "--timeout=60s",
    ])?;
    drop(lifecycle);
    drop(cluster);
    Ok(())
}

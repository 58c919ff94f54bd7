//! A real cluster as the real-node tests and the demo set it up: the lab's namespaces,
//! a [`RealNode`] on every lab node, the images they run, the echo Deployment, Herald
//! installed with `helm install` and the objects that make it announce.
//!
//! One place for the set-up that `cluster_real`, `helm_real` and `lifecycle_real` share.
//! Pure: [`echo_deployment`], [`herald_objects`]. I/O: image builds, node start, helm,
//! kubectl, and [`NodeLifecycleController`] (a process).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{LabError, Result};
use crate::helm::{self, HelmRelease};
use crate::herald;
use crate::image::{self, BuiltImage};
use crate::kube::{ControlPlane, Kubectl, PortSpec, ServiceSpec, TestNamespace};
use crate::paths;
use crate::plan;
use crate::realnode::{self, PlacedPod, RealNode, RealNodeOptions};
use crate::topology::{Lab, LabBuilder, http_get_from};

/// How long the chart's pods may take to be Ready.
pub const PODS_TIMEOUT: Duration = Duration::from_secs(150);
/// Our nodes' AS (the router's is [`plan::ROUTER_ASN`]; every node is its neighbor).
pub const NODE_ASN: u32 = 64512;

/// Where the Herald image takes its binaries: `$HERALD_IMAGE_BIN_DIR`, else
/// `target/release` when both binaries are there, else `target/debug`.
pub fn image_bin_dir() -> PathBuf {
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

/// Builds the pause and echo images, and Herald's if `with_herald`.
pub fn build_images(with_herald: bool) -> Result<Vec<BuiltImage>> {
    let dir = paths::lab_dir().join("images");
    let mut images = vec![
        image::build(&image::pause_image(), &dir.join("pause"))?,
        image::build(
            &image::echo_image(&paths::herald_lab_binary()?),
            &dir.join("echo"),
        )?,
    ];
    if with_herald {
        images.push(image::build(
            &image::herald_image(&image_bin_dir()),
            &dir.join("herald"),
        )?);
    }
    Ok(images)
}

/// The echo Deployment: one pod per listed node (only those: other tests' Node objects
/// share the control plane), HTTP readiness probe, non-root, read-only root.
pub fn echo_deployment(nodes: &[String]) -> String {
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

/// How the address reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Layer2,
    Bgp,
}

/// The Herald objects of one mode in `namespace`: a pool (IPv4, the mode's range of the
/// address plan) and its advertisement; for BGP, the router as a peer.
pub fn herald_objects(mode: Mode, namespace: &str) -> Vec<Value> {
    let objects = match mode {
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
    objects
        .into_iter()
        .map(|(kind, name, spec)| herald::object(kind, name, namespace, spec))
        .collect()
}

/// The lab's namespaces with a real node on each lab node. Fields drop in order: the
/// nodes (containers, kubelets) before the namespaces they run in.
#[derive(Debug)]
pub struct RealCluster {
    pub nodes: Vec<RealNode>,
    pub lab: Lab,
    pub kubectl: Kubectl,
    /// Time to build the images.
    pub images_took: Duration,
    /// Time from the first node's start to the last node Ready.
    pub bring_up: Duration,
}

impl RealCluster {
    /// Builds `lab`, the images (Herald's if `with_herald`), and starts a real node on
    /// every lab node; on failure what was started is torn down.
    pub fn start(
        cp: &ControlPlane,
        lab: LabBuilder,
        options: RealNodeOptions,
        with_herald: bool,
    ) -> Result<RealCluster> {
        let kubectl = cp.kubectl()?;
        let lab = lab.build()?;
        let t0 = Instant::now();
        let images = build_images(with_herald)?;
        let images_took = t0.elapsed();
        let (nodes, bring_up) = realnode::start_all(lab.nodes(), options, &images, &kubectl)?;
        Ok(RealCluster {
            nodes,
            lab,
            kubectl,
            images_took,
            bring_up,
        })
    }

    /// The lab nodes' names, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.lab.nodes().iter().map(|n| n.name.clone()).collect()
    }

    /// Resident memory of every node's containerd, kubelet and kube-proxy (kB).
    pub fn agents_rss_kb(&self) -> u64 {
        self.nodes.iter().map(RealNode::agents_rss_kb).sum()
    }
}

/// Herald installed with helm, Ready.
#[derive(Debug)]
pub struct HeraldInstall {
    pub release: HelmRelease,
    pub controllers: Vec<PlacedPod>,
    pub speakers: Vec<PlacedPod>,
    /// From `helm install` to every pod Ready.
    pub took: Duration,
}

/// `helm install herald charts/herald` into `namespace` with the lab's image values plus
/// `extra_values`; waits for the 2 controller replicas and one speaker per node Ready.
pub fn install_herald(
    kubectl: &Kubectl,
    namespace: &str,
    nodes: usize,
    extra_values: &[String],
) -> Result<HeraldInstall> {
    let started = Instant::now();
    let mut values = helm::lab_image_values();
    values.extend(extra_values.iter().cloned());
    let release = HelmRelease::install(kubectl, "herald", namespace, &values)?;
    let controllers = realnode::wait_pods_ready(
        kubectl,
        namespace,
        "app.kubernetes.io/component=controller",
        2,
        PODS_TIMEOUT,
    )?;
    let speakers = realnode::wait_pods_ready(
        kubectl,
        namespace,
        "app.kubernetes.io/component=speaker",
        nodes,
        PODS_TIMEOUT,
    )?;
    Ok(HeraldInstall {
        release,
        controllers,
        speakers,
        took: started.elapsed(),
    })
}

/// Applies the Herald objects of `mode` in `install`, the echo Deployment (one pod per
/// node of `nodes`) in `apps` and, once its pods are Ready, a `Local` LoadBalancer Service
/// `echo` on `port`; returns the address the controller gives it.
pub fn echo_service(
    install: &TestNamespace,
    apps: &TestNamespace,
    mode: Mode,
    nodes: &[String],
    port: u16,
) -> Result<IpAddr> {
    for object in herald_objects(mode, install.name()) {
        install.apply(&object.to_string())?;
    }
    apps.apply(&echo_deployment(nodes))?;
    realnode::wait_pods_ready(
        apps.kubectl(),
        apps.name(),
        "app=echo",
        nodes.len(),
        PODS_TIMEOUT,
    )?;
    apps.apply_service(
        &ServiceSpec::new("echo", "echo")
            .load_balancer()
            .port(PortSpec::tcp("http", port).target(plan::ECHO_PORT))
            .traffic_policy("Local"),
    )?;
    let ips = herald::wait_ingress(
        apps.kubectl(),
        apps.name(),
        "echo",
        1,
        "the helm-installed controller to give the echo Service an address",
        Duration::from_secs(60),
    )?;
    ips.first()
        .copied()
        .ok_or_else(|| LabError::Invalid("the echo Service has no address".into()))
}

/// Requests that failed under [`under_load`]: when (since the load began) and why.
pub type Failures = Vec<(Duration, String)>;

/// Runs `action` while the lab's client sends one HTTP request after another to
/// `vip:port` (every 20 ms, 2 s timeout each, at most 20,000); returns the action's value,
/// the requests sent and the failures. The load stops when the action returns.
pub fn under_load<T>(
    lab: &Lab,
    vip: IpAddr,
    port: u16,
    action: impl FnOnce() -> Result<T>,
) -> Result<(T, u32, Failures)> {
    let client = lab.client().clone();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut sent = 0u32;
            let mut failed = Vec::new();
            let begin = Instant::now();
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                sent += 1;
                let at = begin.elapsed();
                if let Err(e) = http_get_from(&client, vip, port, Duration::from_secs(2)) {
                    failed.push((at, e.to_string()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (sent, failed)
        });
        let result = action();
        stop.store(true, Ordering::Relaxed);
        let (sent, failed) = load
            .join()
            .map_err(|_| LabError::Invalid("the load thread panicked".into()))?;
        Ok((result?, sent, failed))
    })
}

/// A kube-controller-manager running only the node lifecycle controller, against the
/// shared control plane, for as long as this value lives: Nodes whose kubelet stops
/// heartbeating go NotReady and their pods not ready.
///
/// Not part of the shared control plane because the process-mode tests' harness-played
/// Nodes never heartbeat: they would all go NotReady. Only a test whose every Node is a
/// real kubelet starts one. Killed on drop, and with `setpriv --pdeathsig` when the test
/// process dies; `herald-lab down` kills it too (it runs the herald-cp binary).
#[derive(Debug)]
pub struct NodeLifecycleController {
    child: Child,
    log: PathBuf,
}

impl NodeLifecycleController {
    /// Starts it with `grace` as `--node-monitor-grace-period` (how long without a
    /// heartbeat before a Node is marked NotReady/Unknown).
    pub fn start(cp: &ControlPlane, grace: Duration) -> Result<NodeLifecycleController> {
        let binary = ControlPlane::binary()?;
        let log = paths::logs_dir().join("node-lifecycle-controller.log");
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        }
        let out = std::fs::File::create(&log)
            .map_err(|e| LabError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("duplicating the log handle", e))?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&binary)
            .arg("kube-controller-manager")
            .arg(format!("--kubeconfig={}", cp.kubeconfig_path().display()))
            .args([
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                "--controllers=node-lifecycle-controller",
                "--secure-port=0",
                "--profiling=false",
                "--node-monitor-period=1s",
                "--v=1",
            ])
            .arg(format!("--node-monitor-grace-period={}s", grace.as_secs()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .map_err(|e| LabError::io("starting the node lifecycle controller", e))?;
        Ok(NodeLifecycleController { child, log })
    }

    /// Its log file.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Fails (with the log's end) if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let status = match self.child.try_wait() {
            Ok(None) => return Ok(()),
            Ok(Some(status)) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        Err(LabError::Invalid(format!(
            "the node lifecycle controller exited ({status}); {} ends:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )))
    }
}

impl Drop for NodeLifecycleController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

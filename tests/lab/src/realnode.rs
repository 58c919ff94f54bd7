//! Real nodes: a containerd, a kubelet and (optionally) a kube-proxy in a lab node's
//! network namespace, so Deployments and DaemonSets run as real pods.
//!
//! This sits beside the harness-played nodes ([`crate::kube::NodeSpec`]): a test that
//! wants real pods starts a [`RealNode`] on a [`crate::topology::LabNode`] instead of
//! registering a Node object itself. The recipe and its traps are in the project notes
//! ("Real kubelets in network namespaces"): processes enter the node with
//! `nsenter --net` (not `ip netns exec`, which hides the cgroup mounts); the kubelet runs
//! on cgroup v1 with `failCgroupV1: false`, cgroupfs, no QoS cgroups; containerd's CRI
//! plugin has `restrict_oom_score_adj = true` (the sandbox may not lower oom_score_adj)
//! and a local sandbox image; kube-proxy gets `--conntrack-max-per-core 0`
//! (`nf_conntrack_max` is global and read-only in a namespace).
//!
//! Pod network: the CNI `bridge` plugin on the node's existing pod bridge (`pods0`, which
//! already holds the gateway addresses), `host-local` addresses from the node's pod CIDRs
//! of the address plan (198.18.I.0/24, 2001:db8:244:I::/64), `portmap`, `loopback`.
//!
//! Pure: the configuration texts ([`containerd_config`], [`cni_conflist`],
//! [`kubelet_config`]) and [`NodeDirs`]. I/O: [`RealNode::start`] (files, processes,
//! image import) and [`RealNode::teardown`] (processes, containers, mounts, pod network
//! namespaces, cgroups), also run on drop.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd::{self, SHORT};
use crate::error::{LabError, Result};
use crate::image::{self, BuiltImage};
use crate::kube::{ControlPlane, Kubectl};
use crate::netns::{LabProcess, Netns};
use crate::paths;
use crate::plan;
use crate::topology::LabNode;
use crate::wait::{Poll, poll_until, poll_until_ok};

/// How long a node may take from start to Ready.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long containerd may take to answer on its socket.
const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(30);
/// Where pods get addresses from on each node (the rest of the /24 is the harness's).
const POD_RANGE_START: u8 = 100;
const POD_RANGE_END: u8 = 250;

/// kube-proxy's mode on a real node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
}

impl ProxyMode {
    /// The `--proxy-mode` value.
    pub fn flag(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

/// What runs on a real node besides containerd and the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealNodeOptions {
    /// `None`: no kube-proxy (Herald's own forwarding, or nothing).
    pub kube_proxy: Option<ProxyMode>,
}

impl Default for RealNodeOptions {
    fn default() -> Self {
        RealNodeOptions {
            kube_proxy: Some(ProxyMode::Nftables),
        }
    }
}

/// Everything a real node keeps on disk, under `target/lab/nodes/NODE/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirs {
    pub name: String,
    pub base: PathBuf,
}

impl NodeDirs {
    /// The directories of node `name` (pure).
    pub fn new(name: &str) -> NodeDirs {
        NodeDirs {
            name: name.to_string(),
            base: paths::lab_dir().join("nodes").join(name),
        }
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.base.join("containerd")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.base.join("run")
    }
    /// containerd's socket (short enough for `sun_path`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.base.join("containerd.sock")
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.base.join("containerd.toml")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base.join("net.d")
    }
    pub fn cni_data_dir(&self) -> PathBuf {
        self.base.join("cni")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.base.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.base.join("kubelet.yaml")
    }
    pub fn kubelet_kubeconfig(&self) -> PathBuf {
        self.base.join("kubelet.kubeconfig")
    }
    pub fn pod_logs(&self) -> PathBuf {
        self.base.join("pod-logs")
    }
    /// Logs of containerd, kubelet, kube-proxy: outside [`NodeDirs::base`] so that they
    /// outlive the node's teardown (`target/lab/logs/nodes/NODE/`).
    pub fn logs(&self) -> PathBuf {
        paths::logs_dir().join("nodes").join(&self.name)
    }
}

/// containerd's configuration for one node: own root, state and socket; CRI with a local
/// sandbox image, the node's CNI directory, runc with cgroupfs, no oom_score_adj below
/// the sandbox's own.
pub fn containerd_config(dirs: &NodeDirs, sandbox_image: &str) -> String {
    let socket = dirs.containerd_socket();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
        root = dirs.containerd_root().display(),
        state = dirs.containerd_state().display(),
        socket = socket.display(),
        cni_bin = CNI_BIN_DIR,
        cni_conf = dirs.cni_conf_dir().display(),
    )
}

/// Where Debian's containernetworking-plugins puts the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The node's CNI network: bridge (on the node's pod bridge, which already has the
/// gateway addresses) with host-local addresses from both pod CIDRs, then portmap.
pub fn cni_conflist(node: &str, index: usize, dirs: &NodeDirs) -> Result<String> {
    let v4_cidr = plan::pod_cidr_v4(index)?;
    let v6_cidr = plan::pod_cidr_v6(index)?;
    let gw4 = plan::pod_gateway_v4(index)?;
    let gw6 = plan::pod_gateway_v6(index)?;
    let o = gw4.octets();
    let start4 = Ipv4Addr::new(o[0], o[1], o[2], POD_RANGE_START);
    let end4 = Ipv4Addr::new(o[0], o[1], o[2], POD_RANGE_END);
    let s = gw6.segments();
    let start6 = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, u16::from(POD_RANGE_START));
    let end6 = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, u16::from(POD_RANGE_END));
    let conf = json!({
        "cniVersion": "0.4.0",
        // Unique per node: host-local keeps its leases per network name.
        "name": format!("herald-{node}"),
        "plugins": [
            {
                "type": "bridge",
                "bridge": plan::ifname::NODE_POD_BRIDGE,
                "isGateway": true,
                // Pods reach the apiserver (169.254.100.1) through the node's address;
                // inbound connections keep their source (Local traffic policy).
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dirs.cni_data_dir().display().to_string(),
                    "ranges": [
                        [{"subnet": v4_cidr, "rangeStart": start4.to_string(), "rangeEnd": end4.to_string(), "gateway": gw4.to_string()}],
                        [{"subnet": v6_cidr, "rangeStart": start6.to_string(), "rangeEnd": end6.to_string(), "gateway": gw6.to_string()}]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ]
    });
    serde_json::to_string_pretty(&conf).map_err(|e| LabError::Parse {
        what: "CNI conflist".into(),
        detail: e.to_string(),
    })
}

/// The kubelet's configuration file for one node (see the module doc for the traps).
pub fn kubelet_config(dirs: &NodeDirs, node_ip: Ipv4Addr) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid); kubelet 1.36 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: ""
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {pod_logs}
staticPodPath: ""
clusterDomain: cluster.local
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
serializeImagePulls: false
# Nothing is pulled; the lab's disk is shared by every node: no eviction, no image GC.
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
"#,
        socket = dirs.containerd_socket().display(),
        pod_logs = dirs.pod_logs().display(),
    )
}

/// Reads a Node's Ready condition status ("True", "False", "Unknown"), if any. Pure.
pub fn node_ready_status(node: &Value) -> Option<String> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A pod as the API places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPod {
    pub name: String,
    pub node: String,
    pub ips: Vec<std::net::IpAddr>,
    pub ready: bool,
}

impl PlacedPod {
    /// Reads one pod object of the API.
    pub fn from_pod(pod: &Value) -> PlacedPod {
        PlacedPod {
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            node: pod["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ips: pod["status"]["podIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["ip"].as_str()?.parse().ok())
                .collect(),
            ready: pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        }
    }
}

fn pod_list(kubectl: &Kubectl, namespace: &str, selector: &str) -> Result<Vec<Value>> {
    let list = kubectl.run(&["-n", namespace, "get", "pods", "-l", selector, "-o", "json"])?;
    let list: Value = serde_json::from_str(&list).map_err(|e| LabError::parse("pod list", e))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The pods of `namespace` matching label `selector`, with their node, addresses and
/// Ready condition, from the API.
pub fn placed_pods(kubectl: &Kubectl, namespace: &str, selector: &str) -> Result<Vec<PlacedPod>> {
    Ok(pod_list(kubectl, namespace, selector)?
        .iter()
        .map(PlacedPod::from_pod)
        .collect())
}

/// A container that cannot run, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub node: String,
    pub container: String,
    /// The kubelet's waiting reason (`CrashLoopBackOff`, `ErrImageNeverPull`, ...).
    pub reason: String,
    pub message: String,
}

impl PodProblem {
    /// Problems that waiting cannot fix: the image is not on the node (nothing is ever
    /// pulled in the lab) or its name is wrong.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.reason.as_str(),
            "ErrImageNeverPull" | "InvalidImageName" | "ErrImagePull" | "ImagePullBackOff"
        )
    }

    /// Where the kubelet writes this container's logs on a lab node:
    /// `<podLogsDir>/<namespace>_<pod>_<uid>/<container>/` (pure).
    pub fn log_dir(&self) -> PathBuf {
        NodeDirs::new(&self.node)
            .pod_logs()
            .join(format!("{}_{}_{}", self.namespace, self.pod, self.uid))
            .join(&self.container)
    }

    /// One line: which pod, on which node, what is wrong.
    pub fn describe(&self) -> String {
        format!(
            "pod {}/{} on node {}: container {} {}{}",
            self.namespace,
            self.pod,
            self.node,
            self.container,
            self.reason,
            if self.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.message)
            }
        )
    }

    /// [`PodProblem::describe`] plus the last `lines` lines of the container's newest
    /// non-empty log file on the node (read from disk: it works with the kubelet down, too).
    /// A restart that has just begun has an empty file; the attempt before it says why.
    pub fn report(&self, lines: usize) -> String {
        let dir = self.log_dir();
        let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok().map(|m| (e.path(), m)))
                .filter(|(_, m)| m.len() > 0)
                .max_by_key(|(_, m)| m.modified().ok())
                .map(|(path, _)| path)
        });
        match newest.and_then(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t))) {
            Some((path, text)) => format!(
                "{}\n  last lines of {}:\n{}",
                self.describe(),
                path.display(),
                text_tail(&text, lines)
            ),
            None => format!("{}\n  (no log in {})", self.describe(), dir.display()),
        }
    }
}

/// The last `lines` lines of `text`, indented.
fn text_tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reasons a container waits that mean it cannot run as it is.
/// Restarts after a failed exit from which a container counts as crash-looping.
const REPEATED_RESTARTS: i64 = 2;

const BAD_WAITING_REASONS: [&str; 8] = [
    "CrashLoopBackOff",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// The containers (init containers included) of one pod object that wait for a reason
/// in [`BAD_WAITING_REASONS`]. Pure.
pub fn pod_problems(pod: &Value) -> Vec<PodProblem> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|key| pod["status"][*key].as_array().cloned().unwrap_or_default())
        .filter_map(|status| {
            let waiting = &status["state"]["waiting"];
            let (reason, message) = match waiting["reason"].as_str() {
                Some(reason) if BAD_WAITING_REASONS.contains(&reason) => {
                    (reason.to_string(), text(&waiting["message"]))
                }
                // Between two back-offs the container runs again for a moment; one that
                // has failed again and again is crash-looping whatever its state now.
                _ => {
                    let failed = &status["lastState"]["terminated"];
                    let exit_code = failed["exitCode"].as_i64().unwrap_or(0);
                    let restarts = status["restartCount"].as_i64().unwrap_or(0);
                    if exit_code == 0 || restarts < REPEATED_RESTARTS {
                        return None;
                    }
                    (
                        "CrashLoopBackOff".to_string(),
                        format!("restarted {restarts} times, last exit code {exit_code}"),
                    )
                }
            };
            Some(PodProblem {
                namespace: text(&pod["metadata"]["namespace"]),
                pod: text(&pod["metadata"]["name"]),
                uid: text(&pod["metadata"]["uid"]),
                node: text(&pod["spec"]["nodeName"]),
                container: text(&status["name"]),
                reason,
                message,
            })
        })
        .collect()
}

/// Waits until exactly `count` pods match and all are Ready; on timeout the last
/// observation lists the pods, the namespace's latest events, and for every container
/// that cannot run (crash loop, missing image) its node and the last lines of its log.
/// A missing image fails at once (nothing is ever pulled in the lab).
pub fn wait_pods_ready(
    kubectl: &Kubectl,
    namespace: &str,
    selector: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<PlacedPod>> {
    poll_until(
        &format!("{count} Ready pods {selector} in {namespace}"),
        timeout,
        Duration::from_millis(500),
        || {
            let list = pod_list(kubectl, namespace, selector)?;
            let pods: Vec<PlacedPod> = list.iter().map(PlacedPod::from_pod).collect();
            if pods.len() == count && pods.iter().all(|p| p.ready) {
                return Ok(Poll::Ready(pods));
            }
            let problems: Vec<PodProblem> = list.iter().flat_map(pod_problems).collect();
            if let Some(p) = problems.iter().find(|p| p.is_permanent()) {
                return Err(LabError::Invalid(format!(
                    "{} (the image must be built and imported into every node)",
                    p.report(10)
                )));
            }
            let listing = kubectl
                .run(&["-n", namespace, "get", "pods", "-o", "wide"])
                .unwrap_or_default();
            let events = kubectl
                .run(&["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"])
                .unwrap_or_default();
            let events: Vec<&str> = events.lines().collect();
            let reports: Vec<String> = problems.iter().map(|p| p.report(10)).collect();
            Ok(Poll::Pending(format!(
                "{listing}\n{}\n{}",
                events[events.len().saturating_sub(12)..].join("\n"),
                reports.join("\n")
            )))
        },
    )
}

/// A kubelet, containerd and maybe kube-proxy running in a lab node. Torn down on drop.
#[derive(Debug)]
pub struct RealNode {
    pub name: String,
    pub index: usize,
    pub netns: Netns,
    pub dirs: NodeDirs,
    containerd: Option<LabProcess>,
    kubelet: Option<LabProcess>,
    kube_proxy: Option<LabProcess>,
    /// Pod network namespaces (`/run/netns/cni-*`) that existed before this node started.
    cni_netns_before: BTreeSet<String>,
    /// To delete the Node object at teardown.
    kubectl: Kubectl,
    torn_down: bool,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |e| LabError::io(what, e)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

/// `/run/netns/cni-*` names now.
fn cni_namespaces() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        // mountinfo escapes spaces as \040; lab paths have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// The log's last lines, for error messages.
fn log_tail(process: &LabProcess, lines: usize) -> String {
    let log = process.log();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl RealNode {
    /// Starts containerd, imports `images`, starts the kubelet (which registers the Node)
    /// and kube-proxy if asked, and waits until the Node is Ready. On failure, says which
    /// node and shows the last lines of the failing component's log; whatever was started
    /// is torn down.
    pub fn start(
        node: &LabNode,
        options: RealNodeOptions,
        images: &[BuiltImage],
        kubectl: &Kubectl,
    ) -> Result<RealNode> {
        let dirs = NodeDirs::new(&node.name);
        let mut real = RealNode {
            name: node.name.clone(),
            index: node.index,
            netns: node.netns.clone(),
            dirs,
            containerd: None,
            kubelet: None,
            kube_proxy: None,
            cni_netns_before: cni_namespaces(),
            kubectl: kubectl.clone(),
            torn_down: false,
        };
        // A crashed run may have left this node's directory (and mounts) behind.
        real.clean_dirs();
        real.start_inner(node, options, images, kubectl)?;
        Ok(real)
    }

    fn start_inner(
        &mut self,
        node: &LabNode,
        options: RealNodeOptions,
        images: &[BuiltImage],
        kubectl: &Kubectl,
    ) -> Result<()> {
        let dirs = self.dirs.clone();
        for dir in [
            dirs.containerd_root(),
            dirs.containerd_state(),
            dirs.cni_conf_dir(),
            dirs.cni_data_dir(),
            dirs.kubelet_root(),
            dirs.pod_logs(),
            dirs.logs(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let sandbox = format!("{}:{}", image::PAUSE_REPOSITORY, image::LAB_TAG);
        write_file(
            &dirs.containerd_config(),
            &containerd_config(&dirs, &sandbox),
        )?;
        write_file(
            &dirs.cni_conf_dir().join("10-herald.conflist"),
            &cni_conflist(&node.name, node.index, &dirs)?,
        )?;
        write_file(&dirs.kubelet_config(), &kubelet_config(&dirs, node.lan_v4))?;

        // containerd.
        let config = dirs.containerd_config().display().to_string();
        let containerd = LabProcess::spawn_nsenter(
            &self.netns,
            "containerd",
            &["containerd", "--config", &config],
            &dirs.logs(),
        )?;
        self.containerd = Some(containerd);
        let socket = dirs.containerd_socket();
        let ready = poll_until_ok(
            &format!("containerd on {}", self.name),
            CONTAINERD_TIMEOUT,
            Duration::from_millis(100),
            || {
                let out = cmd::run(
                    Command::new("ctr")
                        .arg("--address")
                        .arg(&socket)
                        .args(["version"]),
                    None,
                    SHORT,
                )?;
                Ok(if out.success() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(out.stderr)
                })
            },
        );
        if let Err(e) = ready {
            return Err(self.component_failed("containerd", e));
        }
        for built in images {
            image::import(built, &socket).map_err(|e| {
                LabError::Invalid(format!(
                    "node {}: importing {}: {e}",
                    self.name, built.reference
                ))
            })?;
        }

        // kubelet, with a client certificate of its own (system:node:NAME).
        let cp_dir = ControlPlane::data_dir().display().to_string();
        let kubeconfig = dirs.kubelet_kubeconfig().display().to_string();
        cmd::run_checked(
            Command::new(ControlPlane::binary()?).args([
                "kubeconfig",
                "--data-dir",
                &cp_dir,
                "--user",
                &format!("system:node:{}", self.name),
                "--group",
                "system:nodes",
                "--out",
                &kubeconfig,
            ]),
            None,
            SHORT,
        )?;
        let kubelet_bin = paths::tool("kubelet", "HERALD_KUBELET")?
            .display()
            .to_string();
        let kubelet_config = dirs.kubelet_config().display().to_string();
        let root_dir = dirs.kubelet_root().display().to_string();
        let node_ip = format!("{},{}", node.lan_v4, node.lan_v6);
        let cert_dir = dirs.base.join("kubelet-pki").display().to_string();
        let kubelet = LabProcess::spawn_nsenter(
            &self.netns,
            "kubelet",
            &[
                &kubelet_bin,
                "--config",
                &kubelet_config,
                "--kubeconfig",
                &kubeconfig,
                "--root-dir",
                &root_dir,
                "--cert-dir",
                &cert_dir,
                "--node-ip",
                &node_ip,
                "--hostname-override",
                &self.name,
                "--v",
                "1",
            ],
            &dirs.logs(),
        )?;
        self.kubelet = Some(kubelet);

        if let Some(mode) = options.kube_proxy {
            self.start_kube_proxy(mode)?;
        }
        if let Err(e) = self.wait_ready(kubectl, NODE_READY_TIMEOUT) {
            return Err(self.component_failed("kubelet", e));
        }
        self.remove_not_ready_taint(kubectl)
    }

    /// The kubelet registers its Node with the `node.kubernetes.io/not-ready:NoSchedule`
    /// taint, which the node lifecycle controller removes once the Node is Ready. The
    /// shared control plane does not run that controller by default (the harness-played
    /// Nodes of other tests never heartbeat and would be marked Unknown, their pods not
    /// ready), so the lab removes the taint itself once the kubelet reports Ready: the one
    /// thing a real node's lifecycle still gets played.
    fn remove_not_ready_taint(&self, kubectl: &Kubectl) -> Result<()> {
        let out = kubectl.run_unchecked(
            &[
                "taint",
                "node",
                &self.name,
                "node.kubernetes.io/not-ready:NoSchedule-",
            ],
            None,
        )?;
        if out.success() || out.stderr.contains("not found") {
            Ok(())
        } else {
            Err(LabError::CommandFailed {
                command: format!("kubectl taint node {} not-ready-", self.name),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Starts kube-proxy in `mode` (nftables or iptables).
    pub fn start_kube_proxy(&mut self, mode: ProxyMode) -> Result<()> {
        let bin = paths::tool("kube-proxy", "HERALD_KUBE_PROXY")?
            .display()
            .to_string();
        let kubeconfig = ControlPlane::data_dir()
            .join("kube-proxy.kubeconfig")
            .display()
            .to_string();
        let cluster_cidr = format!("{},{}", plan::POD_SUPERNET_V4, plan::POD_SUPERNET_V6);
        let proxy = LabProcess::spawn_nsenter(
            &self.netns,
            "kube-proxy",
            &[
                &bin,
                "--kubeconfig",
                &kubeconfig,
                "--hostname-override",
                &self.name,
                "--proxy-mode",
                mode.flag(),
                "--cluster-cidr",
                &cluster_cidr,
                // nf_conntrack_max is global and read-only inside a namespace.
                "--conntrack-max-per-core",
                "0",
                "--v",
                "1",
            ],
            &self.dirs.logs(),
        )?;
        self.kube_proxy = Some(proxy);
        Ok(())
    }

    /// Waits until the API shows this Node Ready.
    pub fn wait_ready(&mut self, kubectl: &Kubectl, timeout: Duration) -> Result<()> {
        let name = self.name.clone();
        poll_until(
            &format!("Node {name} Ready"),
            timeout,
            Duration::from_millis(500),
            || {
                if let Some(kubelet) = self.kubelet.as_mut()
                    && let Some(status) = kubelet.poll_exit()
                {
                    return Err(LabError::Invalid(format!("kubelet exited ({status})")));
                }
                let node = kubectl.get("node", &name, None)?;
                let status = node.as_ref().and_then(node_ready_status);
                Ok(match status.as_deref() {
                    Some("True") => Poll::Ready(()),
                    other => Poll::Pending(format!("Ready={other:?}")),
                })
            },
        )
    }

    fn component_failed(&self, component: &str, error: LabError) -> LabError {
        let process = match component {
            "containerd" => self.containerd.as_ref(),
            "kube-proxy" => self.kube_proxy.as_ref(),
            _ => self.kubelet.as_ref(),
        };
        let tail = process.map(|p| log_tail(p, 25)).unwrap_or_default();
        LabError::Invalid(format!(
            "node {}: {component} failed: {error}\nlast lines of {}:\n{tail}",
            self.name,
            process.map_or_else(String::new, |p| p.log_path().display().to_string())
        ))
    }

    /// Stops the kubelet (SIGKILL, as a crashed node would). Its pods keep running.
    pub fn stop_kubelet(&mut self) -> Result<()> {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.kill()?;
        }
        Ok(())
    }

    /// One line per component: running or exited.
    pub fn status(&mut self) -> String {
        let state = |p: &mut Option<LabProcess>| match p {
            None => "-".to_string(),
            Some(p) => match p.poll_exit() {
                None => format!("running (pid {})", p.pid()),
                Some(s) => format!("exited ({s})"),
            },
        };
        format!(
            "{}: containerd {}, kubelet {}, kube-proxy {}",
            self.name,
            state(&mut self.containerd),
            state(&mut self.kubelet),
            state(&mut self.kube_proxy)
        )
    }

    /// Removes everything the node made: kubelet and kube-proxy, every container (their
    /// processes, then the shims), containerd, mounts under the node's directory, the pod
    /// network namespaces it created, the containers' cgroups, and the directory.
    pub fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        for p in [self.kubelet.take(), self.kube_proxy.take()]
            .into_iter()
            .flatten()
        {
            let mut p = p;
            let _ = p.kill();
        }
        // Containers: their ids (for cgroups), then kill the shims' children (each a
        // container's PID 1: the kernel then kills the rest of its PID namespace).
        let ids = self.container_ids();
        let shims = self.shim_pids();
        for shim in &shims {
            for child in children_of(*shim) {
                let _ = crate::netns::signal(child, "KILL");
            }
        }
        for shim in &shims {
            let _ = crate::netns::signal(*shim, "KILL");
        }
        let _ = crate::netns::wait_gone(&shims, Duration::from_secs(10));
        if let Some(mut containerd) = self.containerd.take() {
            let _ = containerd.terminate(Duration::from_secs(5));
        }
        self.clean_dirs();
        // Pod network namespaces this node's containerd made (when the lab holds the
        // machine-wide lock, no other containerd makes any).
        for ns in cni_namespaces().difference(&self.cni_netns_before) {
            let _ = Netns::existing(ns).delete();
        }
        remove_container_cgroups(&ids);
        // The Node object would stay (NotReady) and count as a node of the next lab.
        let _ = self.kubectl.run_unchecked(
            &[
                "delete",
                "node",
                &self.name,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        Ok(())
    }

    fn container_ids(&self) -> Vec<String> {
        let socket = self.dirs.containerd_socket();
        if !socket.exists() {
            return Vec::new();
        }
        cmd::run(
            Command::new("ctr").arg("--address").arg(&socket).args([
                "-n",
                "k8s.io",
                "containers",
                "ls",
                "-q",
            ]),
            None,
            SHORT,
        )
        .map(|o| {
            o.stdout
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
    }

    /// containerd-shim processes of this node's containerd (they run in the node's
    /// network namespace and name its socket... or at least live in its namespace).
    fn shim_pids(&self) -> Vec<u32> {
        self.netns
            .pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("containerd-shim"))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Unmounts everything under the node's directory and removes it.
    fn clean_dirs(&self) {
        for _ in 0..3 {
            let mounts = mounts_under(&self.dirs.base);
            if mounts.is_empty() {
                break;
            }
            for m in mounts {
                let _ = cmd::run(Command::new("umount").arg("-l").arg(&m), None, SHORT);
            }
        }
        if self.dirs.base.exists() {
            let _ = std::fs::remove_dir_all(&self.dirs.base);
        }
    }

    /// Resident memory (kB) of containerd, kubelet and kube-proxy together.
    pub fn agents_rss_kb(&self) -> u64 {
        [&self.containerd, &self.kubelet, &self.kube_proxy]
            .into_iter()
            .flatten()
            .map(|p| rss_kb(p.pid()))
            .sum()
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// VmRSS of a process in kB (0 if unknown).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Direct children of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the (now empty) cgroups runc made for these containers in every hierarchy.
fn remove_container_cgroups(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.filter_map(|e| e.ok()) {
        let root = h.path();
        // runc's default cgroupsPath for a container without a parent is
        // /<containerd namespace>/<id>.
        for id in ids {
            let dir = root.join("k8s.io").join(id);
            if dir.is_dir() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        // The parent too, once no other node's container is left in it.
        let _ = std::fs::remove_dir(root.join("k8s.io"));
    }
}

/// What a crashed run of real nodes can leave that removing the lab's namespaces does
/// not: container processes in pod network namespaces (`/run/netns/cni-*`), those
/// namespaces, mounts and files under `target/lab/nodes/`, empty container cgroups.
/// For `herald-lab down`; returns how many things it removed.
///
/// A pod namespace is touched only if it has processes and every one of them has its root
/// file system in a lab node's containerd (overlay directories under `target/lab/nodes/`):
/// a real cluster's containers on the same machine are never matched.
pub fn sweep_leftovers() -> usize {
    let mut removed = 0;
    let base = paths::lab_dir().join("nodes");
    for ns in cni_namespaces() {
        let netns = Netns::existing(&ns);
        let pids = netns.pids().unwrap_or_default();
        // A container's root is in its own mount namespace (readlink of /proc/PID/root
        // says "/"); its root mount's overlay options name the snapshot directories,
        // which for the lab's containers are under `base`.
        let base_text = base.display().to_string();
        let ours = !pids.is_empty()
            && pids.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
                    m.lines()
                        .any(|l| l.split_whitespace().nth(4) == Some("/") && l.contains(&base_text))
                })
            });
        if !ours {
            continue;
        }
        for pid in &pids {
            let _ = crate::netns::signal(*pid, "KILL");
        }
        let _ = crate::netns::wait_gone(&pids, Duration::from_secs(5));
        if cmd::sh("ip", &["netns", "del", &ns]).is_ok() {
            removed += 1;
        }
    }
    for _ in 0..3 {
        let mounts = mounts_under(&base);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            if cmd::run(Command::new("umount").arg("-l").arg(&m), None, SHORT)
                .is_ok_and(|o| o.success())
            {
                removed += 1;
            }
        }
    }
    let leftover_dirs = std::fs::read_dir(&base).map_or(0, Iterator::count);
    if base.exists() && std::fs::remove_dir_all(&base).is_ok() {
        removed += leftover_dirs;
    }
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.filter_map(|e| e.ok()) {
            let parent = h.path().join("k8s.io");
            // Only empty ones (rmdir fails on a cgroup with processes or children).
            if let Ok(children) = std::fs::read_dir(&parent) {
                for child in children.filter_map(|e| e.ok()) {
                    if child.path().is_dir() && std::fs::remove_dir(child.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
    removed
}

/// The node agents `herald-lab status` reports, in order.
pub const AGENTS: [&str; 3] = ["containerd", "kubelet", "kube-proxy"];

/// Which agent of node `node` a process with these arguments is, if any (pure): a
/// containerd with this node's configuration file, a kubelet or kube-proxy with
/// `--hostname-override NODE`.
pub fn agent_of(args: &[String], node: &str) -> Option<&'static str> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    match program {
        "containerd" => {
            let config = NodeDirs::new(node).containerd_config();
            (after("--config").map(PathBuf::from) == Some(config)).then_some("containerd")
        }
        "kubelet" | "kube-proxy" => (after("--hostname-override").map(String::as_str)
            == Some(node))
        .then_some(if program == "kubelet" {
            "kubelet"
        } else {
            "kube-proxy"
        }),
        _ => None,
    }
}

/// Names of the real nodes that have a directory under `target/lab/nodes/` (started and
/// not torn down, or left by a crash).
pub fn real_node_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(paths::lab_dir().join("nodes"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Node `node`'s agents as running processes: (agent, pid) for each one found.
pub fn running_agents(node: &str) -> Vec<(&'static str, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(&'static str, u32)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            // nsenter runs the agent as its child: the agent's own arguments follow it.
            let start = args
                .iter()
                .position(|a| {
                    Path::new(a)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| AGENTS.contains(&n))
                })
                .unwrap_or(0);
            if start > 0 {
                // The nsenter wrapper itself, not the agent.
                return None;
            }
            agent_of(&args, node).map(|agent| (agent, pid))
        })
        .collect();
    found.sort();
    found
}

/// One block per real node: each agent running (pid) or not, and for one that is not,
/// the last lines of its log (`target/lab/logs/nodes/NODE/AGENT.log`).
pub fn agents_report(node: &str, lines: usize) -> String {
    let running = running_agents(node);
    let logs = NodeDirs::new(node).logs();
    let mut out = format!("node {node}:");
    let mut dead = Vec::new();
    for agent in AGENTS {
        match running.iter().find(|(a, _)| *a == agent) {
            Some((_, pid)) => out.push_str(&format!(" {agent} running (pid {pid});")),
            None => {
                out.push_str(&format!(" {agent} not running;"));
                dead.push(agent);
            }
        }
    }
    for agent in dead {
        let log = logs.join(format!("{agent}.log"));
        if let Ok(text) = std::fs::read_to_string(&log) {
            out.push_str(&format!(
                "\n  last lines of {}:\n{}",
                log.display(),
                text_tail(&text, lines)
            ));
        }
    }
    out
}

/// Starts real nodes on every node of a lab. Stops what it started if one fails.
pub fn start_all(
    nodes: &[LabNode],
    options: RealNodeOptions,
    images: &[BuiltImage],
    kubectl: &Kubectl,
) -> Result<(Vec<RealNode>, Duration)> {
    let started = Instant::now();
    let mut real = Vec::new();
    for node in nodes {
        real.push(RealNode::start(node, options, images, kubectl)?);
    }
    Ok((real, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_config_has_the_traps_and_the_node_paths() {
        let dirs = NodeDirs {
            name: "n1".into(),
            base: PathBuf::from("/x/n1"),
        };
        let c = containerd_config(&dirs, "localhost/pause:lab");
        assert!(c.contains("restrict_oom_score_adj = true"));
        assert!(c.contains(r#"sandbox_image = "localhost/pause:lab""#));
        assert!(c.contains(r#"address = "/x/n1/containerd.sock""#));
        assert!(c.contains(r#"conf_dir = "/x/n1/net.d""#));
        assert!(c.contains(r#"root = "/x/n1/containerd""#));
    }

    #[test]
    fn kubelet_config_allows_cgroup_v1_and_uses_the_node_socket() {
        let dirs = NodeDirs {
            name: "n1".into(),
            base: PathBuf::from("/x/n1"),
        };
        let k = kubelet_config(&dirs, Ipv4Addr::new(192, 0, 2, 11));
        assert!(k.contains("failCgroupV1: false"));
        assert!(k.contains("cgroupsPerQOS: false"));
        assert!(k.contains("address: 192.0.2.11"));
        assert!(k.contains("containerRuntimeEndpoint: unix:///x/n1/containerd.sock"));
    }

    #[test]
    fn cni_conflist_gives_the_node_its_pod_cidrs_of_the_address_plan() {
        let dirs = NodeDirs {
            name: "n2".into(),
            base: PathBuf::from("/x/n2"),
        };
        let text = cni_conflist("n2", 2, &dirs).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let ranges = &v["plugins"][0]["ipam"]["ranges"];
        assert_eq!(ranges[0][0]["subnet"], plan::pod_cidr_v4(2).unwrap());
        assert_eq!(ranges[1][0]["subnet"], plan::pod_cidr_v6(2).unwrap());
        assert_eq!(
            ranges[0][0]["gateway"],
            plan::pod_gateway_v4(2).unwrap().to_string()
        );
        assert_eq!(v["plugins"][0]["bridge"], plan::ifname::NODE_POD_BRIDGE);
        assert_eq!(v["name"], "herald-n2");
    }

    #[test]
    fn agents_are_recognised_by_their_node() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let config = NodeDirs::new("n1")
            .containerd_config()
            .display()
            .to_string();
        assert_eq!(
            agent_of(&args(&["containerd", "--config", &config]), "n1"),
            Some("containerd")
        );
        assert_eq!(
            agent_of(&args(&["containerd", "--config", &config]), "n2"),
            None
        );
        assert_eq!(
            agent_of(
                &args(&[
                    "/x/bin/kubelet",
                    "--config",
                    "k",
                    "--hostname-override",
                    "n1"
                ]),
                "n1"
            ),
            Some("kubelet")
        );
        assert_eq!(
            agent_of(&args(&["/x/kube-proxy", "--hostname-override", "n1"]), "n1"),
            Some("kube-proxy")
        );
        assert_eq!(
            agent_of(&args(&["/x/kubelet", "--hostname-override", "n10"]), "n1"),
            None
        );
        assert_eq!(
            agent_of(&args(&["bash", "--hostname-override", "n1"]), "n1"),
            None
        );
        assert_eq!(agent_of(&[], "n1"), None);
    }

    #[test]
    fn crash_loops_and_missing_images_name_their_node() {
        let pod = json!({
            "metadata": {"name": "herald-speaker-x", "namespace": "hs", "uid": "u1"},
            "spec": {"nodeName": "n2"},
            "status": {"containerStatuses": [
                {"name": "speaker", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}},
                {"name": "ok", "state": {"running": {}}},
                {"name": "starting", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ], "initContainerStatuses": [
                {"name": "init", "state": {"waiting": {"reason": "ErrImageNeverPull"}}}
            ]}
        });
        let problems = pod_problems(&pod);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let init = &problems[0];
        assert_eq!(
            (init.container.as_str(), init.reason.as_str()),
            ("init", "ErrImageNeverPull")
        );
        assert!(init.is_permanent());
        let crash = &problems[1];
        assert_eq!(crash.node, "n2");
        assert!(!crash.is_permanent());
        assert!(crash.describe().contains("on node n2"));
        assert!(crash.describe().contains("CrashLoopBackOff (back-off 10s)"));
        assert!(
            crash
                .log_dir()
                .ends_with("nodes/n2/pod-logs/hs_herald-speaker-x_u1/speaker")
        );
        assert!(pod_problems(&json!({})).is_empty());
    }

    #[test]
    fn a_container_running_again_after_repeated_failed_exits_is_crash_looping() {
        let status = |restarts: i64, exit_code: i64| {
            json!({
                "metadata": {"name": "crasher", "namespace": "t", "uid": "u"},
                "spec": {"nodeName": "n1"},
                "status": {"containerStatuses": [{
                    "name": "main", "restartCount": restarts, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": exit_code}}
                }]}
            })
        };
        let problems = pod_problems(&status(2, 2));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, "CrashLoopBackOff");
        assert!(problems[0].describe().contains("last exit code 2"));
        assert!(
            pod_problems(&status(1, 2)).is_empty(),
            "one failure is not a loop"
        );
        assert!(
            pod_problems(&status(5, 0)).is_empty(),
            "clean exits are not failures"
        );
    }

    #[test]
    fn ready_condition_is_read_from_node_status() {
        let node = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "True"}
        ]}});
        assert_eq!(node_ready_status(&node).as_deref(), Some("True"));
        assert_eq!(node_ready_status(&json!({})), None);
    }
}

//! The real Kubernetes control plane and the objects tests put into it.
//!
//! - [`ControlPlane`]: one shared `herald-cp` (etcd + kube-apiserver +
//!   kube-controller-manager) on 169.254.100.1:6443, started detached on first use and
//!   reused by every test binary; its admin kubeconfig is copied to `target/lab/kubeconfig`.
//! - [`Kubectl`]: kubectl with that kubeconfig, every call bounded in time.
//! - [`TestNamespace`], [`NodeGuard`]: objects deleted when dropped.
//! - [`NodeSpec`], [`PodSpec`], [`ServiceSpec`]: manifests as data. There is no kubelet:
//!   the harness plays it by patching Node and Pod status (Ready, podIPs), so the real
//!   kube-controller-manager writes the EndpointSlices ([`EndpointView`]).
//!
//! I/O is kubectl subprocesses only; manifests are built as `serde_json::Value`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cmd::{self, CmdOutput};
use crate::error::{LabError, Result};
use crate::lock::LockGuard;
use crate::netns;
use crate::paths;
use crate::plan;
use crate::wait::{Poll, poll_until, poll_until_ok};

/// A `bash -c` script that closes every descriptor above 2 it inherited, then execs its
/// arguments. Rust opens its own files close-on-exec; descriptors inherited from outside
/// (e.g. `flock FILE cargo test ...`) are not, and a detached child would keep them.
pub const CLOSE_INHERITED_FDS_THEN_EXEC: &str = r#"for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null; exec "$@""#;

/// The line `herald-cp run` prints once /readyz is ok.
pub const CP_READY_LINE: &str = "herald-cp: ready";
/// How long a cold control-plane start may take.
pub const CP_START_TIMEOUT: Duration = Duration::from_secs(300);
/// Default budget of one kubectl call.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// `target/lab/cp`: PKI, etcd data, the original kubeconfig, the pid file.
    pub fn data_dir() -> PathBuf {
        paths::lab_dir().join("cp")
    }

    /// The control plane's stdout/stderr log.
    pub fn log_path() -> PathBuf {
        paths::logs_dir().join("herald-cp.log")
    }

    /// The `herald-cp` binary.
    pub fn binary() -> Result<PathBuf> {
        paths::tool("herald-cp", "HERALD_CP")
    }

    /// The supervisor's pid, if its pid file names a live process.
    pub fn pid() -> Option<u32> {
        std::fs::read_to_string(Self::data_dir().join("herald-cp.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|pid| netns::is_alive(*pid))
    }

    /// Starts the control plane unless a healthy one is running, and returns a handle.
    /// Concurrent callers (threads or test binaries) are serialized by a lock file; the
    /// first starts it, the others find it healthy.
    ///
    /// With `$HERALD_KUBECONFIG` set, an existing cluster is used instead and nothing is
    /// started (it must answer /readyz).
    pub fn ensure() -> Result<ControlPlane> {
        if let Some(kubeconfig) = std::env::var_os("HERALD_KUBECONFIG") {
            let cp = ControlPlane {
                kubeconfig: PathBuf::from(kubeconfig),
            };
            cp.kubectl()?.readyz()?;
            return Ok(cp);
        }
        let _lock = LockGuard::acquire(
            &paths::lab_dir().join("cp.lock"),
            CP_START_TIMEOUT + Duration::from_secs(60),
        )?;
        let data_kubeconfig = Self::data_dir().join("kubeconfig");
        if Self::pid().is_some() && data_kubeconfig.is_file() {
            let kubectl = Kubectl::new(&data_kubeconfig)?;
            if kubectl.readyz().is_ok() {
                return Self::publish_kubeconfig();
            }
        }
        Self::stop()?;
        Self::start()?;
        Self::publish_kubeconfig()
    }

    /// A handle on an already-running healthy control plane (no start).
    pub fn running() -> Result<ControlPlane> {
        let cp = ControlPlane {
            kubeconfig: paths::kubeconfig_path(),
        };
        cp.kubectl()?.readyz()?;
        Ok(cp)
    }

    /// True if a control plane answers /readyz with the published kubeconfig.
    pub fn is_healthy() -> bool {
        Self::running().is_ok()
    }

    fn start() -> Result<()> {
        let binary = Self::binary()?;
        crate::topology::ensure_cp_bridge()?;
        let endpoint = std::net::SocketAddr::from((plan::CP_ADDRESS, plan::CP_PORT));
        if std::net::TcpStream::connect_timeout(&endpoint, Duration::from_secs(1)).is_ok() {
            return Err(LabError::Conflict(format!(
                "something not started by herald-lab already listens on {endpoint} \
                 (another control plane?); stop it, or use it with HERALD_KUBECONFIG=..."
            )));
        }
        let data_dir = Self::data_dir();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| LabError::io(format!("creating {}", data_dir.display()), e))?;
        let log_path = Self::log_path();
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        }
        // Append, and only look at what this start writes.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io(format!("opening {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating the log handle", e))?;
        let cp_address = plan::CP_ADDRESS.to_string();
        let port = plan::CP_PORT.to_string();
        let data_dir_text = data_dir.to_string_lossy().into_owned();
        // setsid --fork: a new session, reparented to init, so the control plane outlives
        // this process and is shared by the test binaries that follow. Through a shell
        // that first closes every inherited descriptor above stderr: a lock held by
        // whoever ran the tests (the machine-wide `flock` around a lab run) must not be
        // held on by the detached control plane after the run ends.
        let mut command = Command::new("bash");
        command
            .args(["-c", CLOSE_INHERITED_FDS_THEN_EXEC, "herald-cp-launcher"])
            .args(["setsid", "--fork"])
            .arg(&binary)
            .args([
                "run",
                "--data-dir",
                &data_dir_text,
                "--bind-address",
                &cp_address,
                "--secure-port",
                &port,
                "--service-cluster-ip-range",
                plan::SERVICE_CIDR,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let description = cmd::describe(&command);
        let mut launcher = command
            .spawn()
            .map_err(|e| LabError::io(format!("starting `{description}`"), e))?;
        let _ = launcher.wait();

        let started = std::time::Instant::now();
        poll_until(
            "the control plane to print its ready line",
            CP_START_TIMEOUT,
            Duration::from_millis(250),
            || {
                let text = read_from(&log_path, log_start);
                if text.contains(CP_READY_LINE) {
                    return Ok(Poll::Ready(()));
                }
                // Give it a few seconds to write its pid file before judging it dead.
                if started.elapsed() > Duration::from_secs(10)
                    && Self::pid().is_none()
                    && Self::stray_pids(&binary).is_empty()
                {
                    return Err(LabError::Invalid(format!(
                        "herald-cp exited before it was ready; log {} ends:\n{}",
                        log_path.display(),
                        tail(&text, 30)
                    )));
                }
                Ok(Poll::Pending(tail(&text, 3)))
            },
        )
    }

    fn publish_kubeconfig() -> Result<ControlPlane> {
        let from = Self::data_dir().join("kubeconfig");
        let to = paths::kubeconfig_path();
        std::fs::copy(&from, &to).map_err(|e| {
            LabError::io(format!("copying {} to {}", from.display(), to.display()), e)
        })?;
        let cp = ControlPlane { kubeconfig: to };
        cp.kubectl()?.readyz()?;
        Ok(cp)
    }

    /// Stops the control plane (SIGTERM to the supervisor, SIGKILL to anything still
    /// running from the herald-cp binary after 15 s). Returns true if something ran.
    pub fn stop() -> Result<bool> {
        let binary = Self::binary().ok();
        let mut pids: Vec<u32> = Self::pid().into_iter().collect();
        if let Some(binary) = &binary {
            pids.extend(Self::stray_pids(binary));
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            return Ok(false);
        }
        for pid in &pids {
            let _ = netns::signal(*pid, "TERM");
        }
        if netns::wait_gone(&pids, Duration::from_secs(15)).is_err() {
            for pid in &pids {
                let _ = netns::signal(*pid, "KILL");
            }
            netns::wait_gone(&pids, Duration::from_secs(10))?;
        }
        let _ = std::fs::remove_file(Self::data_dir().join("herald-cp.pid"));
        Ok(true)
    }

    /// Processes running the herald-cp binary (the supervisor and the apiserver and
    /// controller-manager it spawns from the same executable).
    fn stray_pids(binary: &Path) -> Vec<u32> {
        let Ok(binary) = binary.canonicalize() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
            })
            .collect()
    }

    /// The admin kubeconfig (`target/lab/kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// kubectl against this control plane.
    pub fn kubectl(&self) -> Result<Kubectl> {
        Kubectl::new(&self.kubeconfig)
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// kubectl with a fixed kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    timeout: Duration,
}

impl Kubectl {
    /// kubectl (from `target/lab/bin`, `$KUBECTL` or `$PATH`) with `kubeconfig`.
    pub fn new(kubeconfig: &Path) -> Result<Kubectl> {
        Ok(Kubectl {
            binary: paths::tool("kubectl", "KUBECTL")?,
            kubeconfig: kubeconfig.to_path_buf(),
            timeout: KUBECTL_TIMEOUT,
        })
    }

    /// The same kubectl with another per-call time budget.
    pub fn with_timeout(mut self, timeout: Duration) -> Kubectl {
        self.timeout = timeout;
        self
    }

    /// The kubectl binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The kubeconfig it uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A `kubectl --kubeconfig ...` command to add arguments to.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Runs kubectl with `args`, returning the output whatever the exit status.
    pub fn run_unchecked(&self, args: &[&str], stdin: Option<&str>) -> Result<CmdOutput> {
        cmd::run(
            self.command().args(args),
            stdin.map(str::as_bytes),
            self.timeout,
        )
    }

    /// Runs kubectl with `args`, failing on a non-zero exit; returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        Ok(cmd::run_checked(self.command().args(args), None, self.timeout)?.stdout)
    }

    /// Runs kubectl with `args` and `stdin`, failing on a non-zero exit; returns stdout.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        Ok(cmd::run_checked(
            self.command().args(args),
            Some(stdin.as_bytes()),
            self.timeout,
        )?
        .stdout)
    }

    /// `kubectl apply -f -` with a YAML or JSON manifest (several YAML documents allowed).
    pub fn apply(&self, manifest: &str) -> Result<String> {
        self.run_with_stdin(&["apply", "-f", "-"], manifest)
    }

    /// `kubectl apply --server-side -f -`, for objects too large for the last-applied annotation.
    pub fn apply_server_side(&self, manifest: &str) -> Result<String> {
        self.run_with_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            manifest,
        )
    }

    /// `kubectl create -f -`.
    pub fn create(&self, manifest: &str) -> Result<String> {
        self.run_with_stdin(&["create", "-f", "-"], manifest)
    }

    /// One object as JSON, or `None` if it does not exist.
    pub fn get(&self, kind: &str, name: &str, namespace: Option<&str>) -> Result<Option<Value>> {
        let mut args = vec!["get", kind, name, "--ignore-not-found", "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let text = self.run(&args)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        parse_json(&text, &format!("kubectl get {kind} {name}")).map(Some)
    }

    /// Every object of `kind` (in `namespace`, matching the label `selector`).
    pub fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut args = vec!["get", kind, "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        if let Some(sel) = selector {
            args.extend(["-l", sel]);
        }
        let list = parse_json(&self.run(&args)?, &format!("kubectl get {kind}"))?;
        Ok(list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Deletes an object without waiting for finalizers; a missing object is fine.
    pub fn delete(&self, kind: &str, name: &str, namespace: Option<&str>) -> Result<()> {
        let mut args = vec!["delete", kind, name, "--ignore-not-found", "--wait=false"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        self.run(&args).map(|_| ())
    }

    /// A JSON merge patch of an object's status subresource (playing the kubelet).
    pub fn patch_status(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch: &Value,
    ) -> Result<()> {
        self.merge_patch(&["--subresource=status"], kind, name, namespace, patch)
    }

    /// A JSON merge patch of an object.
    pub fn patch(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch: &Value,
    ) -> Result<()> {
        self.merge_patch(&[], kind, name, namespace, patch)
    }

    /// `kubectl patch --type=merge` with `extra` flags before the patch.
    fn merge_patch(
        &self,
        extra: &[&str],
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch: &Value,
    ) -> Result<()> {
        let patch = patch.to_string();
        let mut args = vec!["patch", kind, name];
        args.extend(extra);
        args.extend(["--type=merge", "-p", &patch]);
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        self.run(&args).map(|_| ())
    }

    /// Polls `probe` every 250 ms until it is ready, at most `timeout`. kubectl errors
    /// end the wait (use [`poll_until_ok`] directly to tolerate them).
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Kubectl) -> Result<Poll<T>>,
    ) -> Result<T> {
        poll_until(what, timeout, Duration::from_millis(250), || probe(self))
    }

    /// `GET /readyz` succeeds.
    pub fn readyz(&self) -> Result<()> {
        let out = self.run(&["get", "--raw", "/readyz", "--request-timeout=5s"])?;
        if out.trim() == "ok" {
            Ok(())
        } else {
            Err(LabError::parse("/readyz", out))
        }
    }

    /// A fresh Kubernetes namespace for one test, deleted on drop.
    pub fn test_namespace(&self, hint: &str) -> Result<TestNamespace> {
        TestNamespace::create(self, hint)
    }

    /// Creates (or updates) a Node and marks it Ready; deleted when the guard drops.
    pub fn create_node(&self, spec: &NodeSpec) -> Result<NodeGuard> {
        self.apply(&spec.manifest().to_string())?;
        let guard = NodeGuard {
            kubectl: self.clone(),
            name: spec.name.clone(),
            keep: false,
        };
        self.patch_status("node", &spec.name, None, &spec.status(spec.ready))?;
        Ok(guard)
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| LabError::parse(what, e))
}

/// Lowercase letters, digits and dashes, at most `max` characters, no dash at the ends.
pub fn dns_label(text: &str, max: usize) -> String {
    let mut label: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label.truncate(max);
    label.trim_matches('-').to_string()
}

fn random_suffix() -> String {
    // Names::unique mixes time, pid and a counter; reuse its last characters.
    let unique = plan::Names::unique();
    unique.prefix()[2..].to_string()
}

/// A Kubernetes namespace owned by one test. On drop its pods are force-deleted (there
/// is no kubelet to finish their graceful deletion) and the namespace is deleted.
#[derive(Debug)]
pub struct TestNamespace {
    kubectl: Kubectl,
    name: String,
    keep: bool,
}

impl TestNamespace {
    /// Creates `t-HINT-XXXX` and waits (bounded) for its `default` ServiceAccount, which
    /// Pod admission needs.
    pub fn create(kubectl: &Kubectl, hint: &str) -> Result<TestNamespace> {
        let name = format!("t-{}-{}", dns_label(hint, 40), random_suffix());
        Self::create_named(kubectl, &name)
    }

    /// Creates (or adopts) the namespace `name`.
    pub fn create_named(kubectl: &Kubectl, name: &str) -> Result<TestNamespace> {
        kubectl.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"herald.dev/lab": "true"}}})
            .to_string(),
        )?;
        let ns = TestNamespace {
            kubectl: kubectl.clone(),
            name: name.to_string(),
            keep: false,
        };
        kubectl.wait_for(
            &format!("the default ServiceAccount in {name}"),
            Duration::from_secs(60),
            |k| {
                Ok(match k.get("serviceaccount", "default", Some(name))? {
                    Some(_) => Poll::Ready(()),
                    None => Poll::Pending("not created yet".into()),
                })
            },
        )?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kubectl it uses.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// Leaves the namespace in place when dropped; returns its name.
    pub fn keep(mut self) -> String {
        self.keep = true;
        self.name.clone()
    }

    /// `kubectl apply -n NS -f -`.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        self.kubectl
            .run_with_stdin(&["apply", "-n", &self.name, "-f", "-"], manifest)
    }

    /// One object in this namespace.
    pub fn get(&self, kind: &str, name: &str) -> Result<Option<Value>> {
        self.kubectl.get(kind, name, Some(&self.name))
    }

    /// Creates a Pod bound to its node and plays the kubelet: Running, podIPs set, Ready
    /// (unless the spec says otherwise).
    pub fn create_pod(&self, spec: &PodSpec) -> Result<()> {
        self.kubectl
            .create(&spec.manifest(&self.name).to_string())?;
        self.kubectl.patch_status(
            "pod",
            &spec.name,
            Some(&self.name),
            &spec.status(spec.ready),
        )
    }

    /// Sets the Pod's Ready condition (a failing readiness probe, or its recovery).
    pub fn set_pod_ready(&self, spec: &PodSpec, ready: bool) -> Result<()> {
        self.kubectl
            .patch_status("pod", &spec.name, Some(&self.name), &spec.status(ready))
    }

    /// Starts a graceful deletion. With no kubelet to finish it, the Pod stays
    /// Terminating (EndpointSlices mark it `terminating`) until [`Self::delete_pod_now`].
    pub fn begin_pod_termination(&self, name: &str) -> Result<()> {
        self.kubectl
            .run(&["delete", "pod", name, "-n", &self.name, "--wait=false"])
            .map(|_| ())
    }

    /// Deletes the Pod at once (what the kubelet does when a terminating pod has stopped).
    pub fn delete_pod_now(&self, name: &str) -> Result<()> {
        self.kubectl
            .run(&[
                "delete",
                "pod",
                name,
                "-n",
                &self.name,
                "--grace-period=0",
                "--force",
                "--ignore-not-found",
                "--wait=false",
            ])
            .map(|_| ())
    }

    /// Creates or updates a Service.
    pub fn apply_service(&self, spec: &ServiceSpec) -> Result<()> {
        self.apply(&spec.manifest(&self.name).to_string())
            .map(|_| ())
    }

    /// The endpoints of `service` across all its EndpointSlices.
    pub fn endpoints(&self, service: &str) -> Result<Vec<EndpointView>> {
        let slices = self.kubectl.list(
            "endpointslices.discovery.k8s.io",
            Some(&self.name),
            Some(&format!("kubernetes.io/service-name={service}")),
        )?;
        Ok(slices.iter().flat_map(EndpointView::from_slice).collect())
    }

    /// Waits (bounded) until `service`'s endpoints satisfy `condition`; returns them.
    pub fn wait_endpoints(
        &self,
        service: &str,
        timeout: Duration,
        condition: impl Fn(&[EndpointView]) -> bool,
    ) -> Result<Vec<EndpointView>> {
        poll_until_ok(
            &format!("EndpointSlices of {}/{service}", self.name),
            timeout,
            Duration::from_millis(250),
            || {
                let endpoints = self.endpoints(service)?;
                Ok(if condition(&endpoints) {
                    Poll::Ready(endpoints)
                } else {
                    Poll::Pending(format!("{endpoints:?}"))
                })
            },
        )
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let k = self.kubectl.clone().with_timeout(Duration::from_secs(30));
        let _ = k.run(&[
            "delete",
            "pods",
            "--all",
            "-n",
            &self.name,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        let _ = k.delete("namespace", &self.name, None);
    }
}

/// A Node object owned by a test; deleted on drop.
#[derive(Debug)]
pub struct NodeGuard {
    kubectl: Kubectl,
    name: String,
    keep: bool,
}

impl NodeGuard {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the Node in place when dropped.
    pub fn keep(mut self) -> String {
        self.keep = true;
        self.name.clone()
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if !self.keep {
            let k = self.kubectl.clone().with_timeout(Duration::from_secs(30));
            let _ = k.delete("node", &self.name, None);
        }
    }
}

/// Any object owned by a test (a CRD, a cluster role, ...); deleted on drop.
#[derive(Debug)]
pub struct ObjectGuard {
    kubectl: Kubectl,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl ObjectGuard {
    /// Applies `manifest` and returns a guard that deletes `kind/name` on drop.
    pub fn apply(
        kubectl: &Kubectl,
        manifest: &str,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<ObjectGuard> {
        let guard = ObjectGuard {
            kubectl: kubectl.clone(),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        };
        kubectl.apply(manifest)?;
        Ok(guard)
    }
}

impl Drop for ObjectGuard {
    fn drop(&mut self) {
        let k = self.kubectl.clone().with_timeout(Duration::from_secs(30));
        let _ = k.delete(&self.kind, &self.name, self.namespace.as_deref());
    }
}

/// The current time as RFC 3339 UTC (`2026-01-02T03:04:05Z`), for status timestamps.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let rem = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A Node as the kubelet would register it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// InternalIP addresses (first of each family is what Kubernetes reports).
    pub addresses: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub pod_cidrs: Vec<String>,
    pub ready: bool,
}

impl NodeSpec {
    /// A Ready node with the `kubernetes.io/hostname` and `kubernetes.io/os` labels.
    pub fn new(name: &str) -> NodeSpec {
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        NodeSpec {
            name: name.to_string(),
            addresses: Vec::new(),
            labels,
            pod_cidrs: Vec::new(),
            ready: true,
        }
    }

    /// Adds an InternalIP.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.addresses.push(address);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a pod CIDR.
    pub fn pod_cidr(mut self, cidr: &str) -> Self {
        self.pod_cidrs.push(cidr.to_string());
        self
    }

    /// Sets whether the node reports Ready.
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// The Node object (without status).
    pub fn manifest(&self) -> Value {
        let mut spec = json!({});
        if let Some(first) = self.pod_cidrs.first() {
            spec = json!({"podCIDR": first, "podCIDRs": self.pod_cidrs});
        }
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": spec,
        })
    }

    /// The status the kubelet would report.
    pub fn status(&self, ready: bool) -> Value {
        let now = rfc3339_now();
        let mut addresses: Vec<Value> = self
            .addresses
            .iter()
            .map(|a| json!({"type": "InternalIP", "address": a.to_string()}))
            .collect();
        addresses.push(json!({"type": "Hostname", "address": self.name}));
        json!({"status": {
            "addresses": addresses,
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                "message": "set by herald-lab",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        }})
    }
}

/// A container port of a [`PodSpec`] or a port of a [`ServiceSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    /// For a Service: the pod port (defaults to `port`).
    pub target_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

impl PortSpec {
    /// A TCP port.
    pub fn tcp(name: &str, port: u16) -> PortSpec {
        PortSpec {
            name: name.to_string(),
            port,
            target_port: port,
            protocol: "TCP".to_string(),
        }
    }

    /// A UDP port.
    pub fn udp(name: &str, port: u16) -> PortSpec {
        PortSpec {
            protocol: "UDP".to_string(),
            ..PortSpec::tcp(name, port)
        }
    }

    /// Sets the target (pod) port.
    pub fn target(mut self, target_port: u16) -> Self {
        self.target_port = target_port;
        self
    }
}

/// A Pod bound to a node, with the IPs the kubelet would report.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    pub name: String,
    pub node: String,
    /// Pod IPs, at most one per family; the first is `status.podIP`.
    pub ips: Vec<IpAddr>,
    /// The node's IPs (`status.hostIPs`).
    pub host_ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    /// Whether [`TestNamespace::create_pod`] makes it Ready.
    pub ready: bool,
}

impl PodSpec {
    /// A Ready pod called `name` on `node`.
    pub fn new(name: &str, node: &str) -> PodSpec {
        PodSpec {
            name: name.to_string(),
            node: node.to_string(),
            ips: Vec::new(),
            host_ips: Vec::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            ready: true,
        }
    }

    /// Adds a pod IP.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ips.push(ip);
        self
    }

    /// Adds a host IP.
    pub fn host_ip(mut self, ip: IpAddr) -> Self {
        self.host_ips.push(ip);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a container port.
    pub fn port(mut self, port: PortSpec) -> Self {
        self.ports.push(port);
        self
    }

    /// Whether it starts Ready.
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// The Pod object.
    pub fn manifest(&self, namespace: &str) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": p.protocol}))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": namespace, "labels": self.labels},
            "spec": {
                "nodeName": self.node,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "echo", "image": "herald.invalid/echo:lab", "ports": ports}],
            },
        })
    }

    /// The status the kubelet would report, Ready or not.
    pub fn status(&self, ready: bool) -> Value {
        let now = rfc3339_now();
        let flag = if ready { "True" } else { "False" };
        let pod_ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        let host_ips: Vec<Value> = self
            .host_ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        let mut status = json!({
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": "echo",
                "ready": ready,
                "started": true,
                "restartCount": 0,
                "image": "herald.invalid/echo:lab",
                "imageID": "",
                "state": {"running": {"startedAt": now}},
            }],
        });
        if let Some(first) = self.ips.first() {
            status["podIP"] = json!(first.to_string());
            status["podIPs"] = json!(pod_ips);
        }
        if let Some(first) = self.host_ips.first() {
            status["hostIP"] = json!(first.to_string());
            status["hostIPs"] = json!(host_ips);
        }
        json!({ "status": status })
    }
}

/// A Service as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    pub service_type: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `Cluster` or `Local` (LoadBalancer/NodePort only).
    pub external_traffic_policy: Option<String>,
    pub load_balancer_class: Option<String>,
    pub external_ips: Vec<String>,
    /// `SingleStack`, `PreferDualStack`, `RequireDualStack`.
    pub ip_family_policy: Option<String>,
    /// `IPv4` / `IPv6`, in order.
    pub ip_families: Vec<String>,
    /// `allocateLoadBalancerNodePorts` (unset: the API's default, true).
    pub allocate_node_ports: Option<bool>,
}

impl ServiceSpec {
    /// A ClusterIP Service selecting `app=SELECTOR_APP`.
    pub fn new(name: &str, selector_app: &str) -> ServiceSpec {
        let mut selector = BTreeMap::new();
        selector.insert("app".to_string(), selector_app.to_string());
        ServiceSpec {
            name: name.to_string(),
            service_type: "ClusterIP".to_string(),
            selector,
            ports: Vec::new(),
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            external_traffic_policy: None,
            load_balancer_class: None,
            external_ips: Vec::new(),
            ip_family_policy: None,
            ip_families: Vec::new(),
            allocate_node_ports: None,
        }
    }

    /// Makes it `type: LoadBalancer`.
    pub fn load_balancer(mut self) -> Self {
        self.service_type = "LoadBalancer".to_string();
        self
    }

    /// Adds a port.
    pub fn port(mut self, port: PortSpec) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets `externalTrafficPolicy`.
    pub fn traffic_policy(mut self, policy: &str) -> Self {
        self.external_traffic_policy = Some(policy.to_string());
        self
    }

    /// `ipFamilyPolicy: RequireDualStack`, `ipFamilies: [IPv4, IPv6]`.
    pub fn dual_stack(mut self) -> Self {
        self.ip_family_policy = Some("RequireDualStack".into());
        self.ip_families = vec!["IPv4".into(), "IPv6".into()];
        self
    }

    /// `allocateLoadBalancerNodePorts: false`: Herald's forwarding does not use NodePorts,
    /// and the shared cluster's NodePort range (2,768 ports) would run out under the
    /// benchmarks' thousands of Services.
    pub fn without_node_ports(mut self) -> Self {
        self.allocate_node_ports = Some(false);
        self
    }

    /// The Service object.
    pub fn manifest(&self, namespace: &str) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                json!({"name": p.name, "port": p.port, "targetPort": p.target_port,
                       "protocol": p.protocol})
            })
            .collect();
        let mut spec = json!({
            "type": self.service_type,
            "selector": self.selector,
            "ports": ports,
        });
        if let Some(policy) = &self.external_traffic_policy {
            spec["externalTrafficPolicy"] = json!(policy);
        }
        if let Some(class) = &self.load_balancer_class {
            spec["loadBalancerClass"] = json!(class);
        }
        if !self.external_ips.is_empty() {
            spec["externalIPs"] = json!(self.external_ips);
        }
        if let Some(policy) = &self.ip_family_policy {
            spec["ipFamilyPolicy"] = json!(policy);
        }
        if !self.ip_families.is_empty() {
            spec["ipFamilies"] = json!(self.ip_families);
        }
        if let Some(allocate) = self.allocate_node_ports {
            spec["allocateLoadBalancerNodePorts"] = json!(allocate);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": namespace,
                         "labels": self.labels, "annotations": self.annotations},
            "spec": spec,
        })
    }
}

/// One endpoint of an EndpointSlice, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    pub addresses: Vec<String>,
    /// `conditions.ready` (absent means ready, per the API).
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
    /// The Pod behind it (`targetRef.name`).
    pub pod: Option<String>,
}

impl EndpointView {
    /// The endpoints of one EndpointSlice object.
    pub fn from_slice(slice: &Value) -> Vec<EndpointView> {
        slice
            .get("endpoints")
            .and_then(Value::as_array)
            .map(|endpoints| endpoints.iter().map(EndpointView::from_endpoint).collect())
            .unwrap_or_default()
    }

    fn from_endpoint(endpoint: &Value) -> EndpointView {
        let condition = |name: &str, default: bool| {
            endpoint
                .get("conditions")
                .and_then(|c| c.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        let ready = condition("ready", true);
        EndpointView {
            addresses: endpoint
                .get("addresses")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ready,
            serving: condition("serving", ready),
            terminating: condition("terminating", false),
            node_name: endpoint
                .get("nodeName")
                .and_then(Value::as_str)
                .map(str::to_string),
            pod: endpoint
                .get("targetRef")
                .and_then(|t| t.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// A namespaced custom object of `api_version`/`kind` named `name` with `spec`.
pub fn namespaced_object(
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: &str,
    spec: Value,
) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_closes_inherited_descriptors_before_exec() {
        // fd 7 stands for the flock descriptor a lab run inherits.
        let script = format!(
            "exec 7>/dev/null; bash -c '{}' launcher ls /proc/self/fd",
            CLOSE_INHERITED_FDS_THEN_EXEC.replace('\'', "'\\''")
        );
        let out = crate::cmd::run(
            Command::new("bash").args(["-c", &script]),
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.success(), "{}", out.stderr);
        let fds: Vec<&str> = out.stdout.split_whitespace().collect();
        assert!(!fds.contains(&"7"), "fd 7 survived: {fds:?}");
        assert!(fds.contains(&"0") && fds.contains(&"2"), "{fds:?}");
    }

    #[test]
    fn unix_time_is_formatted_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_323_045), "2026-01-02T03:04:05Z");
    }

    #[test]
    fn dns_labels_are_lowercase_alphanumeric_and_dashes() {
        assert_eq!(
            dns_label("EndPoint_Slices test", 63),
            "endpoint-slices-test"
        );
        assert_eq!(dns_label("abc-", 63), "abc");
        assert_eq!(dns_label("abcdef", 3), "abc");
    }

    #[test]
    fn a_ready_pod_status_carries_its_ips_and_ready_conditions() {
        let spec = PodSpec::new("echo-1", "n1")
            .ip("198.18.1.11".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
            .ip("2001:db8:244:1::11"
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let status = &spec.status(true)["status"];
        assert_eq!(status["podIP"], "198.18.1.11");
        assert_eq!(status["podIPs"][1]["ip"], "2001:db8:244:1::11");
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone());
        assert_eq!(ready, Some(json!("True")));
        let not_ready = &spec.status(false)["status"];
        assert_eq!(not_ready["containerStatuses"][0]["ready"], false);
    }

    #[test]
    fn a_pod_manifest_binds_the_pod_to_its_node() {
        let manifest = PodSpec::new("p", "hl1abc-n2")
            .label("app", "echo")
            .port(PortSpec::tcp("http", 8080))
            .manifest("t-x");
        assert_eq!(manifest["spec"]["nodeName"], "hl1abc-n2");
        assert_eq!(manifest["metadata"]["namespace"], "t-x");
        assert_eq!(
            manifest["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
    }

    #[test]
    fn a_load_balancer_service_manifest_has_policy_and_ports() {
        let manifest = ServiceSpec::new("web", "echo")
            .load_balancer()
            .traffic_policy("Local")
            .port(PortSpec::tcp("http", 80).target(8080))
            .manifest("t-x");
        assert_eq!(manifest["spec"]["type"], "LoadBalancer");
        assert_eq!(manifest["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(manifest["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(manifest["spec"]["selector"]["app"], "echo");
        assert!(
            manifest["spec"]
                .get("allocateLoadBalancerNodePorts")
                .is_none()
        );
        assert!(manifest["spec"].get("ipFamilyPolicy").is_none());
    }

    #[test]
    fn a_dual_stack_service_without_node_ports() {
        let manifest = ServiceSpec::new("web", "echo")
            .load_balancer()
            .dual_stack()
            .without_node_ports()
            .manifest("t-x");
        assert_eq!(manifest["spec"]["allocateLoadBalancerNodePorts"], false);
        assert_eq!(manifest["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(manifest["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    }

    #[test]
    fn endpoint_conditions_default_as_the_api_says() {
        let slice = json!({"endpoints": [
            {"addresses": ["198.18.1.11"], "nodeName": "n1",
             "targetRef": {"kind": "Pod", "name": "echo-1"}},
            {"addresses": ["198.18.2.11"],
             "conditions": {"ready": false, "serving": true, "terminating": true}},
        ]});
        let endpoints = EndpointView::from_slice(&slice);
        assert_eq!(endpoints.len(), 2);
        assert!(endpoints[0].ready && endpoints[0].serving && !endpoints[0].terminating);
        assert_eq!(endpoints[0].pod.as_deref(), Some("echo-1"));
        assert!(!endpoints[1].ready && endpoints[1].serving && endpoints[1].terminating);
    }

    #[test]
    fn a_node_status_lists_internal_ips_and_readiness() {
        let spec = NodeSpec::new("n1").address(IpAddr::from([192, 0, 2, 11]));
        let status = &spec.status(false)["status"];
        assert_eq!(status["addresses"][0]["type"], "InternalIP");
        assert_eq!(status["addresses"][0]["address"], "192.0.2.11");
        assert_eq!(status["conditions"][0]["status"], "False");
    }
}

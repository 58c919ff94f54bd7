//! Shared helpers of the controller end-to-end tests and benchmark: the real
//! `herald-controller` binary as a child process against the lab's kube-apiserver, a
//! per-test install namespace (pools, Lease) and apps namespace (Services), and readers of
//! Service status, conditions and Events.
//!
//! What every Herald lab test needs comes from `herald_lab::herald`: the binary
//! (`controller_binary`), the CRDs (`install_crds`), the pool manifests (`object`) and the
//! finalizers a stopped controller leaves on the pools (`release_pools`, on drop).
//!
//! Every test's controller serves its own `loadBalancerClass` (unique per test) so that
//! tests and other test binaries never touch each other's Services; the class filter test
//! is the one exception and says so.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use herald_lab::herald;
use herald_lab::kube::{ServiceSpec, TestNamespace};
use herald_lab::netns::signal;
use herald_lab::wait::{Poll, poll_until, poll_until_ok};
use herald_lab::{ControlPlane, Kubectl, LabError, Result, paths};
use serde_json::{Value, json};

/// Controller tests run one at a time: each starts real processes on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the controller-test lock (a failed test's poisoned lock is taken over).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a Service may take to get its address in these tests.
pub const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of status reads.
pub const POLL: Duration = Duration::from_millis(200);

/// One test's world: an install namespace (pools, Lease) and an apps namespace (Services).
pub struct Lab {
    pub kubectl: Kubectl,
    pub install: TestNamespace,
    pub apps: TestNamespace,
    /// The `loadBalancerClass` this test's controller serves.
    pub class: String,
}

impl Lab {
    pub fn new(hint: &str) -> Result<Lab> {
        let kubectl = ControlPlane::ensure()?.kubectl()?;
        herald::install_crds(&kubectl)?;
        let install = kubectl.test_namespace(&format!("{hint}-sys"))?;
        let apps = kubectl.test_namespace(hint)?;
        poll_until_ok(
            "IPAddressPools to be served",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                kubectl.run(&["get", "ipaddresspools", "-n", install.name()])?;
                Ok(Poll::Ready(()))
            },
        )?;
        let class = format!("lab.herald.dev/{}", install.name());
        Ok(Lab {
            kubectl,
            install,
            apps,
            class,
        })
    }

    /// Applies an IPAddressPool in the install namespace; `extra` is merged into its spec.
    pub fn pool(&self, name: &str, addresses: &[&str], extra: Value) -> Result<()> {
        let mut spec = json!({ "addresses": addresses });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let manifest = herald::object("IPAddressPool", name, self.install.name(), spec);
        self.install.apply(&manifest.to_string()).map(|_| ())
    }

    /// A LoadBalancer Service of this test's class with one TCP port.
    pub fn service(&self, name: &str, port: u16) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, name)
            .load_balancer()
            .port(herald_lab::kube::PortSpec::tcp("p", port));
        spec.load_balancer_class = Some(self.class.clone());
        spec
    }

    /// Creates or updates a Service; `edit` may change the manifest (fields ServiceSpec lacks).
    pub fn apply_service(&self, spec: &ServiceSpec, edit: impl FnOnce(&mut Value)) -> Result<()> {
        let mut manifest = spec.manifest(self.apps.name());
        edit(&mut manifest);
        self.apps.apply(&manifest.to_string()).map(|_| ())
    }

    pub fn get_service(&self, name: &str) -> Result<Value> {
        self.apps
            .get("service", name)?
            .ok_or_else(|| LabError::Invalid(format!("service {name} not found")))
    }

    pub fn delete_service(&self, name: &str) -> Result<()> {
        self.kubectl.delete("service", name, Some(self.apps.name()))
    }

    /// The addresses in the Service's `status.loadBalancer.ingress`.
    pub fn ingress(&self, name: &str) -> Result<Vec<String>> {
        Ok(ingress_of(&self.get_service(name)?))
    }

    /// Waits until the Service lists `count` addresses; returns them.
    pub fn wait_ingress(&self, name: &str, count: usize) -> Result<Vec<String>> {
        poll_until(
            &format!("{} address(es) on Service {name}", count),
            ADDRESS_TIMEOUT,
            POLL,
            || {
                let ips = self.ingress(name)?;
                Ok(if ips.len() == count {
                    Poll::Ready(ips)
                } else {
                    Poll::Pending(format!("ingress {ips:?}"))
                })
            },
        )
    }

    /// Waits until the Service has condition `type_` with `status`; returns (reason, message).
    pub fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
    ) -> Result<(String, String)> {
        poll_until(
            &format!("condition {type_}={status} on Service {name}"),
            ADDRESS_TIMEOUT,
            POLL,
            || {
                let service = self.get_service(name)?;
                Ok(match condition_of(&service, type_) {
                    Some(c) if c["status"] == status => Poll::Ready((
                        c["reason"].as_str().unwrap_or_default().to_owned(),
                        c["message"].as_str().unwrap_or_default().to_owned(),
                    )),
                    other => Poll::Pending(format!("{other:?}")),
                })
            },
        )
    }

    /// Waits for an Event with `reason` about object `name` in `namespace`; returns its message.
    pub fn wait_event(&self, namespace: &str, name: &str, reason: &str) -> Result<String> {
        poll_until(
            &format!("Event {reason} on {namespace}/{name}"),
            ADDRESS_TIMEOUT,
            Duration::from_millis(500),
            || {
                let events = events_about(&self.kubectl, namespace, name)?;
                Ok(match events.iter().find(|(r, _)| r == reason) {
                    Some((_, message)) => Poll::Ready(message.clone()),
                    None => Poll::Pending(format!("{events:?}")),
                })
            },
        )
    }
}

impl Drop for Lab {
    /// Pools a stopped controller left its finalizer on would keep the install namespace
    /// Terminating forever: strip the finalizers before the namespaces go.
    fn drop(&mut self) {
        herald::release_pools(&self.kubectl, self.install.name());
    }
}

/// (reason, message) of every Event about `namespace/name`.
pub fn events_about(
    kubectl: &Kubectl,
    namespace: &str,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let text = kubectl.run(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "json",
    ])?;
    let list: Value = serde_json::from_str(&text).map_err(|e| LabError::parse("events", e))?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// The `ip` of every entry in the Service's `status.loadBalancer.ingress`, as the controller
/// wrote it. Not `herald::ingress_ips`: that parses (and so normalizes, and drops what does
/// not parse), and these tests compare the exact text.
pub fn ingress_of(service: &Value) -> Vec<String> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

pub fn condition_of<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A free TCP port on 127.0.0.1 (for the controller's HTTP endpoint).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| LabError::io("binding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::io("reading a bound port", e))
}

/// A running `herald-controller`, killed when dropped.
pub struct ControllerProcess {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// How a test starts a controller.
pub struct ControllerOptions<'a> {
    pub identity: &'a str,
    pub kubeconfig: PathBuf,
    pub extra: Vec<String>,
}

impl ControllerProcess {
    /// Starts the controller for `lab` (its install namespace and class).
    pub fn start(lab: &Lab, options: ControllerOptions<'_>) -> Result<ControllerProcess> {
        Self::spawn(lab, options, &lab.class, true)
    }

    /// Starts it serving `class`, and class-less Services unless `ignore_classless`.
    pub fn start_with_class(
        lab: &Lab,
        identity: &str,
        class: &str,
        ignore_classless: bool,
    ) -> Result<ControllerProcess> {
        let options = ControllerOptions {
            identity,
            kubeconfig: lab.kubectl.kubeconfig().to_path_buf(),
            extra: Vec::new(),
        };
        Self::spawn(lab, options, class, ignore_classless)
    }

    fn spawn(
        lab: &Lab,
        options: ControllerOptions<'_>,
        class: &str,
        ignore_classless: bool,
    ) -> Result<ControllerProcess> {
        let binary = herald::controller_binary()?;
        let port = free_port()?;
        std::fs::create_dir_all(paths::logs_dir())
            .map_err(|e| LabError::io("creating the logs dir", e))?;
        let log = paths::logs_dir().join(format!(
            "controller-{}-{}.log",
            lab.install.name(),
            options.identity
        ));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("duplicating the log handle", e))?;
        let mut command = Command::new(&binary);
        command
            .arg("--kubeconfig")
            .arg(&options.kubeconfig)
            .args(["--namespace", lab.install.name()])
            .args(["--load-balancer-class", class])
            .args(ignore_classless.then_some("--ignore-classless"))
            .args(["--identity", options.identity])
            .args(["--lease-name", "herald-controller"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(&options.extra)
            .env("RUST_LOG", "info,kube_lease_manager=warn")
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .map_err(|e| LabError::io(format!("starting {}", binary.display()), e))?;
        Ok(ControllerProcess { child, port, log })
    }

    /// Starts it with the lab's admin kubeconfig.
    pub fn start_admin(lab: &Lab, identity: &str) -> Result<ControllerProcess> {
        Self::start(
            lab,
            ControllerOptions {
                identity,
                kubeconfig: lab.kubectl.kubeconfig().to_path_buf(),
                extra: Vec::new(),
            },
        )
    }

    /// One HTTP GET on the controller's endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| LabError::io("connecting to the controller", e))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| LabError::io("writing an HTTP request", e))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| LabError::io("reading an HTTP response", e))?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// Waits until `/readyz` says the leader restored its state.
    pub fn wait_leading(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        poll_until_ok("the controller to lead and be ready", timeout, POLL, || {
            let (code, body) = self.http_get("/readyz")?;
            Ok(if code == 200 && body.contains("leader") {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "{code} {body:?} after {:?}; log {}",
                    started.elapsed(),
                    self.log.display()
                ))
            })
        })
    }

    /// The sum of every series of metric family `family` (0 when there is none).
    pub fn metric(&self, family: &str) -> Result<f64> {
        let (_, body) = self.http_get("/metrics")?;
        Ok(herald::metric_sum(&body, family))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = signal(self.child.id(), "TERM");
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        false
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

//! The real MetalLB as a same-run reference (issue 14): its controller and speakers run as
//! processes in the namespace lab, beside (or instead of) Herald's, against the same control
//! plane, so the benchmarks measure both with the same client and the same code.
//!
//! MetalLB is not in this repository: `tests/reference/metallb.sh` builds its `controller`
//! and `speaker` from the Go module proxy into
//! `${HERALD_CACHE:-$HOME/.cache/herald}/metallb-<version>/` together with the module's own
//! CRDs (`config/crd/bases`) and manifests; [`MetalLb::find`] reads that directory (the
//! `metallb-current` link). Nothing of MetalLB's code or text is copied here: this module only
//! starts the programs with their documented flags and writes their documented objects.
//!
//! How it runs without pods (what its manifests' DaemonSet and Deployment would provide):
//! - the controller runs with `-webhook-mode disabled -disable-cert-rotation` and the lab's
//!   admin kubeconfig (so its RBAC from `metallb-native.yaml` is not needed);
//! - each speaker runs in its node's namespace with `-node-name`, `-pod-name`, memberlist
//!   bound to the node's LAN address and the key file of [`MetalLb::write_secret_key`];
//! - memberlist finds its peers by listing Pods with the speaker labels and joining their
//!   `status.podIP`: [`speaker_pod`] is that Pod object, with the node's address as pod IP;
//! - `/etc/metallb/excludel2.yaml` (a ConfigMap mounted in the manifests) is absent here,
//!   which the speaker treats as "exclude no interface". The manifests' default list only
//!   names container bridges and veths, none of which carry the lab's LAN address.
//!
//! I/O: reading the cache directory, `kubectl apply` of the CRDs, writing the key file.
//! Processes are started by the caller through [`crate::Lab::spawn_in_node`] with
//! [`MetalLb::speaker_argv`] / [`MetalLb::controller_argv`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::kube::{Kubectl, PodSpec};
use crate::paths;
use crate::{LabError, Result};

/// MetalLB's API group and version of the objects the lab writes.
pub const API_VERSION: &str = "metallb.io/v1beta1";
/// The labels the lab's speaker Pods carry and the speakers' memberlist looks for.
pub const SPEAKER_LABELS: &str = "app=metallb,component=speaker";
/// The speakers' metrics port (MetalLB's default 7472 is left to Herald's controller).
pub const SPEAKER_METRICS_PORT: &str = "7572";
/// The speakers' memberlist port: MetalLB's default (7946) is Herald's membership port, and
/// both run on every node in the comparison.
pub const SPEAKER_MEMBERLIST_PORT: &str = "7947";
/// The controller's metrics port.
pub const CONTROLLER_METRICS_PORT: &str = "7571";

/// A built MetalLB: the two binaries and the module's CRDs.
#[derive(Debug, Clone)]
pub struct MetalLb {
    pub dir: PathBuf,
    pub version: String,
}

/// The cache root shared with `tests/setup.sh`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/herald")
}

impl MetalLb {
    /// The build `tests/reference/metallb.sh` left in the cache, if complete.
    pub fn find() -> Result<MetalLb> {
        let dir = cache_root().join("metallb-current");
        let missing = |what: &str| LabError::MissingTool {
            tool: "metallb".into(),
            hint: format!(
                "{what} missing under {}: run `bash tests/reference/metallb.sh`",
                dir.display()
            ),
        };
        for file in ["bin/controller", "bin/speaker", "VERSION"] {
            if !dir.join(file).is_file() {
                return Err(missing(file));
            }
        }
        if !dir.join("crd").is_dir() {
            return Err(missing("crd/"));
        }
        let version = std::fs::read_to_string(dir.join("VERSION"))
            .map_err(|e| LabError::io(format!("reading {}", dir.join("VERSION").display()), e))?
            .trim()
            .to_string();
        Ok(MetalLb { dir, version })
    }

    pub fn controller_binary(&self) -> PathBuf {
        self.dir.join("bin/controller")
    }

    pub fn speaker_binary(&self) -> PathBuf {
        self.dir.join("bin/speaker")
    }

    /// Applies the module's CRDs (server-side: some are too large for the last-applied
    /// annotation) and waits until they are served. They stay: cluster-scoped, harmless.
    pub fn install_crds(&self, kubectl: &Kubectl) -> Result<()> {
        let crds = self.dir.join("crd");
        kubectl.run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &crds.to_string_lossy(),
        ])?;
        kubectl.run(&[
            "wait",
            "--for=condition=Established",
            "crd/ipaddresspools.metallb.io",
            "crd/l2advertisements.metallb.io",
            "crd/bgppeers.metallb.io",
            "crd/bgpadvertisements.metallb.io",
            "--timeout=60s",
        ])?;
        Ok(())
    }

    /// Writes the memberlist key file (`DIR/secretkey`, what the Secret's mount would hold)
    /// under `dir`; returns `dir`.
    pub fn write_secret_key(&self, dir: &Path, key: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let file = dir.join("secretkey");
        std::fs::write(&file, key)
            .map_err(|e| LabError::io(format!("writing {}", file.display()), e))?;
        Ok(dir.to_path_buf())
    }

    /// The controller's command line for install namespace `namespace` and class `class`.
    /// `ml_secret` must exist already: the controller creates a missing one only with an
    /// owner reference to its Deployment, which the lab does not have.
    pub fn controller_argv(&self, namespace: &str, class: &str, ml_secret: &str) -> Vec<String> {
        let kubeconfig = paths::kubeconfig_path();
        vec![
            self.controller_binary().to_string_lossy().into_owned(),
            format!("-kubeconfig={}", kubeconfig.to_string_lossy()),
            format!("-namespace={namespace}"),
            format!("-lb-class={class}"),
            "-webhook-mode=disabled".into(),
            "-disable-cert-rotation".into(),
            format!("-ml-secret-name={ml_secret}"),
            format!("-port={CONTROLLER_METRICS_PORT}"),
        ]
    }

    /// A speaker's command line: node `node` with LAN address `address`, its Pod `pod`.
    pub fn speaker_argv(
        &self,
        namespace: &str,
        class: &str,
        node: &str,
        pod: &str,
        address: IpAddr,
        key_dir: &Path,
    ) -> Vec<String> {
        let kubeconfig = paths::kubeconfig_path();
        vec![
            self.speaker_binary().to_string_lossy().into_owned(),
            format!("-kubeconfig={}", kubeconfig.to_string_lossy()),
            format!("-namespace={namespace}"),
            format!("-lb-class={class}"),
            format!("-node-name={node}"),
            format!("-pod-name={pod}"),
            format!("-ml-bindaddr={address}"),
            format!("-ml-bindport={SPEAKER_MEMBERLIST_PORT}"),
            format!("-ml-labels={SPEAKER_LABELS}"),
            format!("-ml-secret-key-path={}", key_dir.to_string_lossy()),
            format!("-host={address}"),
            format!("-port={SPEAKER_METRICS_PORT}"),
        ]
    }
}

/// The Pod object of node `node`'s speaker: Ready, labelled like the DaemonSet's pods, with
/// the node's address as pod IP (a host-network pod), which memberlist joins.
pub fn speaker_pod(name: &str, node: &str, address: IpAddr) -> PodSpec {
    let mut spec = PodSpec::new(name, node).ip(address).host_ip(address);
    for pair in SPEAKER_LABELS.split(',') {
        if let Some((key, value)) = pair.split_once('=') {
            spec = spec.label(key, value);
        }
    }
    spec
}

/// A MetalLB object (`IPAddressPool`, `L2Advertisement`, ...) named `name` in `namespace`.
pub fn object(kind: &str, name: &str, namespace: &str, spec: Value) -> Value {
    crate::kube::namespaced_object(API_VERSION, kind, name, namespace, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_speaker_pod_carries_the_memberlist_labels_and_the_node_address() {
        let address: IpAddr = "192.0.2.11".parse().expect("address");
        let pod = speaker_pod("metallb-speaker-n1", "lab-n1", address);
        assert_eq!(pod.ips, vec![address]);
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("metallb"));
        assert_eq!(
            pod.labels.get("component").map(String::as_str),
            Some("speaker")
        );
        assert!(pod.ready);
    }

    #[test]
    fn the_speaker_binds_memberlist_to_the_node_address_with_the_key_dir() {
        let metallb = MetalLb {
            dir: "/cache/metallb-v0.15.2".into(),
            version: "v0.15.2".into(),
        };
        let argv = metallb.speaker_argv(
            "ns",
            "lab.herald.dev/x",
            "n1",
            "p1",
            "192.0.2.11".parse().expect("address"),
            Path::new("/keys"),
        );
        assert_eq!(argv[0], "/cache/metallb-v0.15.2/bin/speaker");
        assert!(argv.contains(&"-ml-bindaddr=192.0.2.11".to_string()));
        assert!(argv.contains(&"-ml-secret-key-path=/keys".to_string()));
        assert!(argv.contains(&"-lb-class=lab.herald.dev/x".to_string()));
        assert!(argv.contains(&format!("-ml-labels={SPEAKER_LABELS}")));
    }
}

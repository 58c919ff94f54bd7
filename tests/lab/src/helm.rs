//! `helm install` / `helm uninstall` of Herald's chart, as its users run them.
//!
//! [`HelmRelease`] installs `charts/herald` with the lab's values ([`lab_image_values`]:
//! the locally built image, never pulled; the apiserver's address for clusters where the
//! `kubernetes` Service has no usable endpoint) and uninstalls it when dropped.
//! I/O: the `helm` binary from `tests/setup.sh`, every call bounded in time.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::cmd;
use crate::error::Result;
use crate::image;
use crate::kube::Kubectl;
use crate::paths;
use crate::plan;

/// Budget of one helm call (install/upgrade/uninstall without --wait).
pub const HELM_TIMEOUT: Duration = Duration::from_secs(120);

/// The `--set` values that point the chart at the lab: the image imported into every
/// node (`imagePullPolicy: Never`), and the API server's address. The lab's apiserver
/// listens on the link-local control-plane address, which the `kubernetes` Service cannot
/// carry as an endpoint (link-local endpoints are refused), so the pods are told where
/// it is — the chart's `apiServer.host`, as a cluster without kube-proxy needs too.
pub fn lab_image_values() -> Vec<String> {
    vec![
        format!("image.repository={}", image::HERALD_REPOSITORY),
        format!("image.tag={}", image::LAB_TAG),
        "image.pullPolicy=Never".into(),
        format!("apiServer.host={}", plan::CP_ADDRESS),
        format!("apiServer.port={}", plan::CP_PORT),
    ]
}

/// An installed release; uninstalled when dropped, without waiting and without hooks (the
/// drop is the clean-up after a failure, when the nodes that would run the hook Job may
/// already be gone).
#[derive(Debug)]
pub struct HelmRelease {
    helm: PathBuf,
    kubeconfig: PathBuf,
    pub name: String,
    pub namespace: String,
    uninstalled: bool,
}

impl HelmRelease {
    /// `helm install NAME charts/herald -n NAMESPACE --set ...` (the namespace must
    /// exist). Does not wait for pods.
    pub fn install(
        kubectl: &Kubectl,
        name: &str,
        namespace: &str,
        values: &[String],
    ) -> Result<HelmRelease> {
        let release = HelmRelease {
            helm: paths::tool("helm", "HELM")?,
            kubeconfig: kubectl.kubeconfig().to_path_buf(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            uninstalled: false,
        };
        release.helm_cmd("install", values)?;
        Ok(release)
    }

    /// `helm upgrade NAME charts/herald --reuse-values --set ...`.
    pub fn upgrade(&self, values: &[String]) -> Result<()> {
        self.helm_cmd("upgrade", values)
    }

    fn helm_cmd(&self, verb: &str, values: &[String]) -> Result<()> {
        let mut command = Command::new(&self.helm);
        command
            .arg(verb)
            .arg(&self.name)
            .arg(paths::repo_root().join("charts/herald"))
            .args(["-n", &self.namespace])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig);
        if verb == "upgrade" {
            command.arg("--reuse-values");
        }
        for v in values {
            command.args(["--set", v]);
        }
        cmd::run_checked(&mut command, None, HELM_TIMEOUT).map(|_| ())
    }

    /// `helm uninstall`, as a user runs it: the chart's pre-delete hook Job runs first,
    /// then the release's resources are deleted (waited for).
    ///
    /// When it fails, the release is still removed without hooks (the error is returned):
    /// its cluster-scoped objects (ClusterRoles) would otherwise make every later install of
    /// the same release name in the lab fail.
    pub fn uninstall(&mut self) -> Result<()> {
        self.uninstalled = true;
        let result = cmd::run_checked(
            Command::new(&self.helm)
                .args(["uninstall", &self.name, "-n", &self.namespace, "--wait"])
                .args(["--timeout", "90s"])
                .arg("--kubeconfig")
                .arg(&self.kubeconfig),
            None,
            HELM_TIMEOUT,
        )
        .map(|_| ());
        if result.is_err() {
            let _ = cmd::run(
                Command::new(&self.helm)
                    .args(["uninstall", &self.name, "-n", &self.namespace, "--no-hooks"])
                    .arg("--kubeconfig")
                    .arg(&self.kubeconfig),
                None,
                HELM_TIMEOUT,
            );
        }
        result
    }
}

impl Drop for HelmRelease {
    fn drop(&mut self) {
        if !self.uninstalled {
            let _ = cmd::run(
                Command::new(&self.helm)
                    .args(["uninstall", &self.name, "-n", &self.namespace])
                    .args(["--wait=false", "--no-hooks"])
                    .arg("--kubeconfig")
                    .arg(&self.kubeconfig),
                None,
                HELM_TIMEOUT,
            );
        }
    }
}

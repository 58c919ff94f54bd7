//! The Kubernetes client both binaries use: from `--kubeconfig` when given, otherwise the
//! in-cluster config (or `$KUBECONFIG`, `~/.kube/config`).

use std::path::{Path, PathBuf};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig's context could not be turned into a client config.
    #[error("loading kubeconfig {path}: {source}")]
    Load {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    /// The client itself could not be built (TLS, proxy, ...).
    #[error("building the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
    /// Neither the in-cluster config nor a default kubeconfig was usable.
    #[error("building the Kubernetes client (in-cluster or default kubeconfig): {0}")]
    Default(#[source] kube::Error),
}

/// A client for `kubeconfig`, or the default configuration without one.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.map_err(ClientError::Default);
    };
    let file = Kubeconfig::read_from(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClientError::Load {
            path: path.to_owned(),
            source,
        })?;
    Client::try_from(config).map_err(ClientError::Build)
}

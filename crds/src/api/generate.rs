//! The CustomResourceDefinitions of the Herald API and their YAML files.
//!
//! Owns what `crdgen` writes into `charts/herald/crds/` and what the drift test compares
//! against: the file names and the exact text. Pure: rendering only; the binary writes files.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement};

/// The command that regenerates the committed CRD YAML.
pub const REGENERATE_COMMAND: &str =
    "cargo run -p herald-crds --bin crdgen -- --out charts/herald/crds";

/// Why the CRDs could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// serde_yaml refused the CRD (not expected for generated types).
    #[error("rendering CRD {name} as YAML: {source}")]
    Yaml {
        /// The CRD's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_yaml::Error,
    },
}

/// Every Herald CRD, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        IPAddressPool::crd(),
        L2Advertisement::crd(),
        BGPPeer::crd(),
        BGPAdvertisement::crd(),
        Community::crd(),
    ]
}

/// One rendered CRD file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdFile {
    /// File name inside the output directory: `<plural>.<group>.yaml`.
    pub file_name: String,
    /// The full file text: a header comment and the CRD as YAML.
    pub contents: String,
}

/// Renders one CRD as the text of its file.
pub fn render(crd: &CustomResourceDefinition) -> Result<CrdFile, GenerateError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml = serde_yaml::to_string(crd).map_err(|source| GenerateError::Yaml {
        name: name.clone(),
        source,
    })?;
    Ok(CrdFile {
        file_name: format!("{name}.yaml"),
        contents: format!(
            "# Generated from the Rust types in crds/src/api by crdgen; do not edit.\n\
             # Regenerate with: {REGENERATE_COMMAND}\n{yaml}"
        ),
    })
}

/// Renders every CRD, in the order of [`all_crds`].
pub fn render_all() -> Result<Vec<CrdFile>, GenerateError> {
    all_crds().iter().map(render).collect()
}

//! The CustomResourceDefinitions of the Herald API and their YAML files.
//!
//! Owns what `crdgen` writes into `charts/herald/crds/` and what the drift test compares
//! against: the file names and the exact text. Pure: rendering only; the binary writes files.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::{BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement};

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

/// Every Herald CRD, in a stable order, with descriptions reflowed for `kubectl explain`.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        IPAddressPool::crd(),
        L2Advertisement::crd(),
        BGPPeer::crd(),
        BGPAdvertisement::crd(),
        Community::crd(),
        BFDProfile::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                reflow_schema_descriptions(schema);
            }
        }
    }
    crds
}

/// Joins the hard-wrapped lines of doc comments into paragraphs: `kubectl explain` wraps
/// text itself, and keeping the source's line breaks makes it print ragged half-lines.
/// Blank lines (paragraph breaks) and lines starting a list item (`- `) are kept.
pub fn reflow_description(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut joined = String::new();
            for line in paragraph.lines().map(str::trim) {
                if !joined.is_empty() {
                    joined.push(if line.starts_with("- ") { '\n' } else { ' ' });
                }
                joined.push_str(line);
            }
            joined
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn reflow_schema_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = reflow_description(description);
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        reflow_schema_descriptions(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        reflow_schema_descriptions(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = schema.additional_properties.as_mut() {
        reflow_schema_descriptions(additional);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflow_joins_wrapped_lines_but_keeps_paragraphs_and_list_items() {
        assert_eq!(
            reflow_description("one\ntwo\n\nthree\n- a\n- b"),
            "one two\n\nthree\n- a\n- b"
        );
    }

    #[test]
    fn generated_descriptions_have_no_hard_wrapped_lines() {
        let yaml = serde_json::to_string(&all_crds()).unwrap_or_default();
        assert!(yaml.contains("The pool's addresses: each entry is a CIDR"));
        assert!(!yaml.contains("or an\\ninclusive range"));
    }
}

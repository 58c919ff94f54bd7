//! Helpers shared by the herald-crds integration tests: finding the workspace files, reading
//! sample manifests, and evaluating the CRDs' CEL rules offline with kube-cel.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use herald_crds::api::generate::all_crds;
use serde_json::Value;

/// The workspace root (the directory holding `crds/` and `charts/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The directory of the sample manifests.
pub fn examples_dir() -> PathBuf {
    workspace_root().join("crds/examples")
}

/// The `.yaml` files directly inside `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// A manifest file: its object and the `# key: value` lines of its header comment.
pub struct Manifest {
    pub path: PathBuf,
    pub object: Value,
    pub text: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Self {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let object: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        Manifest {
            path: path.to_path_buf(),
            object,
            text,
        }
    }

    /// The value of a `# key: value` header line.
    pub fn header(&self, key: &str) -> Option<String> {
        let prefix = format!("# {key}: ");
        self.text
            .lines()
            .take_while(|line| line.starts_with('#'))
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The openAPIV3Schema of the Herald CRD for `kind`, as JSON.
pub fn schema_of(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no Herald CRD of kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("schema as JSON")
}

/// The messages of every CEL rule of the CRD that `object` violates (empty: all pass).
pub fn cel_errors(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    match kube_cel::Validator::new().validate(&schema_of(kind), object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().iter().map(|e| e.to_string()).collect(),
    }
}

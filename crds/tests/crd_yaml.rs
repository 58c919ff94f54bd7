//! The CRD YAML committed in charts/herald/crds/ is exactly what the Rust types generate.

mod common;

use std::fs;

use common::{workspace_root, yaml_files};
use herald_crds::api::generate::{REGENERATE_COMMAND, render_all};

#[test]
fn committed_crd_yaml_matches_what_the_types_generate() {
    let dir = workspace_root().join("charts/herald/crds");
    let mut stale = Vec::new();
    for file in render_all().expect("CRDs render") {
        let committed = fs::read_to_string(dir.join(&file.file_name)).unwrap_or_default();
        if committed != file.contents {
            stale.push(file.file_name);
        }
    }
    assert!(
        stale.is_empty(),
        "CRD YAML out of date in charts/herald/crds: {stale:?}; run `{REGENERATE_COMMAND}`"
    );
}

#[test]
fn charts_crd_directory_holds_no_herald_crd_that_the_types_no_longer_define() {
    let generated: Vec<String> = render_all()
        .expect("CRDs render")
        .into_iter()
        .map(|f| f.file_name)
        .collect();
    let leftovers: Vec<String> = yaml_files(&workspace_root().join("charts/herald/crds"))
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".herald.dev.yaml") && !generated.contains(name))
        .collect();
    assert!(leftovers.is_empty(), "stale CRD files: {leftovers:?}");
}

#[test]
fn every_crd_file_is_named_after_the_crd_and_says_how_to_regenerate_it() {
    for file in render_all().expect("CRDs render") {
        let doc: serde_yaml::Value = serde_yaml::from_str(&file.contents).expect("valid YAML");
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(file.file_name, format!("{name}.yaml"));
        assert!(file.contents.contains(REGENERATE_COMMAND));
    }
}

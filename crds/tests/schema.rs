//! The generated CRDs have the shape the apiserver and `kubectl` need: structural schemas,
//! descriptions on every field, the CEL rules, printer columns, short names, subresources.

mod common;

use common::schema_of;
use herald_crds::api::generate::all_crds;
use herald_crds::names;
use serde_json::Value;

const KINDS: [&str; 6] = [
    "IPAddressPool",
    "L2Advertisement",
    "BGPPeer",
    "BGPAdvertisement",
    "Community",
    "BFDProfile",
];

/// Calls `visit(path, node)` on every schema node below `node`.
fn walk(path: &str, node: &Value, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(&format!("{path}.{name}"), child, visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(&format!("{path}[]"), items, visit);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        walk(&format!("{path}{{}}"), additional, visit);
    }
}

#[test]
fn every_crd_is_namespaced_in_the_herald_group_and_version() {
    let crds = all_crds();
    assert_eq!(crds.len(), KINDS.len());
    for crd in crds {
        assert_eq!(crd.spec.group, names::GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, names::VERSION);
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["herald".to_owned()][..])
        );
    }
}

#[test]
fn every_schema_is_structural() {
    for kind in KINDS {
        walk(kind, &schema_of(kind), &mut |path, node| {
            assert!(
                node.get("type").is_some()
                    || node.get("x-kubernetes-int-or-string").is_some()
                    || node.get("x-kubernetes-preserve-unknown-fields").is_some(),
                "{path}: no type"
            );
            for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "uniqueItems", "$schema"] {
                assert!(node.get(forbidden).is_none(), "{path}: has {forbidden}");
            }
        });
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for kind in KINDS {
        walk(kind, &schema_of(kind), &mut |path, node| {
            // Fields are reached through `properties`: the last path step is a name.
            let is_field = path.rsplit('.').next().is_some_and(|last| {
                path.contains('.') && !last.ends_with("[]") && !last.ends_with("{}")
            });
            if is_field {
                assert!(
                    node.get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| !d.trim().is_empty()),
                    "{path}: no description"
                );
            }
        });
    }
}

#[test]
fn pool_entries_carry_the_cidr_and_range_rules() {
    let schema = schema_of("IPAddressPool");
    let addresses = &schema["properties"]["spec"]["properties"]["addresses"];
    assert_eq!(addresses["x-kubernetes-list-type"], "set");
    assert_eq!(addresses["minItems"], 1);
    let rules: Vec<String> = addresses["items"]["x-kubernetes-validations"]
        .as_array()
        .expect("rules on each entry")
        .iter()
        .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Syntax, canonical CIDR, one family, then the order of range ends: one rule for IPv4 and
    // four for IPv6 (one would exceed the apiserver's per-rule cost budget).
    assert_eq!(rules.len(), 8);
    assert!(rules[0].contains("isCIDR(self)") && rules[0].contains("isIP("));
    assert!(rules[1].contains(".masked()"));
    assert!(rules[2].contains(".family()"));
    assert!(rules[3..].iter().all(|r| r.contains(".containsIP(")));
}

#[test]
fn bgp_peer_carries_the_timer_and_asn_rules() {
    let schema = schema_of("BGPPeer");
    let spec = &schema["properties"]["spec"];
    let spec_rules = spec["x-kubernetes-validations"].to_string();
    assert!(spec_rules.contains("keepaliveTime"));
    assert!(spec_rules.contains("\"fieldPath\":\".keepaliveTime\""));
    let properties = &spec["properties"];
    assert!(
        properties["holdTime"]["x-kubernetes-validations"]
            .to_string()
            .contains("duration('3s')")
    );
    for asn in ["myASN", "peerASN"] {
        assert_eq!(properties[asn]["minimum"].as_f64(), Some(1.0), "{asn}");
        assert_eq!(
            properties[asn]["maximum"].as_f64(),
            Some(4_294_967_295.0),
            "{asn}"
        );
    }
    assert_eq!(properties["peerPort"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(properties["peerPort"]["maximum"].as_f64(), Some(65535.0));
}

#[test]
fn aggregation_lengths_are_bounded_by_their_family() {
    let schema = schema_of("BGPAdvertisement");
    let properties = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        properties["aggregationLength"]["maximum"].as_f64(),
        Some(32.0)
    );
    assert_eq!(
        properties["aggregationLength"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        properties["aggregationLengthV6"]["maximum"].as_f64(),
        Some(128.0)
    );
}

#[test]
fn lists_that_rules_walk_are_bounded_so_the_apiserver_can_estimate_their_cost() {
    let pool = schema_of("IPAddressPool");
    assert!(pool["properties"]["spec"]["properties"]["addresses"]["maxItems"].is_u64());
    assert!(pool["properties"]["spec"]["properties"]["addresses"]["items"]["maxLength"].is_u64());
    let adv = schema_of("BGPAdvertisement");
    let communities = &adv["properties"]["spec"]["properties"]["communities"];
    assert!(communities["maxItems"].is_u64() && communities["items"]["maxLength"].is_u64());
}

#[test]
fn community_aliases_and_status_lists_merge_by_key() {
    let community = schema_of("Community");
    let aliases = &community["properties"]["spec"]["properties"]["communities"];
    assert_eq!(aliases["x-kubernetes-list-type"], "map");
    assert_eq!(
        aliases["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    let pool = schema_of("IPAddressPool");
    let conditions = &pool["properties"]["status"]["properties"]["conditions"];
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let peer = schema_of("BGPPeer");
    let sessions = &peer["properties"]["status"]["properties"]["sessions"];
    assert_eq!(
        sessions["x-kubernetes-list-map-keys"],
        serde_json::json!(["node"])
    );
}

#[test]
fn pools_list_addresses_assignment_and_age_in_kubectl_get() {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "IPAddressPool")
        .expect("pool CRD");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["ipp".to_owned()][..])
    );
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<(String, String)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    for (name, path) in [
        ("Addresses", ".spec.addresses"),
        ("Auto Assign", ".spec.autoAssign"),
        ("Assigned IPv4", ".status.assignedIPv4"),
        ("Available IPv4", ".status.availableIPv4"),
        ("Assigned IPv6", ".status.assignedIPv6"),
        ("Available IPv6", ".status.availableIPv6"),
        ("Age", ".metadata.creationTimestamp"),
    ] {
        assert!(
            columns.contains(&(name.to_owned(), path.to_owned())),
            "column {name} missing: {columns:?}"
        );
    }
}

#[test]
fn every_kind_has_an_age_column_and_the_peer_has_a_status_subresource() {
    for crd in all_crds() {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .additional_printer_columns
                .iter()
                .flatten()
                .any(|c| c.name == "Age"),
            "{}",
            crd.spec.names.kind
        );
        let has_status = version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some();
        let expects_status = matches!(crd.spec.names.kind.as_str(), "IPAddressPool" | "BGPPeer");
        assert_eq!(has_status, expects_status, "{}", crd.spec.names.kind);
    }
}

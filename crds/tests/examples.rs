//! The sample manifests in crds/examples/ parse into the Rust types, survive a round trip
//! unchanged, pass the CRDs' CEL rules, and get the documented defaults.

mod common;

use common::{Manifest, cel_errors, examples_dir, schema_of, yaml_files};
use herald_crds::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
    LinkBandwidthMode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserializes `object` as `T`, serializes it back, and checks the typed values agree and no
/// field of the manifest was dropped.
fn round_trip<T>(manifest: &Manifest) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let typed: T = serde_json::from_value(manifest.object.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.name()));
    let json = serde_json::to_value(&typed).expect("serializes");
    let again: T = serde_json::from_value(json.clone()).expect("deserializes again");
    assert_eq!(typed, again, "{}", manifest.name());
    assert_keys_kept(&manifest.object["spec"], &json["spec"], &manifest.name());
    typed
}

/// Every key present in `original` is present (recursively) in `serialized`.
fn assert_keys_kept(original: &Value, serialized: &Value, context: &str) {
    match (original, serialized) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let Some(other) = b.get(key) else {
                    panic!("{context}: field {key} lost in the round trip");
                };
                assert_keys_kept(value, other, &format!("{context}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{context}: list length changed");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_keys_kept(x, y, &format!("{context}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{context}: value changed"),
    }
}

fn samples() -> Vec<Manifest> {
    yaml_files(&examples_dir())
        .iter()
        .map(|p| Manifest::load(p))
        .collect()
}

fn sample(file: &str) -> Manifest {
    Manifest::load(&examples_dir().join(file))
}

#[test]
fn there_is_a_sample_of_every_kind() {
    let kinds: Vec<String> = samples().iter().map(|m| m.kind().to_owned()).collect();
    for kind in [
        "IPAddressPool",
        "L2Advertisement",
        "BGPPeer",
        "BGPAdvertisement",
        "Community",
        "BFDProfile",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no sample of {kind}");
    }
}

#[test]
fn every_sample_round_trips_through_its_rust_type_without_losing_a_field() {
    for manifest in samples() {
        match manifest.kind() {
            "IPAddressPool" => {
                let _: IPAddressPool = round_trip(&manifest);
            }
            "L2Advertisement" => {
                let _: L2Advertisement = round_trip(&manifest);
            }
            "BGPPeer" => {
                let _: BGPPeer = round_trip(&manifest);
            }
            "BGPAdvertisement" => {
                let _: BGPAdvertisement = round_trip(&manifest);
            }
            "Community" => {
                let _: Community = round_trip(&manifest);
            }
            "BFDProfile" => {
                let _: BFDProfile = round_trip(&manifest);
            }
            other => panic!("{}: unexpected kind {other}", manifest.name()),
        }
    }
}

#[test]
fn every_sample_passes_the_cel_rules_of_its_crd() {
    for manifest in samples() {
        assert_eq!(
            cel_errors(&manifest.object),
            Vec::<String>::new(),
            "{}",
            manifest.name()
        );
    }
}

#[test]
fn a_pool_without_auto_assign_assigns_automatically_and_avoids_nothing() {
    let pool = round_trip::<IPAddressPool>(&sample("ipaddresspool-l2.yaml"));
    assert!(pool.spec.auto_assign);
    assert!(!pool.spec.avoid_buggy_ips);
    assert!(!pool.spec.allow_external_ips);
    assert_eq!(pool.spec.service_allocation, None);
    assert_eq!(
        pool.spec.addresses,
        vec!["192.0.2.128/25", "2001:db8:1::100/120"]
    );
}

#[test]
fn pool_flags_and_service_allocation_are_read_from_the_manifest() {
    let reserved = round_trip::<IPAddressPool>(&sample("ipaddresspool-external.yaml"));
    assert!(!reserved.spec.auto_assign);
    assert!(reserved.spec.allow_external_ips);
    let bgp = round_trip::<IPAddressPool>(&sample("ipaddresspool-bgp.yaml"));
    assert!(bgp.spec.avoid_buggy_ips);
    let allocation = bgp.spec.service_allocation.expect("serviceAllocation");
    assert_eq!(allocation.priority, Some(10));
    assert_eq!(allocation.namespaces, vec!["default", "web"]);
    assert_eq!(allocation.service_selectors.len(), 1);
}

#[test]
fn a_peer_with_only_the_required_fields_gets_the_bgp_defaults() {
    let peer = round_trip::<BGPPeer>(&sample("bgppeer-ipv6.yaml"));
    assert_eq!(peer.spec.peer_port, 179);
    assert_eq!(
        peer.spec.hold_time(),
        Ok(std::time::Duration::from_secs(90))
    );
    assert_eq!(peer.spec.keepalive_time(), Ok(None));
    assert_eq!(
        peer.spec.connect_time(),
        Ok(std::time::Duration::from_secs(10))
    );
    assert!(!peer.spec.ebgp_multi_hop);
    assert!(!peer.spec.enable_graceful_restart);
    assert!(peer.spec.is_ebgp());
}

#[test]
fn peer_timers_and_password_secret_are_read_from_the_manifest() {
    let peer = round_trip::<BGPPeer>(&sample("bgppeer.yaml"));
    assert_eq!(peer.spec.hold_time(), Ok(std::time::Duration::from_secs(9)));
    assert_eq!(
        peer.spec.keepalive_time(),
        Ok(Some(std::time::Duration::from_secs(3)))
    );
    assert_eq!(
        peer.spec.connect_time(),
        Ok(std::time::Duration::from_secs(5))
    );
    let secret = peer.spec.password_secret.expect("passwordSecret");
    assert_eq!(secret.name, "router-bgp");
    assert_eq!(secret.key, "password", "key defaults to `password`");
    assert!(peer.spec.enable_graceful_restart);
}

#[test]
fn an_advertisement_announces_host_routes_unless_told_to_aggregate() {
    let adv = round_trip::<BGPAdvertisement>(&sample("bgpadvertisement.yaml"));
    assert_eq!(adv.spec.aggregation_length, 32);
    assert_eq!(adv.spec.aggregation_length_v6, 128);
    assert_eq!(adv.spec.local_pref, None);
    assert_eq!(
        adv.spec.link_bandwidth.map(|l| l.mode),
        Some(LinkBandwidthMode::LocalEndpoints)
    );
    assert_eq!(adv.spec.peers, vec!["router", "router-v6"]);
}

#[test]
fn l2_and_community_samples_keep_their_lists() {
    let l2 = round_trip::<L2Advertisement>(&sample("l2advertisement.yaml"));
    assert_eq!(l2.spec.pools, vec!["l2-pool"]);
    assert_eq!(l2.spec.node_selectors.len(), 1);
    assert!(l2.spec.interfaces.is_empty());
    let community = round_trip::<Community>(&sample("community.yaml"));
    let names: Vec<&str> = community
        .spec
        .communities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, vec!["no-export-upstream", "blackhole-large"]);
}

#[test]
fn schema_defaults_agree_with_the_rust_defaults() {
    let pool = schema_of("IPAddressPool");
    let pool_spec = &pool["properties"]["spec"]["properties"];
    assert_eq!(pool_spec["autoAssign"]["default"], Value::Bool(true));
    assert_eq!(pool_spec["avoidBuggyIPs"]["default"], Value::Bool(false));
    assert_eq!(pool_spec["allowExternalIPs"]["default"], Value::Bool(false));

    let peer = schema_of("BGPPeer");
    let peer_spec = &peer["properties"]["spec"]["properties"];
    assert_eq!(peer_spec["peerPort"]["default"], serde_json::json!(179));
    assert_eq!(
        peer_spec["passwordSecret"]["properties"]["key"]["default"],
        serde_json::json!("password")
    );
    assert!(
        peer_spec["holdTime"].get("default").is_none(),
        "a holdTime default would reject keepalives >= it that the user set without a holdTime"
    );

    let adv = schema_of("BGPAdvertisement");
    let adv_spec = &adv["properties"]["spec"]["properties"];
    assert_eq!(
        adv_spec["aggregationLength"]["default"],
        serde_json::json!(32)
    );
    assert_eq!(
        adv_spec["aggregationLengthV6"]["default"],
        serde_json::json!(128)
    );
}

#[test]
fn a_bfd_profile_and_the_peer_naming_it_are_read_from_the_manifests() {
    let profile = round_trip::<BFDProfile>(&sample("bfdprofile.yaml"));
    assert_eq!(
        profile.spec.receive_interval(),
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        profile.spec.transmit_interval(),
        std::time::Duration::from_millis(100)
    );
    assert_eq!(profile.spec.detect_multiplier(), 3);
    assert_eq!(profile.spec.minimum_ttl(), 254);
    let peer = round_trip::<BGPPeer>(&sample("bgppeer-bfd.yaml"));
    assert_eq!(peer.spec.bfd_profile.as_deref(), Some("fast"));
    let plain = round_trip::<BGPPeer>(&sample("bgppeer.yaml"));
    assert_eq!(plain.spec.bfd_profile, None);
}

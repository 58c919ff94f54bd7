//! The CRDs' CEL rules, evaluated offline with kube-cel: every invalid example whose rule is
//! CEL is rejected with its message, and tables of edge cases land on the right side.
//! (Rules stated in plain OpenAPI — ranges, patterns, list types — are checked by the
//! apiserver end-to-end test in tests/lab/tests/api.rs, which uses the same example files.)

mod common;

use common::{Manifest, cel_errors, examples_dir, yaml_files};
use herald_crds::api::{check_timers, parse_duration};
use serde_json::{Value, json};

/// What `herald_crds::api::check_timers` (the rules' Rust twin, used by `herald migrate`)
/// says of these timers: true when accepted.
fn twin_accepts(hold: Option<&str>, keepalive: Option<&str>, connect: Option<&str>) -> bool {
    let parse = |text: Option<&str>| text.map(|t| parse_duration(t).expect("a duration"));
    check_timers(parse(hold), parse(keepalive), parse(connect)).is_ok()
}

fn invalid_examples() -> Vec<Manifest> {
    yaml_files(&examples_dir().join("invalid"))
        .iter()
        .map(|p| Manifest::load(p))
        .collect()
}

fn pool(addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": { "name": "p" },
        "spec": { "addresses": addresses },
    })
}

fn peer(extra: Value) -> Value {
    let mut spec = json!({ "myASN": 64501, "peerASN": 64500, "peerAddress": "192.0.2.1" });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "BGPPeer",
        "metadata": { "name": "p" },
        "spec": spec,
    })
}

fn advertisement(communities: &[&str]) -> Value {
    json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "BGPAdvertisement",
        "metadata": { "name": "a" },
        "spec": { "communities": communities },
    })
}

#[test]
fn every_invalid_example_says_which_layer_rejects_it_and_with_what_message() {
    let examples = invalid_examples();
    assert!(examples.len() >= 10);
    for example in examples {
        let layer = example.header("checked-by");
        assert!(
            matches!(layer.as_deref(), Some("cel" | "openapi")),
            "{}: `# checked-by: cel|openapi` missing",
            example.name()
        );
        assert!(
            example.header("expect").is_some_and(|e| !e.is_empty()),
            "{}: `# expect: <message>` missing",
            example.name()
        );
    }
}

#[test]
fn every_invalid_example_checked_by_cel_is_rejected_with_its_message() {
    for example in invalid_examples() {
        if example.header("checked-by").as_deref() != Some("cel") {
            continue;
        }
        let expect = example.header("expect").unwrap_or_default();
        let errors = cel_errors(&example.object);
        assert!(
            errors.iter().any(|e| e.contains(&expect)),
            "{}: expected an error containing {expect:?}, got {errors:?}",
            example.name()
        );
    }
}

#[test]
fn well_formed_pool_entries_pass() {
    for entry in [
        "192.0.2.0/24",
        "192.0.2.7/32",
        "0.0.0.0/0",
        "2001:db8::/32",
        "2001:db8:1::100/120",
        "192.0.2.10-192.0.2.20",
        "192.0.2.10-192.0.2.10",
        "192.0.2.255-192.0.3.0",
        "0.0.0.0-255.255.255.255",
        "127.255.255.255-128.0.0.0",
        "2001:db8::ffff-2001:db8::1:0",
        "2001:db8::-2001:db8::",
        "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert_eq!(cel_errors(&pool(&[entry])), Vec::<String>::new(), "{entry}");
    }
}

#[test]
fn malformed_pool_entries_are_rejected_with_a_message_naming_them() {
    for (entry, message) in [
        ("192.0.2.0/33", "is neither a CIDR"),
        ("192.0.2.0", "is neither a CIDR"),
        ("192.0.2.0/24 ", "is neither a CIDR"),
        ("192.0.2.1-192.0.2.2-192.0.2.3", "is neither a CIDR"),
        ("192.0.2.1-", "is neither a CIDR"),
        ("::ffff:192.0.2.1/128", "is neither a CIDR"),
        ("192.0.2.128/24", "has bits set past its prefix length"),
        ("2001:db8::1/64", "has bits set past its prefix length"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("192.0.2.1-192.0.2.0", "ends before it starts"),
        ("192.0.3.0-192.0.2.255", "ends before it starts"),
        ("255.255.255.255-0.0.0.0", "ends before it starts"),
        ("128.0.0.0-127.255.255.255", "ends before it starts"),
        ("2001:db8::1-2001:db8::", "ends before it starts"),
        ("2001:db8::1:0-2001:db8::ffff", "ends before it starts"),
    ] {
        let errors = cel_errors(&pool(&[entry]));
        assert_eq!(errors.len(), 1, "{entry}: {errors:?}");
        assert!(
            errors[0].contains(message) && errors[0].contains(entry.trim_end()),
            "{entry}: {errors:?}"
        );
    }
}

#[test]
fn hold_time_is_zero_or_between_three_and_65535_seconds() {
    for (hold, ok) in [
        ("0s", true),
        ("3s", true),
        ("90s", true),
        ("1m30s", true),
        ("18h12m15s", true),
        ("65535s", true),
        ("1s", false),
        ("2s", false),
        ("65536s", false),
        ("19h", false),
    ] {
        let errors = cel_errors(&peer(json!({ "holdTime": hold })));
        assert_eq!(errors.is_empty(), ok, "holdTime {hold}: {errors:?}");
        assert_eq!(
            twin_accepts(Some(hold), None, None),
            ok,
            "check_timers: holdTime {hold}"
        );
    }
}

#[test]
fn keepalive_must_be_positive_and_below_the_hold_time() {
    for (hold, keepalive, ok) in [
        (Some("9s"), "3s", true),
        (Some("9s"), "8s", true),
        (Some("9s"), "9s", false),
        (Some("9s"), "10s", false),
        (Some("9s"), "0s", false),
        (Some("0s"), "0s", true),
        (Some("0s"), "1s", false),
        (None, "30s", true),
        (None, "89s", true),
        (None, "90s", false),
        (None, "2m", false),
    ] {
        let mut extra = json!({ "keepaliveTime": keepalive });
        if let Some(hold) = hold {
            extra["holdTime"] = json!(hold);
        }
        let errors = cel_errors(&peer(extra));
        assert_eq!(
            errors.is_empty(),
            ok,
            "hold {hold:?} keepalive {keepalive}: {errors:?}"
        );
        assert_eq!(
            twin_accepts(hold, Some(keepalive), None),
            ok,
            "check_timers: hold {hold:?} keepalive {keepalive}"
        );
        if !ok {
            assert!(errors[0].contains("spec.keepaliveTime"), "{errors:?}");
        }
    }
}

#[test]
fn connect_time_is_at_least_a_second() {
    assert!(cel_errors(&peer(json!({ "connectTime": "1s" }))).is_empty());
    assert!(!cel_errors(&peer(json!({ "connectTime": "0s" }))).is_empty());
    for (connect, ok) in [
        ("1s", true),
        ("0s", false),
        ("65535s", true),
        ("65536s", false),
    ] {
        assert_eq!(
            cel_errors(&peer(json!({ "connectTime": connect }))).is_empty(),
            ok,
            "connectTime {connect}"
        );
        assert_eq!(
            twin_accepts(None, None, Some(connect)),
            ok,
            "check_timers: connectTime {connect}"
        );
    }
}

#[test]
fn peer_addresses_must_be_ip_addresses_of_one_family() {
    assert!(cel_errors(&peer(json!({ "peerAddress": "2001:db8:1::1" }))).is_empty());
    assert!(
        cel_errors(&peer(json!({ "sourceAddress": "192.0.2.11" }))).is_empty(),
        "same family"
    );
    let errors = cel_errors(&peer(json!({ "peerAddress": "192.0.2.1/32" })));
    assert!(
        errors.iter().any(|e| e.contains("is not an IP address")),
        "{errors:?}"
    );
    let errors = cel_errors(&peer(json!({ "sourceAddress": "2001:db8:1::11" })));
    assert!(
        errors.iter().any(|e| e.contains("same family")),
        "{errors:?}"
    );
}

#[test]
fn router_id_must_be_a_non_zero_ipv4_address() {
    assert!(cel_errors(&peer(json!({ "routerID": "192.0.2.11" }))).is_empty());
    for bad in ["0.0.0.0", "2001:db8::1", "router"] {
        let errors = cel_errors(&peer(json!({ "routerID": bad })));
        assert!(
            errors.iter().any(|e| e.contains("routerID")),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn as_trans_is_refused_on_either_side() {
    assert!(!cel_errors(&peer(json!({ "myASN": 23456 }))).is_empty());
    assert!(!cel_errors(&peer(json!({ "peerASN": 23456 }))).is_empty());
    assert!(cel_errors(&peer(json!({ "peerASN": 4_294_967_295u32 }))).is_empty());
}

#[test]
fn advertisement_communities_are_values_or_alias_names() {
    for good in [
        "0:0",
        "65535:65535",
        "64500:100",
        "large:0:0:0",
        "large:4294967295:4294967295:4294967295",
        "no-export-upstream",
        "a",
    ] {
        assert_eq!(
            cel_errors(&advertisement(&[good])),
            Vec::<String>::new(),
            "{good}"
        );
    }
    for (bad, message) in [
        ("65536:0", "at most 65535"),
        ("0:65536", "at most 65535"),
        ("large:4294967296:0:0", "at most 4294967295"),
        ("large:0:0:4294967296", "at most 4294967295"),
        ("64500", "is neither"),
        ("1:2:3", "is neither"),
        ("large:1:2", "is neither"),
        ("Upstream", "is neither"),
        ("9lives", "is neither"),
        ("-x", "is neither"),
    ] {
        let errors = cel_errors(&advertisement(&[bad]));
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn a_community_alias_must_stand_for_a_value_not_another_alias() {
    let community = |value: &str| {
        json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "Community",
            "metadata": { "name": "c" },
            "spec": { "communities": [ { "name": "upstream", "value": value } ] },
        })
    };
    assert!(cel_errors(&community("64500:666")).is_empty());
    assert!(cel_errors(&community("large:64500:666:0")).is_empty());
    assert!(!cel_errors(&community("no-export")).is_empty());
}

fn bfd_profile(spec: Value) -> Value {
    json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "BFDProfile",
        "metadata": { "name": "b" },
        "spec": spec,
    })
}

#[test]
fn bfd_profile_ranges_accept_their_edges_and_refuse_one_beyond() {
    for (field, low, high) in [
        ("receiveInterval", 10, 60_000),
        ("transmitInterval", 10, 60_000),
        ("detectMultiplier", 2, 255),
        ("minimumTtl", 1, 254),
    ] {
        for ok in [low, high] {
            assert_eq!(
                cel_errors(&bfd_profile(json!({ field: ok }))),
                Vec::<String>::new(),
                "{field} {ok}"
            );
        }
        for bad in [low - 1, high + 1] {
            let errors = cel_errors(&bfd_profile(json!({ field: bad })));
            assert_eq!(errors.len(), 1, "{field} {bad}: {errors:?}");
            assert!(
                errors[0].contains(&format!("must be between {low} and {high}")),
                "{errors:?}"
            );
        }
    }
    assert_eq!(cel_errors(&bfd_profile(json!({}))), Vec::<String>::new());
}

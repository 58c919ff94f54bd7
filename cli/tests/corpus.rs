//! `herald migrate` over the corpus in `tests/corpus/`: MetalLB-shaped manifests written from
//! MetalLB's documented API (every kind, every field, both BGPPeer versions, both annotation
//! forms). Each translated object is read back into Herald's own API types and compared
//! field by field with what the MetalLB object meant; every untranslatable field must be in
//! the report; invalid input must name the file and line.

use std::path::{Path, PathBuf};

use herald_cli::source::{self, Document};
use herald_cli::translate::{self, Finding, Migration, Options, Severity};
use herald_crds::api::{BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement};
use serde_json::Value;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn documents(name: &str) -> Vec<Document> {
    let path = corpus(name);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    source::split_documents(&path.display().to_string(), &text).expect("valid YAML")
}

fn migrate(name: &str) -> Migration {
    translate::translate(&documents(name), &Options::default())
        .unwrap_or_else(|errors| panic!("{name}: {errors:?}"))
}

fn object<'a>(migration: &'a Migration, kind: &str, name: &str) -> &'a Value {
    migration
        .objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the output"))
}

fn typed<T: serde::de::DeserializeOwned>(migration: &Migration, kind: &str, name: &str) -> T {
    let value = object(migration, kind, name).clone();
    assert_eq!(value["apiVersion"], "herald.dev/v1alpha1", "{kind} {name}");
    assert_eq!(
        value["metadata"]["namespace"], "herald-system",
        "{kind} {name}"
    );
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn finding<'a>(migration: &'a Migration, object: &str, field: &str) -> &'a Finding {
    migration
        .findings
        .iter()
        .find(|f| f.object.ends_with(object) && f.field == field)
        .unwrap_or_else(|| {
            panic!(
                "no finding for {object} {field}; findings: {:#?}",
                migration.findings
            )
        })
}

fn labels(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Vec<(String, String)> {
    selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[test]
fn layer2_pools_and_advertisements_translate_field_by_field() {
    let m = migrate("layer2.yaml");
    assert!(m.findings.is_empty(), "{:#?}", m.findings);

    let lan: IPAddressPool = typed(&m, "IPAddressPool", "lan");
    assert_eq!(
        lan.spec.addresses,
        ["192.0.2.128/25", "2001:db8:1::100-2001:db8:1::1ff"]
    );
    assert!(lan.spec.auto_assign);
    assert!(lan.spec.avoid_buggy_ips);
    assert!(
        !lan.spec.allow_external_ips,
        "MetalLB never announces externalIPs"
    );
    assert_eq!(lan.spec.service_allocation, None);
    assert_eq!(
        lan.metadata
            .labels
            .unwrap_or_default()
            .get("zone")
            .map(String::as_str),
        Some("lan"),
        "labels are kept: pool selectors match on them"
    );

    let reserved: IPAddressPool = typed(&m, "IPAddressPool", "reserved");
    assert!(!reserved.spec.auto_assign);
    assert!(!reserved.spec.avoid_buggy_ips);
    let allocation = reserved.spec.service_allocation.expect("serviceAllocation");
    assert_eq!(allocation.priority, Some(10));
    assert_eq!(allocation.namespaces, ["payments"]);
    assert_eq!(
        labels(&allocation.namespace_selectors[0]),
        [("team".to_owned(), "payments".to_owned())]
    );
    let expression = &allocation.service_selectors[0]
        .match_expressions
        .as_ref()
        .expect("expressions")[0];
    assert_eq!(expression.key, "tier");
    assert_eq!(expression.operator, "In");
    assert_eq!(
        expression.values.as_deref(),
        Some(&["frontend".to_owned(), "edge".to_owned()][..])
    );

    let unranked: IPAddressPool = typed(&m, "IPAddressPool", "unranked");
    assert_eq!(
        unranked
            .spec
            .service_allocation
            .expect("allocation")
            .priority,
        None,
        "MetalLB's priority 0 means no priority"
    );
    assert!(unranked.spec.auto_assign, "autoAssign defaults to true");

    let l2: L2Advertisement = typed(&m, "L2Advertisement", "lan");
    assert_eq!(l2.spec.pools, ["lan", "reserved"]);
    assert_eq!(
        labels(&l2.spec.pool_selectors[0]),
        [("zone".to_owned(), "lan".to_owned())]
    );
    assert_eq!(l2.spec.node_selectors.len(), 2);
    assert_eq!(
        labels(&l2.spec.node_selectors[0]),
        [("kubernetes.io/hostname".to_owned(), "node-1".to_owned())]
    );
    assert_eq!(
        l2.spec.node_selectors[1]
            .match_expressions
            .as_ref()
            .expect("expr")[0]
            .operator,
        "NotIn"
    );
    assert_eq!(l2.spec.interfaces, ["eth0", "bond0.100"]);

    let everything: L2Advertisement = typed(&m, "L2Advertisement", "everything");
    assert_eq!(
        everything.spec,
        Default::default(),
        "no pools named: every pool"
    );
}

#[test]
fn bgp_peers_of_both_versions_translate_field_by_field() {
    let m = migrate("bgp.yaml");

    let upstream: BGPPeer = typed(&m, "BGPPeer", "upstream");
    let s = &upstream.spec;
    assert_eq!((s.my_asn, s.peer_asn), (64500, 64501));
    assert_eq!(s.peer_address, "192.0.2.1");
    assert_eq!(s.source_address.as_deref(), Some("192.0.2.11"));
    assert_eq!(s.peer_port, 1179);
    assert_eq!(s.hold_time.as_deref(), Some("1m30s"));
    assert_eq!(s.keepalive_time.as_deref(), Some("30s"));
    assert_eq!(s.connect_time.as_deref(), Some("5s"));
    assert_eq!(s.router_id.as_deref(), Some("192.0.2.11"));
    assert_eq!(
        labels(&s.node_selectors[0]),
        [("rack".to_owned(), "r1".to_owned())]
    );
    assert!(s.ebgp_multi_hop);
    assert!(s.enable_graceful_restart);
    let secret = s.password_secret.as_ref().expect("passwordSecret");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("upstream-md5", "password")
    );
    assert_eq!(
        object(&m, "BGPPeer", "upstream")["spec"]["bfdProfile"],
        "fast",
        "bfdProfile is carried (Herald's BGPPeer.spec.bfdProfile)"
    );
    let copy = finding(&m, "upstream", "spec.passwordSecret");
    assert_eq!(copy.severity, Severity::Action);
    assert!(
        copy.todo
            .contains("copy metallb-system/upstream-md5 into herald-system")
    );

    let legacy: BGPPeer = typed(&m, "BGPPeer", "legacy");
    let s = &legacy.spec;
    assert_eq!((s.my_asn, s.peer_asn), (4_200_000_000, 4_200_000_000));
    assert_eq!(s.peer_address, "2001:db8:1::1");
    assert_eq!(s.peer_port, 179, "port 0 means the default");
    assert_eq!(s.hold_time.as_deref(), Some("9s"));
    assert_eq!(s.keepalive_time.as_deref(), Some("3s"));
    assert!(!s.ebgp_multi_hop && !s.enable_graceful_restart);
    assert_eq!(
        s.node_selectors[0]
            .match_expressions
            .as_ref()
            .expect("expr")[0]
            .values
            .as_deref(),
        Some(&["node-2".to_owned()][..]),
        "v1beta1 node selectors have the label-selector shape"
    );
    let secret = s
        .password_secret
        .as_ref()
        .expect("password moved to a Secret");
    assert_eq!(secret.name, "legacy-bgp-password");
    let written = object(&m, "Secret", "legacy-bgp-password");
    assert_eq!(written["stringData"]["password"], "s3cret");
    assert_eq!(written["metadata"]["namespace"], "herald-system");
    assert_eq!(
        finding(&m, "legacy", "spec.password").severity,
        Severity::Action
    );
    assert!(
        object(&m, "BGPPeer", "legacy")["spec"]
            .get("bfdProfile")
            .is_none()
    );

    let same_as: BGPPeer = typed(&m, "BGPPeer", "same-as");
    assert_eq!(same_as.spec.peer_asn, 64500, "dynamicASN internal is iBGP");
    assert_eq!(
        finding(&m, "same-as", "spec.dynamicASN").severity,
        Severity::Note
    );

    assert!(!m.has_untranslated(), "{:#?}", m.findings);
}

#[test]
fn bgp_advertisements_communities_and_bfd_profiles_translate_field_by_field() {
    let m = migrate("bgp.yaml");

    let adv: BGPAdvertisement = typed(&m, "BGPAdvertisement", "upstream");
    let s = &adv.spec;
    assert_eq!(s.aggregation_length, 24);
    assert_eq!(s.aggregation_length_v6, 120);
    assert_eq!(s.local_pref, Some(150));
    assert_eq!(
        s.communities,
        ["65000:100", "large:64500:1:2", "no-advertise"]
    );
    assert_eq!(s.pools, ["bgp"]);
    assert_eq!(
        labels(&s.pool_selectors[0]),
        [("announce".to_owned(), "bgp".to_owned())]
    );
    assert_eq!(
        labels(&s.node_selectors[0]),
        [("rack".to_owned(), "r1".to_owned())]
    );
    assert_eq!(s.peers, ["upstream"]);
    assert_eq!(s.link_bandwidth, None);

    let defaults: BGPAdvertisement = typed(&m, "BGPAdvertisement", "defaults");
    assert_eq!(defaults.spec.aggregation_length, 32);
    assert_eq!(defaults.spec.aggregation_length_v6, 128);
    assert_eq!(
        defaults.spec.local_pref, None,
        "localPref 0 is MetalLB's unset"
    );

    let community: Community = typed(&m, "Community", "aliases");
    let aliases: Vec<(&str, &str)> = community
        .spec
        .communities
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        aliases,
        [
            ("no-advertise", "65535:65282"),
            ("upstream-large", "large:64500:7:7")
        ]
    );

    let bfd = object(&m, "BFDProfile", "fast");
    assert_eq!(bfd["apiVersion"], "herald.dev/v1alpha1");
    assert_eq!(bfd["metadata"]["namespace"], "herald-system");
    assert_eq!(
        bfd["spec"],
        serde_json::json!({
            "receiveInterval": 300,
            "transmitInterval": 300,
            "detectMultiplier": 3,
            "passiveMode": true,
            "minimumTtl": 254,
        })
    );
}

#[test]
fn output_is_in_apply_order_pools_and_aliases_first() {
    let m = migrate("bgp.yaml");
    let kinds: Vec<&str> = m
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    let position = |kind: &str| kinds.iter().position(|k| *k == kind).expect(kind);
    assert!(position("Secret") < position("BGPPeer"));
    assert!(position("IPAddressPool") < position("BGPAdvertisement"));
    assert!(position("Community") < position("BGPAdvertisement"));
    assert!(position("BFDProfile") < position("BGPPeer"));
    let yaml = m.to_yaml().expect("yaml");
    assert_eq!(yaml.matches("---\n").count(), m.objects.len());
}

#[test]
fn every_untranslatable_field_is_reported_with_meaning_and_advice() {
    let m = migrate("untranslatable.yaml");
    for (object, field) in [
        ("frr-only", "spec.vrf"),
        ("frr-only", "spec.interface"),
        ("frr-only", "spec.disableMP"),
        ("frr-only", "spec.dualStackAddressFamily"),
        ("frr-only", "spec.routerIdentifier"),
        ("any-external", "spec.dynamicASN"),
        ("echo", "spec.echoMode"),
        ("echo", "spec.echoInterval"),
        ("odd-names", "spec.communities"),
    ] {
        let f = finding(&m, object, field);
        assert_eq!(f.severity, Severity::Untranslated, "{f}");
        assert!(!f.meaning.is_empty() && !f.todo.is_empty(), "{f}");
        assert!(f.location.origin.ends_with("untranslatable.yaml"), "{f}");
        assert!(f.location.line.is_some(), "{f}");
    }
    assert!(m.has_untranslated());
    // The report names the line of the field itself.
    let vrf = finding(&m, "frr-only", "spec.vrf");
    assert_eq!(vrf.location.line, Some(12), "{vrf}");
    // Sub-second timers are rounded up to whole seconds, with a note.
    let hold = finding(&m, "frr-only", "spec.holdTime");
    assert_eq!(hold.severity, Severity::Action);
    let peer: BGPPeer = typed(&m, "BGPPeer", "frr-only");
    assert_eq!(peer.spec.hold_time.as_deref(), Some("4s"));
    // A peer without a fixed ASN cannot be written; an alias Herald cannot name is dropped.
    assert!(
        !m.objects
            .iter()
            .any(|o| o["metadata"]["name"] == "any-external")
    );
    let community: Community = typed(&m, "Community", "odd-names");
    assert!(community.spec.communities.is_empty());
    // Status kinds are noted, not translated.
    assert!(
        m.findings
            .iter()
            .any(|f| f.object == "ServiceL2Status" && f.severity == Severity::Note)
    );
}

fn annotations(value: &Value) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(value["metadata"]["annotations"].clone()).unwrap_or_default()
}

#[test]
fn services_are_pinned_to_the_addresses_metallb_assigned() {
    let m = migrate("services.yaml");

    let web = object(&m, "Service", "web");
    let a = annotations(web);
    assert_eq!(
        a["herald.dev/loadBalancerIPs"], "192.0.2.130",
        "pinned from status"
    );
    assert_eq!(a["herald.dev/address-pool"], "lan");
    assert_eq!(a["herald.dev/allow-shared-ip"], "web-and-dns");
    assert_eq!(a["herald.dev/ip-allocated-from-pool"], "lan");
    assert_eq!(
        a["metallb.io/address-pool"], "lan",
        "MetalLB's stay for going back"
    );
    assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert!(web.get("status").is_none());
    for server_set in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(web["metadata"].get(server_set).is_none(), "{server_set}");
    }
    assert_eq!(
        web["spec"]["ports"][0]["targetPort"], 8080,
        "the rest is kept"
    );

    let dns = annotations(object(&m, "Service", "dns"));
    assert_eq!(dns["herald.dev/loadBalancerIPs"], "192.0.2.130");
    assert_eq!(
        dns["herald.dev/allow-shared-ip"], "web-and-dns",
        "legacy form read"
    );
    assert_eq!(dns["herald.dev/address-pool"], "lan");

    let dual = annotations(object(&m, "Service", "dual"));
    assert_eq!(
        dual["herald.dev/loadBalancerIPs"], "192.0.2.140,2001:db8:1::140",
        "no address yet: the request is carried over"
    );
    assert_eq!(dual["herald.dev/address-pool"], "lan", "metallb.io/ wins");
    assert!(!dual.contains_key("herald.dev/ip-allocated-from-pool"));
    let both = finding(
        &m,
        "dual",
        "metadata.annotations.metallb.universe.tf/address-pool",
    );
    assert!(
        both.todo.contains("metallb.io/address-pool is used"),
        "{both}"
    );

    let classy = object(&m, "Service", "classy");
    assert_eq!(
        annotations(classy)["herald.dev/loadBalancerIPs"],
        "203.0.113.7"
    );
    assert_eq!(
        finding(&m, "classy", "spec.loadBalancerClass").severity,
        Severity::Action
    );
    assert_eq!(
        finding(
            &m,
            "classy",
            "metadata.annotations.metallb.io/some-future-annotation"
        )
        .severity,
        Severity::Untranslated
    );

    assert!(
        !m.objects
            .iter()
            .any(|o| o["metadata"]["name"] == "internal"),
        "Services that are not MetalLB's are left alone"
    );
}

fn errors(name: &str) -> Vec<translate_error::E> {
    translate_error::of(name)
}

/// Reading an invalid corpus file: the split or the translation fails.
mod translate_error {
    use super::*;

    #[derive(Debug)]
    pub struct E {
        pub line: Option<usize>,
        pub origin: String,
        pub message: String,
    }

    pub fn of(name: &str) -> Vec<E> {
        let path = corpus(name);
        let text = std::fs::read_to_string(&path).expect("corpus file");
        let documents = match source::split_documents(&path.display().to_string(), &text) {
            Ok(documents) => documents,
            Err(e) => {
                return vec![E {
                    line: e.location.line,
                    origin: e.location.origin,
                    message: e.message,
                }];
            }
        };
        match translate::translate(&documents, &Options::default()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| E {
                    line: e.location.line,
                    origin: e.location.origin,
                    message: e.message,
                })
                .collect(),
        }
    }
}

#[test]
fn bad_input_is_named_with_file_and_line() {
    let cases: [(&str, usize, &str); 6] = [
        ("invalid/not-yaml.yaml", 7, "not valid YAML"),
        (
            "invalid/bad-keepalive.yaml",
            10,
            "keepalive interval must be above 0s and below the hold time",
        ),
        (
            "invalid/unknown-kind.yaml",
            10,
            "unknown MetalLB kind \"BGPRouter\"",
        ),
        ("invalid/bad-asn.yaml", 7, "spec.peerASN"),
        ("invalid/bad-cidr.yaml", 7, "192.0.2.300/32"),
        (
            "invalid/bad-duration.yaml",
            9,
            "\"ninety\" is not a duration",
        ),
    ];
    for (name, line, text) in cases {
        let found = errors(name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        let e = &found[0];
        assert!(e.origin.ends_with(name), "{name}: {e:?}");
        assert!(e.message.contains(text), "{name}: {e:?}");
        let got = e.line.expect("a line");
        assert!(
            got == line || (name == "invalid/not-yaml.yaml" && (6..=8).contains(&got)),
            "{name}: line {got}, expected {line}: {e:?}"
        );
    }
}

#[test]
fn a_v1beta2_field_in_a_v1beta1_peer_is_translated_and_noted() {
    let text = "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata:\n  name: p\nspec:\n  myASN: 64500\n  peerASN: 64501\n  peerAddress: 192.0.2.1\n  connectTime: 7s\n";
    let documents = source::split_documents("peer.yaml", text).expect("yaml");
    let m = translate::translate(&documents, &Options::default()).expect("translated");
    let peer: BGPPeer = typed(&m, "BGPPeer", "p");
    assert_eq!(peer.spec.connect_time.as_deref(), Some("7s"));
    let note = finding(&m, "p", "spec.connectTime");
    assert_eq!(note.severity, Severity::Note);
    assert_eq!(note.location.line, Some(9));
}

#[test]
fn other_objects_fail_unless_skipped() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n";
    let documents = source::split_documents("mixed.yaml", text).expect("yaml");
    let error = translate::translate(&documents, &Options::default()).expect_err("unknown");
    assert!(error[0].message.contains("--skip-unknown"));
    let options = Options {
        skip_unknown: true,
        ..Options::default()
    };
    let m = translate::translate(&documents, &options).expect("skipped");
    assert!(m.objects.is_empty());
    assert_eq!(m.findings[0].severity, Severity::Note);
}

//! The herald.dev API against the real kube-apiserver of the lab (`herald-cp`, v1.36):
//! the generated CRDs apply, the sample manifests are accepted with the documented defaults,
//! every invalid example is rejected with a readable message, `kubectl explain` shows the
//! field docs, and `kubectl get` shows the printer columns. Must run as root (the control
//! plane listens on the lab bridge).
//!
//! The CRDs are applied from `charts/herald/crds/` (what users install; the herald-crds drift
//! test keeps it equal to the Rust types) and left installed: like the control plane itself
//! they are shared by every test binary, and deleting them would delete other tests'
//! objects. Everything else lives in a test namespace that is deleted when the test ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_crds::api::{BGPAdvertisement, BGPPeer, IPAddressPool};
use herald_lab::herald;
use herald_lab::kube::TestNamespace;
use herald_lab::wait::{Poll, poll_until_ok};
use herald_lab::{ControlPlane, Kubectl, LabError, Result, paths};
use serde_json::{Value, json};

/// How long a fresh CRD may take to be served (REST mapping, OpenAPI publication).
const CRD_READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn examples_dir() -> PathBuf {
    paths::repo_root().join("crds/examples")
}

/// The `.yaml` files directly inside `dir`, sorted.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).map_err(|e| LabError::io(format!("reading {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))
}

/// The value of a `# key: value` line in a manifest's header comment.
fn header(text: &str, key: &str) -> Option<String> {
    let prefix = format!("# {key}: ");
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

/// The `metadata.name` line of a one-object YAML manifest.
fn manifest_name(text: &str) -> Option<String> {
    let mut in_metadata = false;
    for line in text.lines() {
        if line.starts_with("metadata:") {
            in_metadata = true;
        } else if in_metadata && let Some(name) = line.trim().strip_prefix("name: ") {
            return Some(name.trim().to_owned());
        }
    }
    None
}

/// The CRDs of the Herald API by name (`ipaddresspools.herald.dev`, ...).
fn crd_names() -> impl Iterator<Item = &'static str> {
    herald::CRDS
        .into_iter()
        .map(|crd| crd.trim_start_matches("crd/"))
}

/// The shared control plane with the Herald CRDs applied and served.
fn kubectl_with_crds() -> Result<Kubectl> {
    let kubectl = ControlPlane::ensure()?.kubectl()?;
    herald::install_crds(&kubectl)?;
    Ok(kubectl)
}

/// A test namespace in which the Herald kinds are already served (the REST mapping of a new
/// CRD can lag its Established condition).
fn namespace(kubectl: &Kubectl, hint: &str) -> Result<TestNamespace> {
    let ns = kubectl.test_namespace(hint)?;
    poll_until_ok(
        "the Herald kinds to be served",
        CRD_READY_TIMEOUT,
        POLL_INTERVAL,
        || {
            for kind in crd_names() {
                kubectl.run(&["get", kind, "-n", ns.name()])?;
            }
            Ok(Poll::Ready(()))
        },
    )?;
    Ok(ns)
}

/// Reads an object back and deserializes it into its Rust type.
fn get_as<T: serde::de::DeserializeOwned>(ns: &TestNamespace, kind: &str, name: &str) -> Result<T> {
    let object = ns
        .get(kind, name)?
        .ok_or_else(|| LabError::Invalid(format!("{kind}/{name} not found")))?;
    serde_json::from_value(object).map_err(|e| LabError::parse(format!("{kind}/{name}"), e))
}

#[test]
fn the_herald_crds_apply_and_become_established() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    for name in crd_names() {
        let crd = kubectl
            .get("crd", name, None)?
            .ok_or_else(|| LabError::Invalid(format!("crd {name} missing")))?;
        assert_eq!(crd["spec"]["group"], "herald.dev");
        let conditions = crd["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c["type"] == wanted && c["status"] == "True"),
                "{name}: {wanted} not True: {conditions:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn every_sample_manifest_is_accepted_and_read_back_with_the_schema_defaults() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = namespace(&kubectl, "api-samples")?;
    let samples = yaml_files(&examples_dir())?;
    assert!(samples.len() >= 5, "samples: {samples:?}");
    for sample in &samples {
        ns.apply(&read(sample)?)?;
    }

    // Defaults written by the apiserver from the schema, not by serde.
    let l2_pool = ns
        .get("ipaddresspool", "l2-pool")?
        .ok_or_else(|| LabError::Invalid("l2-pool missing".into()))?;
    assert_eq!(l2_pool["spec"]["autoAssign"], json!(true));
    assert_eq!(l2_pool["spec"]["avoidBuggyIPs"], json!(false));
    let peer = ns
        .get("bgppeer", "router-v6")?
        .ok_or_else(|| LabError::Invalid("router-v6 missing".into()))?;
    assert_eq!(peer["spec"]["peerPort"], json!(179));
    let adv = ns
        .get("bgpadvertisement", "bgp")?
        .ok_or_else(|| LabError::Invalid("bgp advertisement missing".into()))?;
    assert_eq!(adv["spec"]["aggregationLength"], json!(32));
    assert_eq!(adv["spec"]["aggregationLengthV6"], json!(128));

    // And the stored objects read back into the Rust types.
    let pool: IPAddressPool = get_as(&ns, "ipaddresspool", "bgp-pool")?;
    assert_eq!(
        pool.spec.addresses,
        vec!["203.0.113.10-203.0.113.250", "2001:db8:100::/120"]
    );
    let peer: BGPPeer = get_as(&ns, "bgppeer", "router")?;
    assert_eq!(peer.spec.hold_time().ok(), Some(Duration::from_secs(9)));
    assert_eq!(
        peer.spec.password_secret.map(|s| s.key),
        Some("password".to_owned())
    );
    let adv: BGPAdvertisement = get_as(&ns, "bgpadvertisement", "bgp")?;
    assert_eq!(adv.spec.communities.len(), 3);
    Ok(())
}

#[test]
fn every_invalid_example_is_rejected_by_the_apiserver_with_a_readable_message() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = namespace(&kubectl, "api-invalid")?;
    let examples = yaml_files(&examples_dir().join("invalid"))?;
    // Among them: bad CIDR, reversed range, mixed-family range, hold 2s, keepalive >= hold,
    // ASN 0, aggregation length 33.
    for required in [
        "pool-bad-cidr.yaml",
        "pool-reversed-range.yaml",
        "pool-mixed-family-range.yaml",
        "peer-hold-2s.yaml",
        "peer-keepalive-not-below-hold.yaml",
        "peer-asn-zero.yaml",
        "adv-aggregation-33.yaml",
    ] {
        assert!(
            examples.iter().any(|p| p.ends_with(required)),
            "missing invalid example {required}"
        );
    }
    let mut failures = Vec::new();
    for example in &examples {
        let text = read(example)?;
        let file = example
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expect = header(&text, "expect")
            .ok_or_else(|| LabError::Invalid(format!("{file}: no `# expect:` line")))?;
        let name = manifest_name(&text)
            .ok_or_else(|| LabError::Invalid(format!("{file}: no metadata.name")))?;
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or_default()
            .to_lowercase();
        match ns.apply(&text) {
            Ok(out) => failures.push(format!("{file}: accepted ({})", out.trim())),
            Err(error) => {
                let message = error.to_string();
                if !message.contains(&expect) {
                    failures.push(format!("{file}: message lacks {expect:?}: {message}"));
                }
                if message.contains("type conversion error") || message.contains("no such key") {
                    failures.push(format!("{file}: a CEL rule failed to evaluate: {message}"));
                }
            }
        }
        if ns.get(&kind, &name)?.is_some() {
            failures.push(format!("{file}: {kind}/{name} was stored"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn kubectl_explain_shows_the_field_documentation() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    for (field, text) in [
        ("ipaddresspool.spec.addresses", "each entry is a CIDR"),
        ("ipaddresspool.spec.autoAssign", "without asking for it"),
        ("bgppeer.spec.holdTime", "RFC 4271"),
        (
            "bgpadvertisement.spec.communities",
            "large communities (RFC 8092)",
        ),
        ("l2advertisement.spec.interfaces", "ARP/NDP"),
        ("community.spec.communities.value", "standard"),
    ] {
        // The aggregated OpenAPI document follows a new CRD after a moment.
        let explained = poll_until_ok(
            &format!("kubectl explain {field}"),
            CRD_READY_TIMEOUT,
            POLL_INTERVAL,
            || {
                let out = kubectl.run(&["explain", field])?;
                Ok(if out.contains(text) {
                    Poll::Ready(out)
                } else {
                    Poll::Pending(out)
                })
            },
        )?;
        assert!(explained.contains("herald.dev"), "{explained}");
    }
    Ok(())
}

#[test]
fn kubectl_get_shows_the_printer_columns_and_short_names() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = namespace(&kubectl, "api-columns")?;
    ns.apply(&read(&examples_dir().join("ipaddresspool-l2.yaml"))?)?;
    ns.apply(&read(&examples_dir().join("bgppeer.yaml"))?)?;
    kubectl.patch_status(
        "ipaddresspool",
        "l2-pool",
        Some(ns.name()),
        &json!({"status": {
            "assignedIPv4": 3, "availableIPv4": 125,
            "assignedIPv6": 1, "availableIPv6": "255",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Valid",
                            "message": "all addresses valid",
                            "lastTransitionTime": herald_lab::kube::rfc3339_now()}],
        }}),
    )?;

    let table = kubectl.run(&["get", "ipp", "-n", ns.name()])?;
    let mut lines = table.lines();
    let heading: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        heading,
        [
            "NAME",
            "ADDRESSES",
            "AUTO ASSIGN",
            "ASSIGNED IPV4",
            "AVAILABLE IPV4",
            "ASSIGNED IPV6",
            "AVAILABLE IPV6",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..8),
        Some(
            &[
                "l2-pool",
                r#"["192.0.2.128/25","2001:db8:1::100/120"]"#,
                "true",
                "3",
                "125",
                "1",
                "255",
                "True"
            ][..]
        ),
        "{table}"
    );

    let wide = kubectl.run(&["get", "ipaddresspools", "-n", ns.name(), "-o", "wide"])?;
    assert!(
        wide.contains("AVOID BUGGY IPS") && wide.contains("EXTERNAL IPS"),
        "{wide}"
    );

    let peers = kubectl.run(&["get", "bgpp", "-n", ns.name()])?;
    assert!(
        peers.contains("PEER ADDRESS") && peers.contains("PEER ASN"),
        "{peers}"
    );
    assert!(
        peers.contains("192.0.2.1") && peers.contains("64500"),
        "{peers}"
    );

    let everything = kubectl.run(&["get", "herald", "-n", ns.name(), "-o", "name"])?;
    assert!(
        everything.contains("ipaddresspool.herald.dev/l2-pool"),
        "{everything}"
    );
    assert!(
        everything.contains("bgppeer.herald.dev/router"),
        "{everything}"
    );
    Ok(())
}

#[test]
fn status_is_a_subresource_with_its_own_validation() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = namespace(&kubectl, "api-status")?;
    ns.apply(&read(&examples_dir().join("bgppeer.yaml"))?)?;
    let session = |state: &str| {
        json!({"status": {"sessions": [{"node": "node-a", "state": state,
                                          "lastTransitionTime": herald_lab::kube::rfc3339_now()}]}})
    };
    kubectl.patch_status(
        "bgppeer",
        "router",
        Some(ns.name()),
        &session("Established"),
    )?;
    let rejected = kubectl
        .patch_status("bgppeer", "router", Some(ns.name()), &session("Up"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(rejected.contains("supported values"), "{rejected}");

    // A spec apply does not touch the status.
    ns.apply(
        &read(&examples_dir().join("bgppeer.yaml"))?.replace("holdTime: 9s", "holdTime: 30s"),
    )?;
    let peer: BGPPeer = get_as(&ns, "bgppeer", "router")?;
    assert_eq!(peer.spec.hold_time().ok(), Some(Duration::from_secs(30)));
    let states: Vec<Value> = peer
        .status
        .map(|s| {
            s.sessions
                .iter()
                .map(|x| json!([x.node, x.state]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(states, vec![json!(["node-a", "Established"])]);
    Ok(())
}

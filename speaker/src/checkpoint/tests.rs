//! Checkpoint tests: the format and the decisions without I/O, and one round trip through
//! a scratch directory for the atomic write.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::format::{
    CLOCK_SKEW, Refusal, VERSION, Written, confirmed_at, decode, encode, encode_body,
    refresh_interval, usable, write_due,
};
use super::*;
use crate::convert::{ConvertOptions, convert};
use crate::planner::{NodePlan, plan};

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test object")
}

/// A cluster with one layer-2 Service at `address`, endpoints on n1 and n2.
fn snapshot(address: &str) -> Snapshot {
    Snapshot {
        nodes: vec![
            object(serde_json::json!({"metadata": {"name": "n1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}})),
            object(serde_json::json!({"metadata": {"name": "n2"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.12"}]}})),
        ],
        pools: vec![object(serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "lan", "namespace": "herald-system"},
            "spec": {"addresses": ["198.51.100.0/24"]}}))],
        l2_advertisements: vec![object(serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"name": "lan", "namespace": "herald-system"},
            "spec": {}}))],
        services: vec![object(serde_json::json!({
            "metadata": {"name": "web", "namespace": "lab"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": address}]}}}))],
        endpoint_slices: vec![object(serde_json::json!({
            "metadata": {"name": "web-abcde", "namespace": "lab",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["198.18.1.11"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["198.18.2.11"], "nodeName": "n2", "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))],
        memberlist_secret: Some(object(serde_json::json!({
            "metadata": {"name": "herald-memberlist", "namespace": "herald-system"},
            "data": {"secretkey": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM="}}))),
        ..Default::default()
    }
}

/// Node n1's plan from `snapshot`, as the runtime computes it.
fn plan_on_n1(snapshot: &Snapshot, live: &BTreeSet<String>) -> NodePlan {
    let conversion = convert(&snapshot.objects(), &ConvertOptions::default());
    plan(&conversion.model, "n1", live)
}

fn file_of(snapshot: &Snapshot, node: &str, confirmed: u64) -> Vec<u8> {
    encode(node, confirmed, &encode_body(snapshot).expect("encodes"))
}

const MAX_AGE: Duration = Duration::from_secs(600);

#[test]
fn a_checkpoint_reads_back_as_the_snapshot_it_was_written_from() {
    let original = snapshot("198.51.100.10");
    let file = file_of(&original, "n1", 1_000);
    let back = decode(&file).expect("decodes");
    assert_eq!(back.node, "n1");
    assert_eq!(back.confirmed, 1_000);
    assert_eq!(
        encode_body(&back.snapshot).expect("encodes"),
        encode_body(&original).expect("encodes"),
        "the body round-trips byte for byte"
    );
    assert!(
        back.snapshot.memberlist_secret.is_none(),
        "no Secret is ever written"
    );
}

#[test]
fn a_restored_speaker_plans_only_the_addresses_its_checkpoint_holds() {
    let live: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
    let original = snapshot("198.51.100.10");
    let mut restored = decode(&file_of(&original, "n1", 1_000))
        .expect("decodes")
        .snapshot;
    restored.memberlist_secret = original.memberlist_secret.clone();
    let from_live = plan_on_n1(&original, &live);
    let from_checkpoint = plan_on_n1(&restored, &live);
    assert_eq!(
        from_checkpoint, from_live,
        "the same plan as from the watches"
    );
    let held: BTreeSet<std::net::IpAddr> = ["198.51.100.10".parse().expect("ip")].into();
    let planned: BTreeSet<std::net::IpAddr> = from_checkpoint
        .l2
        .keys()
        .copied()
        .chain(from_checkpoint.forwarding.keys().map(|k| k.address))
        .chain(
            from_checkpoint
                .bgp
                .routes
                .values()
                .flatten()
                .map(|(net, _)| net.addr()),
        )
        .collect();
    assert!(!planned.is_empty(), "the test must plan something");
    assert!(planned.is_subset(&held), "{planned:?} outside {held:?}");
}

#[test]
fn a_corrupt_checkpoint_is_refused_not_half_believed() {
    let file = file_of(&snapshot("198.51.100.10"), "n1", 1_000);
    // Truncated (a torn write without the rename).
    let torn = &file[..file.len() - 10];
    assert_eq!(decode(torn).map(|_| ()).unwrap_err().reason(), "corrupt");
    // One address edited: still valid JSON, but the checksum says no.
    let text = String::from_utf8(file.clone()).expect("utf-8");
    let edited = text.replace("198.51.100.10", "198.51.100.99");
    assert_ne!(edited, text);
    assert!(matches!(
        decode(edited.as_bytes()),
        Err(Refusal::Corrupt(why)) if why.contains("checksum")
    ));
    // Garbage, empty, and a header alone.
    for bad in [
        &b""[..],
        b"\x00\x01\x02",
        b"{\"services\":[]}\n",
        b"HERALD-SPEAKER-CHECKPOINT 1\n",
    ] {
        assert_eq!(decode(bad).map(|_| ()).unwrap_err().reason(), "corrupt");
    }
}

#[test]
fn a_body_that_lacks_a_kind_is_corrupt_not_empty() {
    // Right checksum, but no "pools": read as empty it would withdraw every address.
    let body = br#"{"services":[],"endpoint_slices":[],"nodes":[],"l2_advertisements":[],"bgp_advertisements":[],"peers":[],"communities":[],"bfd_profiles":[]}"#;
    assert_eq!(
        decode(&encode("n1", 5, body))
            .map(|_| ())
            .unwrap_err()
            .reason(),
        "corrupt"
    );
}

#[test]
fn other_format_versions_are_refused_both_ways() {
    let file = file_of(&snapshot("198.51.100.10"), "n1", 1_000);
    let text = String::from_utf8(file).expect("utf-8");
    let with_version = |v: u32| text.replacen(&format!(" {VERSION} "), &format!(" {v} "), 1);
    assert_eq!(
        decode(with_version(VERSION + 1).as_bytes()).unwrap_err(),
        Refusal::FutureVersion { found: VERSION + 1 }
    );
    assert_eq!(
        decode(with_version(0).as_bytes()).unwrap_err(),
        Refusal::OldVersion { found: 0 }
    );
}

#[test]
fn age_node_and_clock_decide_whether_a_checkpoint_is_usable() {
    let checkpoint = || decode(&file_of(&snapshot("198.51.100.10"), "n1", 1_000)).expect("ok");
    assert!(usable(checkpoint(), "n1", 1_000 + 600, MAX_AGE).is_ok());
    assert_eq!(
        usable(checkpoint(), "n1", 1_000 + 601, MAX_AGE).unwrap_err(),
        Refusal::TooOld {
            age_secs: 601,
            max_age_secs: 600
        }
    );
    assert_eq!(
        usable(checkpoint(), "n2", 1_000, MAX_AGE)
            .unwrap_err()
            .reason(),
        "other_node"
    );
    // A little skew is tolerated, more is not.
    assert!(usable(checkpoint(), "n1", 1_000 - CLOCK_SKEW.as_secs(), MAX_AGE).is_ok());
    assert_eq!(
        usable(
            checkpoint(),
            "n1",
            1_000 - CLOCK_SKEW.as_secs() - 1,
            MAX_AGE
        )
        .unwrap_err(),
        Refusal::FromTheFuture { ahead_secs: 61 }
    );
}

#[test]
fn the_confirmation_stops_at_the_beginning_of_an_outage() {
    assert_eq!(confirmed_at(500, None), 500);
    assert_eq!(confirmed_at(500, Some(420)), 420);
    assert_eq!(confirmed_at(500, Some(900)), 500);
}

#[test]
fn writes_happen_on_change_and_on_refresh_only() {
    let refresh = refresh_interval(MAX_AGE);
    assert_eq!(refresh, Duration::from_secs(60));
    assert_eq!(
        refresh_interval(Duration::from_secs(8)),
        Duration::from_secs(10)
    );
    let a = Written::of(b"a", 100);
    assert!(write_due(None, a, refresh));
    assert!(!write_due(Some(a), Written::of(b"a", 159), refresh));
    assert!(write_due(Some(a), Written::of(b"a", 160), refresh));
    assert!(write_due(Some(a), Written::of(b"b", 101), refresh));
    // During an outage the confirmation does not move: no rewrites.
    assert!(!write_due(Some(a), Written::of(b"a", 100), refresh));
}

proptest! {
    #[test]
    fn no_byte_string_makes_decode_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn any_single_flipped_byte_is_refused(index in 0usize..4096, bit in 0u8..8) {
        let file = file_of(&snapshot("198.51.100.10"), "n1", 1_000);
        let index = index % file.len();
        let mut flipped = file.clone();
        flipped[index] ^= 1 << bit;
        // The header's digits may still parse (another version, node, time): whatever it
        // says, it must not decode as the same checkpoint.
        match decode(&flipped) {
            Err(_) => {}
            Ok(back) => prop_assert!(false, "flipped byte {index} accepted as node {} at {}", back.node, back.confirmed),
        }
    }
}

/// A runtime to drive a [`Checkpointer`] of n1 with, and the checkpointer.
fn new_writer(
    config: &CheckpointConfig,
    metrics: &CheckpointMetrics,
) -> (tokio::runtime::Runtime, Checkpointer) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let writer = Checkpointer::new(config.clone(), "n1".into(), metrics.clone());
    (runtime, writer)
}

fn scratch_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "herald-checkpoint-{name}-{}-{nanos}",
        std::process::id()
    ))
}

#[test]
fn the_file_is_written_atomically_private_and_read_back_by_load() {
    use std::os::unix::fs::PermissionsExt;
    let config = CheckpointConfig {
        directory: scratch_dir("roundtrip").join("nested"),
        max_age: MAX_AGE,
    };
    let metrics = CheckpointMetrics::default();
    assert!(
        load(&config, "n1", unix_now(), &metrics).is_none(),
        "no file yet"
    );
    let (runtime, mut writer) = new_writer(&config, &metrics);
    let now = unix_now();
    runtime.block_on(writer.record(&snapshot("198.51.100.10"), now, None));
    runtime.block_on(writer.record(&snapshot("198.51.100.10"), now + 1, None));
    assert_eq!(metrics.writes.get(), 1, "unchanged state: one write");
    runtime.block_on(writer.record(&snapshot("198.51.100.11"), now + 2, None));
    assert_eq!(metrics.writes.get(), 2, "changed state: written");
    let path = config.file("n1");
    let mode = std::fs::metadata(&path).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    assert!(!PathBuf::from(tmp).exists(), "no temporary file left");
    let loaded = load(&config, "n1", now + 3, &metrics).expect("usable");
    assert_eq!(
        loaded.services[0]
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i[0].ip.clone())
            .as_deref(),
        Some("198.51.100.11")
    );
    // Too old at start: refused and counted.
    assert!(load(&config, "n1", now + 2 + 601, &metrics).is_none());
    assert_eq!(
        metrics
            .refused
            .get_or_create(&metrics::ReasonLabel { reason: "too_old" })
            .get(),
        1
    );
    std::fs::write(&path, b"garbage").expect("write");
    assert!(load(&config, "n1", now, &metrics).is_none());
    assert_eq!(
        metrics
            .refused
            .get_or_create(&metrics::ReasonLabel { reason: "corrupt" })
            .get(),
        1
    );
    let _ = std::fs::remove_dir_all(config.directory.parent().expect("parent"));
}

#[test]
fn a_resumed_speaker_plans_bgp_and_forwarding_but_no_layer_2() {
    let live: BTreeSet<String> = ["n1".to_string()].into();
    let original = snapshot("198.51.100.10");
    let from_live = plan_on_n1(&original, &live);
    assert!(!from_live.l2.is_empty(), "the test must plan layer 2 live");
    let resumed = format::for_resume(
        decode(&file_of(&original, "n1", 1_000))
            .expect("decodes")
            .snapshot,
    );
    assert!(resumed.memberlist_secret.is_none());
    let resumed_plan = plan_on_n1(&resumed, &live);
    assert!(resumed_plan.l2.is_empty(), "{:?}", resumed_plan.l2);
    assert_eq!(resumed_plan.forwarding, from_live.forwarding);
    assert_eq!(resumed_plan.bgp, from_live.bgp);
}

#[test]
fn a_failed_write_is_counted_and_retried_on_the_next_pass() {
    let base = scratch_dir("unwritable");
    std::fs::create_dir_all(&base).expect("scratch");
    // The checkpoint "directory" is a regular file: every write fails.
    let blocker = base.join("not-a-directory");
    std::fs::write(&blocker, b"x").expect("write");
    let metrics = CheckpointMetrics::default();
    let mut config = CheckpointConfig {
        directory: blocker.clone(),
        max_age: MAX_AGE,
    };
    let (runtime, mut writer) = new_writer(&config, &metrics);
    let now = unix_now();
    runtime.block_on(writer.record(&snapshot("198.51.100.10"), now, None));
    runtime.block_on(writer.record(&snapshot("198.51.100.10"), now, None));
    assert_eq!(
        metrics.write_errors.get(),
        2,
        "unchanged state, but tried again"
    );
    assert_eq!(metrics.writes.get(), 0);
    config.directory = base.join("ok");
    let (_, mut writer) = new_writer(&config, &metrics);
    runtime.block_on(writer.record(&snapshot("198.51.100.10"), now, None));
    assert_eq!(metrics.writes.get(), 1);
    let _ = std::fs::remove_dir_all(&base);
}

//! The forwarding executor against a real kernel, in network namespaces the tests create and
//! delete (even on failure). Needs root, iproute2 and nft; prints SKIPPED otherwise.
//!
//! 1. Table lifecycle: full apply, incremental updates that leave every untouched chain and
//!    element exactly where it was (same kernel handles), drift repair, removal.
//! 2. Traffic: client ns -> node ns (Herald's table) -> pod ns, over veth pairs in
//!    198.51.100.0/24 and 198.18.1.0/24 with no route anywhere else. A `Local` Service keeps
//!    the client's address, a `Cluster` Service whose endpoint is on "another node" is
//!    masqueraded, a Service without endpoints is refused at once. The server and the
//!    client are this test binary re-run inside the namespaces (see `netns_helper`).

#[path = "support/forwarding_fixture.rs"]
mod fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fixture::ScratchNetns;
use herald_speaker::forwarding::{
    ApplyOutcome, DEFAULT_MASQUERADE_MARK, Forwarder, NftCommand, Ruleset,
};
use herald_speaker::model::{Protocol, ServiceKey};
use herald_speaker::planner::{Backend, ForwardKey, ForwardTarget};
use serde_json::Value;

fn skip_without_nft() -> bool {
    if fixture::nft_available() {
        return false;
    }
    eprintln!("SKIPPED: needs root, iproute2 and nft (apt-get install nftables)");
    true
}

/// Chain name -> rule handles, and map/set name -> elements (as JSON text), from `nft -j`.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    rule_handles: BTreeMap<String, Vec<u64>>,
    elements: BTreeMap<String, BTreeSet<String>>,
}

async fn snapshot(nft: &NftCommand) -> Snapshot {
    let json = nft
        .list_table_json()
        .await
        .expect("nft list runs")
        .expect("table exists");
    let root: Value = serde_json::from_str(&json).expect("nft prints JSON");
    let mut rule_handles: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut elements: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for object in root["nftables"].as_array().expect("nftables array") {
        if let Some(chain) = object.get("chain") {
            rule_handles
                .entry(chain["name"].as_str().expect("chain name").to_string())
                .or_default();
        }
        if let Some(rule) = object.get("rule") {
            rule_handles
                .entry(rule["chain"].as_str().expect("rule chain").to_string())
                .or_default()
                .push(rule["handle"].as_u64().expect("rule handle"));
        }
        if let Some(set) = object.get("map").or_else(|| object.get("set")) {
            let name = set["name"].as_str().expect("set name").to_string();
            let items = set
                .get("elem")
                .and_then(Value::as_array)
                .map(|items| items.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            elements.insert(name, items);
        }
    }
    Snapshot {
        rule_handles,
        elements,
    }
}

/// Chains whose rules (handles) differ between two snapshots, including added/removed ones.
fn changed_chains(before: &Snapshot, after: &Snapshot) -> BTreeSet<String> {
    let names: BTreeSet<&String> = before
        .rule_handles
        .keys()
        .chain(after.rule_handles.keys())
        .collect();
    names
        .into_iter()
        .filter(|n| before.rule_handles.get(*n) != after.rule_handles.get(*n))
        .cloned()
        .collect()
}

/// Elements present in only one of two snapshots, per map/set.
fn moved_elements(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, usize> {
    let mut moved = BTreeMap::new();
    for (name, items) in &after.elements {
        let empty = BTreeSet::new();
        let old = before.elements.get(name).unwrap_or(&empty);
        let count = items.symmetric_difference(old).count();
        if count > 0 {
            moved.insert(name.clone(), count);
        }
    }
    moved
}

#[tokio::test]
async fn the_forwarder_updates_in_place_and_repairs_drift_in_a_namespace() {
    if skip_without_nft() {
        return;
    }
    let ns = ScratchNetns::create("exec");
    let nft = NftCommand::in_netns(&ns.name);
    let mut forwarder = Forwarder::new(nft.clone());

    let first = fixture::ruleset_for(&fixture::mixed_model());
    let outcome = forwarder.apply(first.clone()).await.expect("first apply");
    assert!(
        matches!(outcome, ApplyOutcome::Rebuilt { .. }),
        "{outcome:?}"
    );
    let listed = nft.list_table().await.expect("list").expect("table exists");
    assert!(
        listed.contains("203.0.113.10 . tcp . 80 : goto svc4-"),
        "{listed}"
    );
    assert!(
        listed.contains("dnat ip6 to [2001:db8:244:1::53]:5353"),
        "{listed}"
    );
    let before = snapshot(&nft).await;

    // One Service gains an endpoint: its service chain is refilled and nothing else in the
    // kernel changes.
    let mut scaled_model = fixture::mixed_model();
    if let Some(web) = scaled_model
        .services
        .get_mut(&ServiceKey::new("default", "web"))
    {
        let mut extra = web.endpoints[0].clone();
        extra.addresses = vec!["198.18.1.6".parse().expect("ip")];
        web.endpoints.push(extra);
    }
    let scaled = fixture::ruleset_for(&scaled_model);
    let outcome = forwarder.apply(scaled.clone()).await.expect("update");
    assert!(
        matches!(outcome, ApplyOutcome::Updated { .. }),
        "{outcome:?}"
    );
    let after_scale = snapshot(&nft).await;
    let changed = changed_chains(&before, &after_scale);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed.iter().all(|c| c.ends_with("-default/web/tcp/http")));
    assert!(moved_elements(&before, &after_scale).is_empty());

    // The fixture's update: exactly the changed elements move, and untouched chains keep
    // their rules (same handles).
    let updated = fixture::ruleset_for(&fixture::mixed_model_updated());
    forwarder
        .apply(updated.clone())
        .await
        .expect("second update");
    let after_update = snapshot(&nft).await;
    assert_eq!(
        moved_elements(&after_scale, &after_update),
        BTreeMap::from([
            // diameter's element out, empty's and new's in.
            ("service-ips-v4".to_string(), 3),
            // empty's reject entry out.
            ("no-endpoints-v4".to_string(), 1),
        ])
    );
    let untouched: Vec<&String> = after_scale
        .rule_handles
        .keys()
        .filter(|c| !changed_chains(&after_scale, &after_update).contains(*c))
        .collect();
    // web's chain is refilled and diameter's deleted; the other 13 keep their rule handles.
    assert_eq!(untouched.len(), 13, "untouched: {untouched:?}");

    assert_eq!(
        forwarder.apply(updated.clone()).await.expect("no-op"),
        ApplyOutcome::Unchanged
    );
    assert!(forwarder.repair().await.expect("repair").is_empty());

    // Someone deletes an element behind Herald's back: repair notices and restores it.
    let output = ns.nft_stdin(
        &["-f", "-"],
        "delete element inet herald service-ips-v4 { 203.0.113.10 . tcp . 80 }\n",
    );
    assert!(output.status.success(), "{output:?}");
    let drift = forwarder.repair().await.expect("repair");
    assert!(
        drift.iter().any(|d| d.contains("203.0.113.10 . tcp . 80")),
        "{drift:?}"
    );
    assert!(forwarder.repair().await.expect("repair").is_empty());
    let listed = nft.list_table().await.expect("list").expect("table exists");
    assert!(listed.contains("203.0.113.10 . tcp . 80 : goto svc4-"));

    // An update the kernel refuses (its chain was deleted by hand) falls back to a rebuild.
    let output = ns.nft_stdin(&["-f", "-"], "delete table inet herald\n");
    assert!(output.status.success(), "{output:?}");
    let outcome = forwarder.apply(first).await.expect("fallback rebuild");
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Rebuilt {
                after_update_error: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(forwarder.repair().await.expect("repair").is_empty());

    forwarder.remove().await.expect("remove");
    assert_eq!(nft.list_table().await.expect("list"), None);
}

/// Not a test of its own: the body of the helper processes the traffic test starts inside
/// its namespaces (server and client). Ignored in normal runs; the lab runs it with
/// `--ignored --exact`.
#[test]
#[ignore = "helper process for the traffic test"]
fn netns_helper() {
    fixture::run_traffic_helper();
}

fn target(name: &str, backends: Vec<Backend>) -> ForwardTarget {
    ForwardTarget {
        service: ServiceKey::new("default", name),
        port_name: "http".into(),
        backends,
    }
}

fn key(address: &str) -> ForwardKey {
    ForwardKey {
        address: address.parse().expect("ip"),
        protocol: Protocol::Tcp,
        port: 80,
    }
}

#[tokio::test]
async fn traffic_is_dnated_masqueraded_only_for_remote_endpoints_and_refused_without_endpoints() {
    if skip_without_nft() {
        return;
    }
    let lab = fixture::TrafficLab::create(&["--ignored", "--exact", "netns_helper", "--nocapture"])
        .expect("build the namespace lab");
    let pod_backend = |masquerade| Backend {
        address: fixture::LAB_POD_ADDRESS.parse().expect("ip"),
        port: fixture::LAB_POD_PORT,
        masquerade,
    };
    let forwarding: BTreeMap<ForwardKey, ForwardTarget> = [
        (
            key("203.0.113.11"),
            target("local", vec![pod_backend(false)]),
        ),
        (
            key("203.0.113.10"),
            target("cluster", vec![pod_backend(true)]),
        ),
        (key("203.0.113.30"), target("empty", vec![])),
    ]
    .into();
    let mut forwarder = Forwarder::new(NftCommand::in_netns(&lab.node.name));
    forwarder
        .apply(Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK))
        .await
        .expect("apply");

    let client_sees = format!("OK peer={}", fixture::LAB_CLIENT_ADDRESS);
    let node_sees = format!("OK peer={}", fixture::LAB_NODE_POD_SIDE);
    assert_eq!(lab.client("client:203.0.113.11:80"), client_sees);
    assert_eq!(lab.client("client:203.0.113.10:80"), node_sees);
    let started = Instant::now();
    assert_eq!(
        lab.client("client:203.0.113.30:80"),
        "ERR ConnectionRefused"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // The Cluster Service loses its endpoint: refused from now on, the Local one still works.
    let mut updated = forwarding.clone();
    updated.insert(key("203.0.113.10"), target("cluster", vec![]));
    let outcome = forwarder
        .apply(Ruleset::from_plan(&updated, DEFAULT_MASQUERADE_MARK))
        .await
        .expect("update");
    assert!(
        matches!(outcome, ApplyOutcome::Updated { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        lab.client("client:203.0.113.10:80"),
        "ERR ConnectionRefused"
    );
    assert_eq!(lab.client("client:203.0.113.11:80"), client_sees);
}

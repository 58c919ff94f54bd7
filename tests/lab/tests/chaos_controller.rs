//! Chaos on the controller's side: after the kube-apiserver was frozen, the controller
//! rewrites nothing and moves nothing (issue 11: no write storm when the outage ends).
//!
//! The BGP chaos world (`chaos_support::BgpChaos`) plus the real `herald-controller` (no
//! leader election), which takes the two Services' addresses over from their status. Once
//! it has, the resourceVersions of both Services and of the pool are noted; the apiserver is
//! frozen for 20 s and continued; 20 s later every resourceVersion must be the same (no
//! status, annotation or pool write at all: the relist after the outage found nothing to
//! change), the addresses the same, the controller still running, and the client lost no
//! request throughout.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 1 minute.

mod bgp_support;
mod chaos_support;
mod common;

use std::time::Duration;

use chaos_support::{BGP_V4, BGP_V6, BgpChaos, conclude};
use herald_lab::Result;
use herald_lab::chaos::ApiFreeze;
use herald_lab::wait::{Poll, poll_until};
use serde_json::Value;

const FREEZE: Duration = Duration::from_secs(20);
const AFTER: Duration = Duration::from_secs(20);

/// resourceVersion and ingress addresses of the two Services, and the pool's
/// resourceVersion.
fn versions(chaos: &BgpChaos) -> Result<Vec<(String, String)>> {
    let world = &chaos.world;
    let mut out = Vec::new();
    for service in ["web4", "web6"] {
        let object = world.apps.get("service", service)?.unwrap_or(Value::Null);
        out.push((
            format!("service {service}"),
            format!(
                "{} {}",
                object["metadata"]["resourceVersion"], object["status"]["loadBalancer"]
            ),
        ));
    }
    let pool = world
        .install
        .get("ipaddresspool", "bgp")?
        .unwrap_or(Value::Null);
    out.push((
        "pool bgp".into(),
        pool["metadata"]["resourceVersion"].to_string(),
    ));
    Ok(out)
}

// Written at the end of issue 11's session and not yet run: the machine-wide lab lock was
// held by a detached control plane of another worktree until the deadline. Ignored until it
// has passed once: `cargo test -p herald-lab --test chaos_controller -- --ignored --nocapture`.
#[test]
#[ignore = "not yet run in the lab; see the comment above"]
fn the_controller_rewrites_and_moves_nothing_after_the_apiserver_was_frozen() -> Result<()> {
    let mut chaos = BgpChaos::start("chaos-ctl")?;
    let mut controller = chaos.world.start_controller(1)?;
    // The controller has taken both addresses over (a restart rebuilds from status) and
    // written the pool's status; let its first writes settle.
    poll_until(
        "the controller to restore both addresses",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let metrics = chaos.world.lab.exec_in_node(
                1,
                &[
                    "curl",
                    "-s",
                    "--max-time",
                    "2",
                    "http://127.0.0.1:7472/metrics",
                ],
            )?;
            let restored =
                herald_lab::herald::metric_sum(&metrics, "herald_controller_restored_addresses");
            Ok(if restored >= 2.0 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("restored {restored}"))
            })
        },
    )?;
    std::thread::sleep(Duration::from_secs(10));
    let before = versions(&chaos)?;
    println!("before: {before:?}");
    assert!(
        before[0].1.contains(BGP_V4) && before[1].1.contains(BGP_V6),
        "{before:?}"
    );

    let prober = chaos.prober(FREEZE + AFTER + Duration::from_secs(120));
    let mut violations = Vec::new();
    let freeze = ApiFreeze::start()?;
    while freeze.elapsed() < FREEZE {
        chaos.check(&format!("frozen +{:?}", freeze.elapsed()), &mut violations)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let frozen = freeze.thaw()?;
    chaos.hold("continued", AFTER, &mut violations)?;
    let after = versions(&chaos)?;
    println!("after: {after:?}");
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        if was != is {
            violations.push(format!(
                "{what} was written after the outage: {was} -> {is}"
            ));
        }
    }
    if !controller.is_running() {
        violations.push("the controller exited".into());
    }
    let report = prober.finish();
    conclude(
        &chaos.world,
        &format!("apiserver SIGSTOP {frozen:?} with the controller"),
        &report,
        &violations,
    )
}

//! Chaos: a speaker restarted while the kube-apiserver is frozen resumes from its on-node
//! checkpoint (issue 11, `speaker/src/checkpoint/`).
//!
//! Each speaker runs with `--checkpoint-dir` (a scratch directory of this test). Once the
//! lab is up and the checkpoints written, the apiserver is frozen (SIGSTOP) and one speaker
//! is SIGKILLed and started again. Without a checkpoint it would announce nothing until the
//! API answers (`chaos_apiserver.rs`, last test); with one it resumes within seconds, while
//! the API is still frozen:
//!
//! - **BGP** (no TCP-MD5: the checkpoint holds no BGP password, see
//!   docs/static-stability.md): the router's route to each Service address goes via both
//!   nodes again before the API answers; after the thaw nothing changes and no session
//!   other than the killed one's is reset.
//! - **Layer 2**: a resumed speaker stays out of layer 2 and membership until the API
//!   answers (its layer-2 engine needs the current-announcer records, which come from the
//!   API; the first run of this test, when it rejoined membership, left nobody announcing:
//!   the other node gave the addresses way to it). So the node that took over keeps both
//!   addresses: exactly one speaker owns each (their `owned_addresses` sum to 2) during
//!   the rest of the freeze and after it, and the restarted one forwards from its
//!   checkpoint meanwhile.
//!
//! In both, a client sends requests to the addresses every 250 ms throughout; requests
//! caught in the instant of the kill may fail (the longest gap must stay under 5 s in BGP,
//! the failover window in layer 2), none after.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 1.5 minutes each.

mod bgp_support;
mod chaos_support;
mod common;
mod l2_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bgp_support::CONVERGE;
use chaos_support::BgpChaos;
use common::{SERVICE_PORT, World, parse_ip};
use herald_lab::chaos::{ApiFreeze, Prober};
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{LabError, Result};

/// How long the API stays frozen; the restart happens at its beginning.
const FREEZE: Duration = Duration::from_secs(30);
/// How long the checks go on after the API answers again.
const AFTER: Duration = Duration::from_secs(10);
const RESUMED: &str = "herald_speaker_checkpoint_resumed";
const WRITES: &str = "herald_speaker_checkpoint_writes_total";

/// A scratch checkpoint directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(hint: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "herald-lab-checkpoint-{hint}-{}",
            std::process::id()
        )))
    }

    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until every speaker of `nodes` has written its checkpoint.
fn wait_checkpoints(world: &World, nodes: &[usize]) -> Result<()> {
    poll_until(
        "the speakers' first checkpoints",
        CONVERGE,
        Duration::from_millis(200),
        || {
            let mut writes = Vec::new();
            for &node in nodes {
                writes.push(world.metric_sum(node, WRITES).unwrap_or(0.0));
            }
            Ok(if writes.iter().all(|w| *w >= 1.0) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("writes {writes:?}"))
            })
        },
    )
}

#[test]
fn a_bgp_speaker_restarted_during_an_api_freeze_resumes_from_its_checkpoint() -> Result<()> {
    let scratch = Scratch::new("bgp");
    let dir = scratch.arg();
    let mut chaos = BgpChaos::start_with("chaos-ckpt", false, &["--checkpoint-dir", &dir])?;
    wait_checkpoints(&chaos.world, &[1, 2])?;
    let prober = chaos.prober(FREEZE + AFTER + Duration::from_secs(120));
    let mut violations = Vec::new();

    let freeze = ApiFreeze::start()?;
    chaos.world.kill_speaker(1)?;
    // Waits (bounded) for the first full apply: from the checkpoint, the API being frozen.
    let started = Instant::now();
    chaos.world.start_speaker(1)?;
    let applied_after = started.elapsed();
    let resumed = chaos.world.metric_sum(1, RESUMED)?;
    for (prefix, gateways) in &chaos.desired {
        chaos.world.wait_gateways(prefix, gateways, CONVERGE)?;
    }
    let announced_at = freeze.elapsed();
    println!(
        "restarted speaker: first apply {applied_after:?} after its start, both routes via both nodes at frozen +{announced_at:?}"
    );
    if announced_at >= FREEZE {
        return Err(LabError::Invalid(format!(
            "node 1 announced again only at +{announced_at:?}, not while the API was frozen"
        )));
    }
    assert_eq!(resumed, 1.0, "the speaker says it runs from its checkpoint");
    // Node 1's session was reset by the kill: justified. Everything else must hold.
    chaos.baseline = chaos.world.session_counters()?;
    while freeze.elapsed() < FREEZE {
        chaos.check(&format!("frozen +{:?}", freeze.elapsed()), &mut violations)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let frozen = freeze.thaw()?;
    chaos.hold("continued", AFTER, &mut violations)?;
    let left = chaos.world.metric_sum(1, RESUMED)?;
    if left != 0.0 {
        violations.push(format!(
            "after: node 1 still runs from its checkpoint ({RESUMED} {left})"
        ));
    }
    let report = prober.finish();
    print!("{}", report.table());
    println!(
        "speaker SIGKILL + restart from its checkpoint during a {frozen:?} API freeze, BGP: {} requests, {} lost, longest gap {:?}, {} violations",
        report.sent(),
        report.lost(),
        report.longest_gap(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{}\n{}",
        violations.join("\n"),
        chaos.world.speaker_logs()
    );
    // Requests hashed to node 1 in the instant of the kill may fail; nothing longer.
    assert!(
        report.longest_gap() < Duration::from_secs(5),
        "a gap of {:?}:\n{}",
        report.longest_gap(),
        report.table()
    );
    Ok(())
}

const L2_V4: &str = "192.0.2.231";
const L2_V6: &str = "2001:db8:1::1e7";

/// The speakers own exactly the two addresses between them; while frozen, the restarted
/// one forwards both Services from its checkpoint.
fn check_l2(world: &World, restarted: Option<usize>, label: &str, violations: &mut Vec<String>) {
    let owned: Result<f64> = (1..=2)
        .map(|node| world.metric_sum(node, "herald_speaker_l2_owned_addresses"))
        .sum();
    match owned {
        Ok(2.0) => {}
        Ok(other) => violations.push(format!(
            "{label}: the speakers own {other} addresses between them, not 2"
        )),
        Err(error) => violations.push(format!("{label}: metrics unreadable: {error}")),
    }
    let Some(restarted) = restarted else {
        return;
    };
    match world.metric_sum(restarted, "herald_speaker_plan_forwarding_keys") {
        Ok(2.0) => {}
        other => violations.push(format!(
            "{label}: the restarted speaker forwards {other:?} keys, not 2"
        )),
    }
}

#[test]
fn a_layer2_speaker_restarted_during_an_api_freeze_resumes_from_its_checkpoint() -> Result<()> {
    let scratch = Scratch::new("l2");
    let dir = scratch.arg();
    let mut world = World::l2("chaos-ckpt-l2", 2)?;
    world.speaker_args(&["--checkpoint-dir", &dir]);
    world.add_pod(1, "l2k-1", "app")?;
    world.add_pod(2, "l2k-2", "app")?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2], 2)?;
    world.apply_service(
        &world.service("svc", "app", "Cluster").dual_stack(),
        &[L2_V4, L2_V6],
    )?;
    world.wait_ready_endpoints("svc", 4)?;
    let (v4, v6) = (parse_ip(L2_V4)?, parse_ip(L2_V6)?);
    world.wait_get(v4)?;
    world.wait_get(v6)?;
    let owner = world.wait_any_record("svc", v4)?;
    wait_checkpoints(&world, &[1, 2])?;
    // The checkpoint must hold the Service with its address: wait until it was rewritten
    // after the Service's endpoints (a second write at least).
    poll_until(
        "the owner's checkpoint with the Service",
        CONVERGE,
        Duration::from_millis(200),
        || {
            let plan = world.metric_sum(owner, "herald_speaker_plan_l2_addresses")?;
            Ok(if plan == 2.0 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("plans {plan}"))
            })
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));

    let prober = Prober::start(
        world.lab.client(),
        &[(v4, SERVICE_PORT), (v6, SERVICE_PORT)],
        Duration::from_secs(2),
        Duration::from_millis(250),
        FREEZE + AFTER + Duration::from_secs(120),
    );
    let mut violations = Vec::new();
    let freeze = ApiFreeze::start()?;
    world.kill_speaker(owner)?;
    let started = Instant::now();
    world.start_speaker(owner)?;
    println!(
        "restarted the owner (node {owner}): first apply {:?} after its start, at frozen +{:?}",
        started.elapsed(),
        freeze.elapsed()
    );
    let resumed = world.metric_sum(owner, RESUMED)?;
    std::thread::sleep(Duration::from_secs(1));
    let settled_at = freeze.elapsed();
    if settled_at >= FREEZE {
        return Err(LabError::Invalid(format!(
            "the restarted speaker settled only at +{settled_at:?}, after the freeze"
        )));
    }
    while freeze.elapsed() < FREEZE {
        check_l2(
            &world,
            Some(owner),
            &format!("frozen +{:?}", freeze.elapsed()),
            &mut violations,
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let frozen = freeze.thaw()?;
    // The restarted speaker joins membership now, and the address may move back to it.
    world.wait_membership(&[1, 2], 2)?;
    std::thread::sleep(Duration::from_secs(3));
    let continued = Instant::now();
    while continued.elapsed() < AFTER {
        check_l2(
            &world,
            None,
            &format!("continued +{:?}", continued.elapsed()),
            &mut violations,
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let report = prober.finish();
    print!("{}", report.table());
    println!(
        "speaker SIGKILL + restart from its checkpoint during a {frozen:?} API freeze, layer 2: {} requests, {} lost, longest gap {:?}, {} violations",
        report.sent(),
        report.lost(),
        report.longest_gap(),
        violations.len()
    );
    assert_eq!(resumed, 1.0, "the speaker says it runs from its checkpoint");
    assert!(
        violations.is_empty(),
        "{}\n{}",
        violations.join("\n"),
        world.speaker_logs()
    );
    // The kill loses what was in flight to the owner until the other takes over.
    assert!(
        report.longest_gap() < Duration::from_secs(10),
        "a gap of {:?}:\n{}",
        report.longest_gap(),
        report.table()
    );
    Ok(())
}

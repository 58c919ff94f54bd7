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
//! - **Layer 2**: `chaos_l2.rs`, second test.
//!
//! A client sends requests to both addresses every 250 ms throughout; requests caught in
//! the instant of the kill may fail (the longest gap must stay under 5 s), none after.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 1.5 minutes.

mod bgp_support;
mod chaos_support;
mod common;

use std::time::{Duration, Instant};

use bgp_support::CONVERGE;
use chaos_support::{BgpChaos, Scratch, conclude_within, wait_checkpoints};
use herald_lab::chaos::ApiFreeze;
use herald_lab::{LabError, Result};

/// How long the API stays frozen; the restart happens at its beginning.
const FREEZE: Duration = Duration::from_secs(30);
/// How long the checks go on after the API answers again.
const AFTER: Duration = Duration::from_secs(10);
const RESUMED: &str = "herald_speaker_checkpoint_resumed";

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
    // Requests hashed to node 1 in the instant of the kill may fail; nothing longer.
    conclude_within(
        &chaos.world,
        &format!(
            "speaker SIGKILL + restart from its checkpoint during a {frozen:?} API freeze, BGP"
        ),
        &report,
        &violations,
        Duration::from_secs(5),
    )
}

//! Membership failure-detection benchmark: member killed → every other member has dropped it.
//!
//! 1. In-process on virtual time, 3 and 50 members, many runs each, with Herald's defaults
//!    and, as the reference measured in the same run, memberlist's LAN defaults (probe 1 s,
//!    timeout 500 ms, suspicion ×4; what MetalLB ships) on the same protocol code.
//! 2. Over real UDP between network namespaces, 3 speaker processes, if root and `ip` are
//!    available.
//!
//! `cargo bench -p herald-speaker --bench membership` (add `-- --quick`, or set CI, for the
//! few-run mode CI uses to prove it still works).

#[path = "../tests/support/membership_netns.rs"]
mod netns;

use std::time::Duration;

use herald_speaker::membership::MembershipConfig;
use herald_speaker::membership::simulation::SimulatedCluster;
use netns::NamespaceLab;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    if netns::run_speaker_if_asked() {
        return;
    }
    let quick = std::env::args().any(|arg| arg == "--quick") || std::env::var_os("CI").is_some();
    println!("# membership failure detection (member killed -> all others drop it)");
    println!(
        "{:<28} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "case", "members", "runs", "min", "p50", "p99", "max"
    );
    for (members, runs) in [
        (3, if quick { 5 } else { 200 }),
        (50, if quick { 2 } else { 40 }),
    ] {
        let ours = virtual_detection(members, runs, MembershipConfig::default());
        report("virtual, herald defaults", members, &ours);
        let reference = virtual_detection(members, runs, MembershipConfig::memberlist_lan());
        report("virtual, memberlist LAN", members, &reference);
        if let (Some(ours), Some(reference)) = (percentile(&ours, 50), percentile(&reference, 50)) {
            println!(
                "  p50 ratio memberlist-LAN / herald at {members} members: {:.1}x",
                reference.as_secs_f64() / ours.as_secs_f64().max(f64::EPSILON)
            );
        }
    }
    if netns::lab_available() {
        match udp_detection(if quick { 2 } else { 20 }) {
            Ok(samples) => report("real UDP, netns, defaults", 3, &samples),
            Err(error) => println!("real UDP in namespaces failed: {error}"),
        }
    } else {
        println!("real UDP in namespaces skipped: needs root and iproute2");
    }
}

fn virtual_detection(members: usize, runs: u64, config: MembershipConfig) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut rng = StdRng::seed_from_u64(members as u64);
    for run in 0..runs {
        let Ok(mut cluster) = SimulatedCluster::new(members, config.clone(), run) else {
            continue;
        };
        if cluster.start_all().is_err() {
            continue;
        }
        if cluster
            .run_until_within(Duration::from_secs(30), SimulatedCluster::converged)
            .is_none()
        {
            println!("  run {run}: {members} members did not converge");
            continue;
        }
        // Kill at a random phase of the probe cycles.
        let phase = rng.random_range(0..config.probe_period.as_micros().max(1) as u64 * 2);
        cluster.run_for(Duration::from_micros(phase));
        let victim = rng.random_range(0..members);
        cluster.kill(victim);
        match cluster.run_until_within(Duration::from_secs(60), |cluster| {
            cluster.all_others_see_down(victim)
        }) {
            Some(took) => samples.push(took),
            None => println!("  run {run}: member {victim} never dropped"),
        }
    }
    samples
}

fn udp_detection(runs: usize) -> Result<Vec<Duration>, String> {
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let mut lab = NamespaceLab::create(3)?;
    for index in 0..3 {
        lab.start_speaker(index, &exe, &[])?;
    }
    lab.wait_converged(Duration::from_secs(10))
        .ok_or("speakers did not converge")?;
    let mut samples = Vec::new();
    for run in 0..runs {
        std::thread::sleep(Duration::from_millis(300 + 37 * (run as u64 % 5)));
        let victim = run % 3;
        let name = NamespaceLab::node_name(victim);
        let killed = lab.kill_speaker(victim);
        let seen = lab
            .wait_until(Duration::from_secs(10), |_, live| !live.contains(&name))
            .ok_or("killed speaker never dropped")?;
        samples.push(seen.saturating_duration_since(killed));
        lab.start_speaker(victim, &exe, &[])?;
        // The restarted speaker is held out for the rejoin hold-down (3 s by default).
        lab.wait_converged(Duration::from_secs(20))
            .ok_or("restarted speaker did not rejoin")?;
    }
    Ok(samples)
}

fn percentile(samples: &[Duration], pct: usize) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last * pct).div_ceil(100)).copied()
}

fn report(case: &str, members: usize, samples: &[Duration]) {
    let show = |value: Option<Duration>| {
        value.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.0}ms", d.as_secs_f64() * 1e3),
        )
    };
    println!(
        "{:<28} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9}",
        case,
        members,
        samples.len(),
        show(samples.iter().min().copied()),
        show(percentile(samples, 50)),
        show(percentile(samples, 99)),
        show(samples.iter().max().copied()),
    );
}

//! Chaos in layer-2 mode: the kube-apiserver frozen must move no address (issue 11).
//!
//! Two speakers (layer 2 and forwarding on) and a dual-stack Service with an IPv4 and an
//! IPv6 address of the LAN's L2 range; the client sends requests to both every 250 ms. The
//! kube-apiserver is frozen (SIGSTOP) for 25 s — longer than the announcers' periodic
//! refresh and the speakers' request timeouts — then continued. Checked every second
//! throughout and after: the router's neighbour entry for each address keeps the MAC of the
//! node that owned it before (no move), exactly one speaker owns each address (the speakers'
//! `owned_addresses` sum to 2), no request is lost; once the API answers again the
//! current-announcer records still name the same nodes.
//!
//! The second test restarts the owner's speaker (SIGKILL) while the API is frozen, with an
//! on-node checkpoint (`--checkpoint-dir`). A resumed speaker stays out of layer 2 and
//! membership until the API answers: its layer-2 engine needs the current-announcer
//! records, which come from the API, and the first run of this test, when it rejoined
//! membership, left nobody announcing for 22 s (the other node gave the addresses way to
//! it). So the node that took over keeps both addresses: exactly one speaker owns each
//! (their `owned_addresses` sum to 2) for the rest of the freeze and after it, and the
//! restarted one forwards both Services from its checkpoint meanwhile.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 1.5 minutes each.

mod bgp_support;
mod chaos_support;
mod common;
mod l2_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp_support::CONVERGE;
use chaos_support::{Scratch, conclude, conclude_within, wait_checkpoints};
use common::{SERVICE_PORT, World, parse_ip};
use herald_lab::chaos::{ApiFreeze, Prober};
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{LabError, Result};

const V4: &str = "192.0.2.230";
const V6: &str = "2001:db8:1::1e6";
/// Longer than the announcers' refresh (10 s) and the speaker's request timeouts (10 s).
const FREEZE: Duration = Duration::from_secs(25);
/// How long the checks go on after the apiserver is back.
const AFTER: Duration = Duration::from_secs(15);

/// Checks once: the router maps each address to its owner's MAC (or has no resolved
/// entry at this instant), and the speakers own exactly the two addresses between them.
fn check(
    world: &World,
    owners: &[(IpAddr, usize)],
    label: &str,
    violations: &mut Vec<String>,
) -> Result<()> {
    for (address, owner) in owners {
        if let Some(node) = world.router_owner(*address)?
            && node != *owner
        {
            violations.push(format!(
                "{label}: {address} moved from node {owner} to node {node}"
            ));
        }
    }
    let owned: f64 = (1..=2)
        .map(|node| world.metric_sum(node, "herald_speaker_l2_owned_addresses"))
        .sum::<Result<f64>>()?;
    if owned != 2.0 {
        violations.push(format!(
            "{label}: the speakers own {owned} addresses between them, not 2"
        ));
    }
    Ok(())
}

/// Two speakers (with `speaker_args`) and a pod each (`pods`-1, `pods`-2), a dual-stack
/// Service at `v4` and `v6` answering; returns the world and each address with the node
/// its record names.
fn dual_stack_world(
    hint: &str,
    pods: &str,
    speaker_args: &[&str],
    v4: &str,
    v6: &str,
) -> Result<(World, Vec<(IpAddr, usize)>)> {
    let mut world = World::l2(hint, 2)?;
    world.speaker_args(speaker_args);
    world.add_pod(1, &format!("{pods}-1"), "app")?;
    world.add_pod(2, &format!("{pods}-2"), "app")?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2], 2)?;
    world.apply_service(
        &world.service("svc", "app", "Cluster").dual_stack(),
        &[v4, v6],
    )?;
    world.wait_ready_endpoints("svc", 4)?;
    let mut owners = Vec::new();
    for address in [parse_ip(v4)?, parse_ip(v6)?] {
        world.wait_get(address)?;
        let recorded = world.wait_any_record("svc", address)?;
        owners.push((address, recorded));
    }
    println!("owners: {owners:?}");
    Ok((world, owners))
}

/// A client sending a request to both addresses every 250 ms, for a freeze and after.
fn prober(world: &World, v4: IpAddr, v6: IpAddr) -> Prober {
    Prober::start(
        world.lab.client(),
        &[(v4, SERVICE_PORT), (v6, SERVICE_PORT)],
        Duration::from_secs(2),
        Duration::from_millis(250),
        FREEZE + AFTER + Duration::from_secs(120),
    )
}

#[test]
fn a_frozen_apiserver_moves_no_layer2_address() -> Result<()> {
    let (world, owners) = dual_stack_world("chaos-l2", "l2c", &[], V4, V6)?;
    let (v4, v6) = (owners[0].0, owners[1].0);
    let mut violations = Vec::new();
    check(&world, &owners, "before", &mut violations)?;

    let prober = prober(&world, v4, v6);
    let freeze = ApiFreeze::start()?;
    // Bounded: one check a second for FREEZE.
    while freeze.elapsed() < FREEZE {
        check(
            &world,
            &owners,
            &format!("frozen +{:?}", freeze.elapsed()),
            &mut violations,
        )?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let frozen = freeze.thaw()?;
    let continued = std::time::Instant::now();
    while continued.elapsed() < AFTER {
        check(
            &world,
            &owners,
            &format!("continued +{:?}", continued.elapsed()),
            &mut violations,
        )?;
        std::thread::sleep(Duration::from_secs(1));
    }
    for (address, owner) in &owners {
        let recorded = world.recorded_owner("svc", *address)?;
        if recorded.as_deref() != Some(world.node_name(*owner)?.as_str()) {
            violations.push(format!(
                "after: the record of {address} names {recorded:?}, not node {owner}"
            ));
        }
    }
    let report = prober.finish();
    conclude(
        &world,
        &format!("apiserver SIGSTOP {frozen:?}, layer 2"),
        &report,
        &violations,
    )
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
    let (mut world, owners) = dual_stack_world(
        "chaos-ckpt-l2",
        "l2k",
        &["--checkpoint-dir", &dir],
        L2_V4,
        L2_V6,
    )?;
    let (v4, v6) = (owners[0].0, owners[1].0);
    let owner = owners[0].1;
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

    let prober = prober(&world, v4, v6);
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
    let resumed = world.metric_sum(owner, "herald_speaker_checkpoint_resumed")?;
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
    assert_eq!(resumed, 1.0, "the speaker says it runs from its checkpoint");
    // The kill loses what was in flight to the owner until the other takes over.
    conclude_within(
        &world,
        &format!(
            "speaker SIGKILL + restart from its checkpoint during a {frozen:?} API freeze, layer 2"
        ),
        &report,
        &violations,
        Duration::from_secs(10),
    )
}

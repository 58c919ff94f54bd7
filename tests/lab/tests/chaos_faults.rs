//! Chaos: the fault classes beyond an API freeze, one after another in one BGP lab
//! (issue 11). The BGP chaos world (`chaos_support::BgpChaos`: two speakers, TCP-MD5
//! sessions to FRR, an IPv4 and an IPv6 address, a client sending requests every 250 ms)
//! plus the real `herald-controller`. Each fault has its own prober, so its losses and gap
//! are its own:
//!
//! 1. **Control plane SIGKILLed and restarted**: the kube-apiserver is SIGKILLed, which
//!    takes herald-cp's supervisor down with it, etcd included (etcd runs inside the
//!    supervisor, so it cannot be restarted alone: this is also the etcd restart), and the
//!    control plane is started again on the same data. Invariants all the time: no session
//!    reset, the router's routes exactly the desired ones, no request lost.
//! 2. **Controller SIGKILL** and start again: no Service or pool written (resourceVersions
//!    unchanged), no address moved, nothing on the wire changes, no request lost.
//! 3. **Speaker SIGTERM** and start again: the node withdraws its routes (the desired
//!    routes become the other node's alone) and comes back; no request lost (a graceful
//!    stop withdraws before it stops forwarding), no other session reset.
//! 4. **FRR restarted**: the router loses its sessions and routes (a reset the fault
//!    justifies); the speakers re-establish and the routes come back within the convergence
//!    deadline; no request lost once they are back.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 2.5 minutes.

mod bgp_support;
mod chaos_support;
mod common;

use std::time::{Duration, Instant};

use bgp_support::CONVERGE;
use chaos_support::{BgpChaos, compare_versions, conclude, versions, wait_controller_restored};
use herald_lab::chaos::apiserver_pid;
use herald_lab::{ControlPlane, LabError, Result, netns};

/// How long the checks go on after each fault.
const AFTER: Duration = Duration::from_secs(8);

/// One line of the summary.
fn line(fault: &str, report: &herald_lab::chaos::ProbeReport) -> String {
    format!(
        "{fault}: {} sent, {} lost, longest gap {:?}",
        report.sent(),
        report.lost(),
        report.longest_gap()
    )
}

#[test]
fn control_plane_controller_speaker_and_router_restarts_keep_the_invariants() -> Result<()> {
    let mut chaos = BgpChaos::start("chaos-faults")?;
    let mut controller = chaos.world.start_controller(1)?;
    wait_controller_restored(&chaos.world, 1)?;
    let before = versions(&chaos.world)?;
    let mut summary = Vec::new();

    // 1. The control plane SIGKILLed (apiserver, then the supervisor and etcd with it) and
    //    started again.
    {
        let prober = chaos.prober(Duration::from_secs(400));
        let mut violations = Vec::new();
        let started = Instant::now();
        netns::signal(apiserver_pid()?, "KILL")?;
        chaos.hold("control plane down", AFTER, &mut violations)?;
        ControlPlane::ensure()?;
        let back = started.elapsed();
        chaos.hold("control plane back", AFTER, &mut violations)?;
        let report = prober.finish();
        summary.push(line(
            &format!("control plane SIGKILL + restart (back after {back:?})"),
            &report,
        ));
        conclude(
            &chaos.world,
            "control plane SIGKILL + restart",
            &report,
            &violations,
        )?;
    }

    // 2. The controller SIGKILLed and started again.
    {
        let prober = chaos.prober(Duration::from_secs(200));
        let mut violations = Vec::new();
        controller.kill()?;
        drop(controller);
        chaos.hold("controller killed", Duration::from_secs(2), &mut violations)?;
        controller = chaos.world.start_controller(1)?;
        wait_controller_restored(&chaos.world, 1)?;
        chaos.hold("controller back", AFTER, &mut violations)?;
        // Across the control plane's and the controller's restarts.
        compare_versions(&before, &versions(&chaos.world)?, &mut violations);
        let report = prober.finish();
        summary.push(line("controller SIGKILL + restart", &report));
        conclude(
            &chaos.world,
            "controller SIGKILL + restart",
            &report,
            &violations,
        )?;
    }

    // 3. A speaker stopped with SIGTERM and started again.
    {
        let prober = chaos.prober(Duration::from_secs(200));
        let mut violations = Vec::new();
        let stopped = Instant::now();
        let status = chaos
            .world
            .speaker_mut(2)?
            .terminate(Duration::from_secs(15))?;
        let stop_took = stopped.elapsed();
        let node1 = chaos.world.lan_v4(1)?;
        let node1_v6 = chaos.world.lan_v6(1)?;
        for (prefix, gateway) in [
            (format!("{}/32", chaos_support::BGP_V4), &node1),
            (format!("{}/128", chaos_support::BGP_V6), &node1_v6),
        ] {
            let have = chaos.world.gateways_of(&prefix)?;
            if have != [gateway.clone()] {
                violations.push(format!(
                    "after the SIGTERM: {prefix} via {have:?}, desired only node 1"
                ));
            }
        }
        chaos.world.start_speaker(2)?;
        for (prefix, gateways) in &chaos.desired {
            chaos.world.wait_gateways(prefix, gateways, CONVERGE)?;
        }
        // Node 2's session closed with the stop: justified.
        chaos.baseline = chaos.world.session_counters()?;
        chaos.hold("speaker back", AFTER, &mut violations)?;
        let report = prober.finish();
        summary.push(line(
            &format!("speaker SIGTERM ({status}, stopped in {stop_took:?}) + restart"),
            &report,
        ));
        conclude(
            &chaos.world,
            "speaker SIGTERM + restart",
            &report,
            &violations,
        )?;
    }

    // 4. FRR restarted: the router's sessions and routes go away with it.
    {
        let stopped = Instant::now();
        chaos.world.lab.stop_frr()?;
        std::thread::sleep(Duration::from_secs(2));
        chaos.world.lab.start_frr_again()?;
        for (prefix, gateways) in &chaos.desired {
            chaos.world.wait_gateways(prefix, gateways, CONVERGE)?;
        }
        let converged = stopped.elapsed();
        let frr = chaos.world.lab.frr()?;
        for node in 1..=2 {
            frr.wait_established(common::parse_ip(&chaos.world.lan_v4(node)?)?, CONVERGE)?;
        }
        chaos.baseline = chaos.world.session_counters()?;
        let prober = chaos.prober(Duration::from_secs(200));
        let mut violations = Vec::new();
        chaos.hold("FRR back", AFTER, &mut violations)?;
        let report = prober.finish();
        summary.push(line(
            &format!("FRR restart (routes back {converged:?} after the stop), afterwards"),
            &report,
        ));
        conclude(&chaos.world, "FRR restart", &report, &violations)?;
    }

    if !controller.is_running() {
        return Err(LabError::Invalid("the controller exited".into()));
    }
    for line in &summary {
        println!("{line}");
    }
    Ok(())
}

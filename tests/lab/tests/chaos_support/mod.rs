//! What the chaos tests add to the BGP world (`bgp_support`): the router's session
//! counters per neighbor (a reset shows as a dropped connection), a ready world with an
//! IPv4 and an IPv6 address announced over TCP-MD5 sessions ([`BgpChaos`]), and the
//! invariants checked while a fault is on: no session reset, the router's routes equal the
//! desired ones, no request lost.
//!
//! I/O: `vtysh` in the router's namespace and `ip` through the lab; the checks are plain
//! comparisons.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_lab::chaos::{ApiFreeze, Fault, LinkFault, ProbeReport, Prober, Step};
use herald_lab::{LabError, Result};
use serde_json::{Value, json};

use crate::bgp_support::{CONVERGE, PASSWORD};
use crate::common::{SERVICE_PORT, World, parse_ip};

/// One neighbor's session counters as the router keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounters {
    pub established: u64,
    pub dropped: u64,
    pub is_established: bool,
}

impl World {
    /// The router's counters of every neighbor (`show bgp neighbors json`), by address.
    pub fn session_counters(&self) -> Result<BTreeMap<String, SessionCounters>> {
        let neighbors: Value = self.lab.frr()?.vtysh_json("show bgp neighbors json")?;
        let object = neighbors.as_object().ok_or_else(|| LabError::Parse {
            what: "show bgp neighbors json".into(),
            detail: format!("not an object: {neighbors}"),
        })?;
        Ok(object
            .iter()
            .map(|(address, n)| {
                (
                    address.clone(),
                    SessionCounters {
                        established: n["connectionsEstablished"].as_u64().unwrap_or(0),
                        dropped: n["connectionsDropped"].as_u64().unwrap_or(0),
                        is_established: n["bgpState"].as_str() == Some("Established"),
                    },
                )
            })
            .collect())
    }

    /// The router's kernel route next hops for `prefix` (empty: no route).
    pub fn gateways_of(&self, prefix: &str) -> Result<Vec<String>> {
        let mut gateways = self
            .router_route(prefix)?
            .map(|r| r.gateways())
            .unwrap_or_default();
        gateways.sort();
        Ok(gateways)
    }
}

/// Neighbors whose session went down between two readings (a drop counted, or not up now).
pub fn resets(
    before: &BTreeMap<String, SessionCounters>,
    after: &BTreeMap<String, SessionCounters>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(address, b)| {
            after
                .get(*address)
                .is_none_or(|a| a.dropped > b.dropped || !a.is_established)
        })
        .map(|(address, _)| address.clone())
        .collect()
}

/// The BGP chaos world: two speakers with TCP-MD5 sessions (password from a Secret) to
/// FRR, an IPv4 and an IPv6 Service address announced by both, and what the router must
/// show all the time.
pub struct BgpChaos {
    pub world: World,
    /// The client's targets: the IPv4 and the IPv6 Service address, port 80.
    pub targets: Vec<(IpAddr, u16)>,
    /// Each announced prefix with the next hops the router must have for it.
    pub desired: Vec<(String, Vec<String>)>,
    /// The router's session counters once everything was up.
    pub baseline: BTreeMap<String, SessionCounters>,
}

/// The IPv4 and IPv6 Service addresses of [`BgpChaos`].
pub const BGP_V4: &str = "203.0.113.20";
pub const BGP_V6: &str = "2001:db8:100::20";

impl BgpChaos {
    /// Sets the world up and waits until the router has both routes via both nodes and the
    /// client reaches both addresses.
    pub fn start(hint: &str) -> Result<BgpChaos> {
        Self::start_with(hint, true, &[])
    }

    /// [`BgpChaos::start`], with TCP-MD5 (`md5`) or without, and `speaker_args` added to
    /// every speaker's command line.
    pub fn start_with(hint: &str, md5: bool, speaker_args: &[&str]) -> Result<BgpChaos> {
        let mut world = World::bgp(hint, 2)?;
        world.speaker_args(speaker_args);
        let mut config = world.router_config();
        if md5 {
            config = config.each_neighbor(|n| n.password = Some(PASSWORD.to_string()));
        }
        world.start_frr(&config)?;
        let peer = if md5 {
            world.password_secret("bgp-auth", PASSWORD)?;
            json!({"passwordSecret": {"name": "bgp-auth"}})
        } else {
            json!({})
        };
        world.peer("router", "192.0.2.1", peer)?;
        world.advertise(json!({}))?;
        world.add_pod(1, "web-1", "web")?;
        world.add_pod(2, "web-2", "web")?;
        world.apply_service(&world.service("web4", "web", "Cluster"), &[BGP_V4])?;
        let mut web6 = world.service("web6", "web", "Cluster");
        web6.ip_family_policy = Some("SingleStack".into());
        web6.ip_families = vec!["IPv6".into()];
        world.apply_service(&web6, &[BGP_V6])?;
        world.wait_ready_endpoints("web4", 2)?;
        world.wait_ready_endpoints("web6", 2)?;
        world.start_all_speakers()?;

        let frr = world.lab.frr()?;
        for node in 1..=2 {
            frr.wait_established(parse_ip(&world.lan_v4(node)?)?, CONVERGE)?;
        }
        let mut v4 = vec![world.lan_v4(1)?, world.lan_v4(2)?];
        v4.sort();
        let mut v6 = vec![world.lan_v6(1)?, world.lan_v6(2)?];
        v6.sort();
        let desired = vec![(format!("{BGP_V4}/32"), v4), (format!("{BGP_V6}/128"), v6)];
        for (prefix, gateways) in &desired {
            world.wait_gateways(prefix, gateways, CONVERGE)?;
        }
        let targets = vec![
            (parse_ip(BGP_V4)?, SERVICE_PORT),
            (parse_ip(BGP_V6)?, SERVICE_PORT),
        ];
        for (ip, port) in &targets {
            world.lab.wait_client_get(*ip, *port, CONVERGE)?;
        }
        let baseline = world.session_counters()?;
        Ok(BgpChaos {
            world,
            targets,
            desired,
            baseline,
        })
    }

    /// A client sending a request to each target every 250 ms until finished (bounded by
    /// `max`).
    pub fn prober(&self, max: Duration) -> Prober {
        Prober::start(
            self.world.lab.client(),
            &self.targets,
            Duration::from_secs(2),
            Duration::from_millis(250),
            max,
        )
    }

    /// Checks the invariants once: no session reset since the baseline, the router's routes
    /// exactly the desired ones. Violations are added to `violations`, labelled.
    pub fn check(&self, label: &str, violations: &mut Vec<String>) -> Result<()> {
        let now = self.world.session_counters()?;
        for reset in resets(&self.baseline, &now) {
            violations.push(format!("{label}: session with {reset} reset: {now:?}"));
        }
        for (prefix, gateways) in &self.desired {
            let have = self.world.gateways_of(prefix)?;
            if &have != gateways {
                violations.push(format!(
                    "{label}: route {prefix} via {have:?}, desired {gateways:?}"
                ));
            }
        }
        Ok(())
    }

    /// Checks once a second for `duration` (bounded), labelling each with `phase`.
    pub fn hold(
        &self,
        phase: &str,
        duration: Duration,
        violations: &mut Vec<String>,
    ) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < duration {
            self.check(&format!("{phase} +{:?}", started.elapsed()), violations)?;
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }
}

/// Prints the fault's table and line; fails with the violations and speaker logs, if any.
fn report_and_check(world: &World, fault: &str, report: &ProbeReport, violations: &[String]) {
    print!("{}", report.table());
    println!(
        "{fault}: {} requests, {} lost, longest gap {:?}, {} invariant violations",
        report.sent(),
        report.lost(),
        report.longest_gap(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{fault}: the data plane changed:\n{}\n{}",
        violations.join("\n"),
        world.speaker_logs()
    );
}

/// [`conclude`] for a fault that justifies losing what was in flight at its instant: the
/// client's longest gap must stay under `max_gap` instead of no request lost.
pub fn conclude_within(
    world: &World,
    fault: &str,
    report: &ProbeReport,
    violations: &[String],
    max_gap: Duration,
) -> Result<()> {
    report_and_check(world, fault, report, violations);
    assert!(
        report.longest_gap() < max_gap,
        "{fault}: a gap of {:?}:\n{}",
        report.longest_gap(),
        report.table()
    );
    Ok(())
}

/// Prints the fault's line and fails with the violations and speaker logs, if any.
pub fn conclude(
    world: &World,
    fault: &str,
    report: &ProbeReport,
    violations: &[String],
) -> Result<()> {
    report_and_check(world, fault, report, violations);
    assert_eq!(
        report.lost(),
        0,
        "{fault}: requests lost:\n{}",
        report.table()
    );
    Ok(())
}

/// A fault that is on; dropping it ends it.
pub enum Injected {
    Freeze(ApiFreeze),
    Links(Vec<LinkFault>),
}

impl BgpChaos {
    /// Turns `step`'s fault on.
    pub fn inject(&self, step: &Step) -> Result<Injected> {
        Ok(match step.fault {
            Fault::ApiserverStop => Injected::Freeze(ApiFreeze::start()?),
            Fault::LossyApiLink => Injected::Links(
                self.world
                    .lab
                    .nodes()
                    .iter()
                    .map(|node| LinkFault::lossy(&node.netns, "cp0", 30))
                    .collect::<Result<_>>()?,
            ),
            Fault::NodeCutFromApi => Injected::Links(vec![LinkFault::down(
                &self.world.lab.node(step.node)?.netns,
                "cp0",
            )?]),
        })
    }

    /// Resident memory of every running speaker, in KiB (`VmRSS`).
    pub fn speaker_rss(&mut self) -> Vec<u64> {
        self.world
            .speakers_mut()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{}/status", p.pid()))
                    .ok()
                    .and_then(|status| {
                        status
                            .lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .and_then(|kib| kib.parse().ok())
                    })
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A scratch directory for the speakers' checkpoints (`--checkpoint-dir`), removed when
/// dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(hint: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "herald-lab-checkpoint-{hint}-{}",
            std::process::id()
        )))
    }

    pub fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until every speaker of `nodes` has written its checkpoint.
pub fn wait_checkpoints(world: &World, nodes: &[usize]) -> Result<()> {
    herald_lab::wait::poll_until(
        "the speakers' first checkpoints",
        CONVERGE,
        Duration::from_millis(200),
        || {
            let mut writes = Vec::new();
            for &node in nodes {
                writes.push(
                    world
                        .metric_sum(node, "herald_speaker_checkpoint_writes_total")
                        .unwrap_or(0.0),
                );
            }
            Ok(if writes.iter().all(|w| *w >= 1.0) {
                herald_lab::wait::Poll::Ready(())
            } else {
                herald_lab::wait::Poll::Pending(format!("writes {writes:?}"))
            })
        },
    )
}

/// The metric `name` of the controller running in node `node`'s namespace (its metrics on
/// 127.0.0.1:7472).
pub fn controller_metric(world: &World, node: usize, name: &str) -> Result<f64> {
    let metrics = world.lab.exec_in_node(
        node,
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://127.0.0.1:7472/metrics",
        ],
    )?;
    Ok(herald_lab::herald::metric_sum(&metrics, name))
}

/// Waits until the controller in `node` has taken both addresses of [`BgpChaos`] over
/// (a start rebuilds from status), then lets its first writes settle.
pub fn wait_controller_restored(world: &World, node: usize) -> Result<()> {
    herald_lab::wait::poll_until(
        "the controller to restore both addresses",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            // Not serving yet (a fresh start) reads as not restored yet.
            Ok(
                match controller_metric(world, node, "herald_controller_restored_addresses") {
                    Ok(restored) if restored >= 2.0 => herald_lab::wait::Poll::Ready(()),
                    other => herald_lab::wait::Poll::Pending(format!("restored {other:?}")),
                },
            )
        },
    )?;
    std::thread::sleep(Duration::from_secs(5));
    Ok(())
}

/// resourceVersion and ingress addresses of [`BgpChaos`]'s two Services, and the pool's
/// resourceVersion: any write to them changes this.
pub fn versions(world: &World) -> Result<Vec<(String, String)>> {
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

/// Adds a violation for each of `before` that `after` shows written.
pub fn compare_versions(
    before: &[(String, String)],
    after: &[(String, String)],
    violations: &mut Vec<String>,
) {
    for ((what, was), (_, is)) in before.iter().zip(after) {
        if was != is {
            violations.push(format!("{what} was written: {was} -> {is}"));
        }
    }
}

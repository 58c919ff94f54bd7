//! Fault injection for the chaos tests: the control plane's processes frozen, killed or
//! slowed, and a client that sends requests continuously while a fault is on.
//!
//! - [`apiserver_pid`] finds the `herald-cp kube-apiserver` child of the shared control
//!   plane; [`ApiFreeze`] stops it with SIGSTOP and always continues it (SIGCONT) when
//!   dropped, also while unwinding from a failed assertion, so a failed test never leaves the
//!   shared control plane frozen.
//! - [`LinkFault`] makes a link lossy (nftables) or takes it down, undone when dropped.
//! - [`Prober`] is a bounded background thread that sends one HTTP request from the client
//!   namespace to each target in turn and records every outcome with its time;
//!   [`ProbeReport`] sums them up (sent, lost, longest gap) — pure.
//!
//! I/O: `/proc` reads, `kill(1)`, curl in the client namespace.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::kube::ControlPlane;
use crate::netns::{self, Netns};
use crate::topology::http_get_from;
use crate::{LabError, Result};

/// Processes running `binary` whose first argument is `component` (the control plane's
/// children are the `herald-cp` executable started again as `herald-cp <component> ...`).
fn component_pids(binary: &Path, component: &str) -> Vec<u32> {
    let Ok(binary) = binary.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline.split(|b| *b == 0).nth(1) == Some(component.as_bytes())
            })
        })
        .collect()
}

/// The pid of the shared control plane's kube-apiserver.
pub fn apiserver_pid() -> Result<u32> {
    let binary = ControlPlane::binary()?;
    let pids = component_pids(&binary, "kube-apiserver");
    match pids.as_slice() {
        [pid] => Ok(*pid),
        _ => Err(LabError::Invalid(format!(
            "expected one kube-apiserver process of {}, found {pids:?}",
            binary.display()
        ))),
    }
}

/// The kube-apiserver frozen with SIGSTOP; continued (SIGCONT) on [`ApiFreeze::thaw`] or
/// when dropped.
#[derive(Debug)]
pub struct ApiFreeze {
    pid: u32,
    since: Instant,
    thawed: bool,
}

impl ApiFreeze {
    /// Freezes the kube-apiserver now.
    pub fn start() -> Result<ApiFreeze> {
        let pid = apiserver_pid()?;
        netns::signal(pid, "STOP")?;
        Ok(ApiFreeze {
            pid,
            since: Instant::now(),
            thawed: false,
        })
    }

    /// How long it has been frozen.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    /// Continues the apiserver; returns how long it was frozen.
    pub fn thaw(mut self) -> Result<Duration> {
        self.thawed = true;
        netns::signal(self.pid, "CONT")?;
        Ok(self.since.elapsed())
    }
}

impl Drop for ApiFreeze {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = netns::signal(self.pid, "CONT");
        }
    }
}

/// A fault on a link inside a namespace (random loss, or the link down), removed when
/// dropped.
#[derive(Debug)]
pub struct LinkFault {
    netns: Netns,
    dev: String,
    kind: LinkFaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkFaultKind {
    Lossy,
    Down,
}

/// The nftables table of [`LinkFault::lossy`].
const CHAOS_TABLE: &str = "herald_chaos";

impl LinkFault {
    /// Drops `percent` % of the packets in each direction on `dev` in `netns`, at random
    /// (an nftables table of its own, `inet herald_chaos`). The lab kernel has no netem
    /// qdisc, so this loss, which TCP turns into retransmission delays of seconds, is the
    /// lab's "slow, lossy API".
    pub fn lossy(netns: &Netns, dev: &str, percent: u8) -> Result<LinkFault> {
        let percent = percent.min(100);
        let ruleset = format!(
            "table inet {CHAOS_TABLE} {{\n\
             chain out {{ type filter hook output priority 0; oifname \"{dev}\" numgen random mod 100 < {percent} drop; }}\n\
             chain in {{ type filter hook input priority 0; iifname \"{dev}\" numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let out = netns
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(ruleset.as_bytes())?;
                }
                child.wait_with_output()
            })
            .map_err(|e| LabError::io(format!("running nft in {}", netns.name()), e))?;
        if !out.status.success() {
            return Err(LabError::CommandFailed {
                command: format!("nft -f - (in {})", netns.name()),
                status: out.status.to_string(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(LinkFault {
            netns: Netns::existing(netns.name()),
            dev: dev.to_string(),
            kind: LinkFaultKind::Lossy,
        })
    }

    /// Takes `dev` in `netns` down (e.g. a node's control-plane link: cut off from the API
    /// but not from the LAN).
    pub fn down(netns: &Netns, dev: &str) -> Result<LinkFault> {
        netns.set_link(dev, false)?;
        Ok(LinkFault {
            netns: Netns::existing(netns.name()),
            dev: dev.to_string(),
            kind: LinkFaultKind::Down,
        })
    }
}

impl Drop for LinkFault {
    fn drop(&mut self) {
        let _ = match self.kind {
            LinkFaultKind::Lossy => self
                .netns
                .exec(&["nft", "delete", "table", "inet", CHAOS_TABLE])
                .map(|_| ()),
            LinkFaultKind::Down => self.netns.set_link(&self.dev, true),
        };
    }
}

/// One request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// When it was sent, from the prober's start.
    pub at: Duration,
    /// Index of the target in the prober's list.
    pub target: usize,
    pub ok: bool,
}

/// Requests sent and lost for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetReport {
    pub sent: usize,
    pub lost: usize,
    /// Longest time from a successful request to the next successful one (or to the end).
    pub longest_gap: Duration,
}

/// Every target's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeReport {
    pub targets: Vec<(String, TargetReport)>,
    pub probes: Vec<Probe>,
}

impl ProbeReport {
    /// Sums up `probes` for `targets` (pure).
    pub fn from_probes(targets: &[String], probes: Vec<Probe>) -> ProbeReport {
        let reports = targets
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let mine: Vec<&Probe> = probes.iter().filter(|p| p.target == index).collect();
                let mut report = TargetReport {
                    sent: mine.len(),
                    lost: mine.iter().filter(|p| !p.ok).count(),
                    longest_gap: Duration::ZERO,
                };
                let mut last_ok: Option<Duration> = None;
                let mut first_failure_before_ok: Option<Duration> = None;
                for probe in &mine {
                    if probe.ok {
                        let from = last_ok.or(first_failure_before_ok);
                        if let Some(from) = from {
                            report.longest_gap = report.longest_gap.max(probe.at - from);
                        }
                        last_ok = Some(probe.at);
                    } else if last_ok.is_none() && first_failure_before_ok.is_none() {
                        first_failure_before_ok = Some(probe.at);
                    }
                }
                if let (Some(end), Some(from)) = (
                    mine.last().map(|p| p.at),
                    last_ok.or(first_failure_before_ok),
                ) && mine.last().is_some_and(|p| !p.ok)
                {
                    report.longest_gap = report.longest_gap.max(end - from);
                }
                (name.clone(), report)
            })
            .collect();
        ProbeReport {
            targets: reports,
            probes,
        }
    }

    /// Requests lost, over every target.
    pub fn lost(&self) -> usize {
        self.targets.iter().map(|(_, r)| r.lost).sum()
    }

    /// Requests sent, over every target.
    pub fn sent(&self) -> usize {
        self.targets.iter().map(|(_, r)| r.sent).sum()
    }

    /// The longest gap of any target.
    pub fn longest_gap(&self) -> Duration {
        self.targets
            .iter()
            .map(|(_, r)| r.longest_gap)
            .max()
            .unwrap_or_default()
    }

    /// One line per target.
    pub fn table(&self) -> String {
        let mut out = String::from("target                         sent  lost  longest gap\n");
        for (name, r) in &self.targets {
            out.push_str(&format!(
                "{name:<30} {:>5} {:>5}  {:?}\n",
                r.sent, r.lost, r.longest_gap
            ));
        }
        out
    }
}

/// A client sending requests to every target in turn, from a background thread, until
/// stopped (or `max_duration` passed: the loop is bounded).
pub struct Prober {
    targets: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Probe>>>,
}

impl Prober {
    /// Starts probing `targets` (`ip`, port) from `client`, each request with `timeout`, one
    /// round every `interval`.
    pub fn start(
        client: &Netns,
        targets: &[(IpAddr, u16)],
        timeout: Duration,
        interval: Duration,
        max_duration: Duration,
    ) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let names: Vec<String> = targets
            .iter()
            .map(|(ip, port)| match ip {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            })
            .collect();
        let client = Netns::existing(client.name());
        let targets = targets.to_vec();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut probes = Vec::new();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < max_duration {
                let round = Instant::now();
                for (index, (ip, port)) in targets.iter().enumerate() {
                    let at = started.elapsed();
                    let ok = http_get_from(&client, *ip, *port, timeout).is_ok();
                    probes.push(Probe {
                        at,
                        target: index,
                        ok,
                    });
                }
                if let Some(rest) = interval.checked_sub(round.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            probes
        });
        Prober {
            targets: names,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and sums up.
    pub fn finish(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        let probes = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        ProbeReport::from_probes(&self.targets, probes)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(secs: u64, ok: bool) -> Probe {
        Probe {
            at: Duration::from_secs(secs),
            target: 0,
            ok,
        }
    }

    #[test]
    fn a_run_without_loss_has_gaps_of_the_probe_interval() {
        let report = ProbeReport::from_probes(
            &["a".into()],
            vec![probe(0, true), probe(1, true), probe(2, true)],
        );
        assert_eq!(report.sent(), 3);
        assert_eq!(report.lost(), 0);
        assert_eq!(report.longest_gap(), Duration::from_secs(1));
    }

    #[test]
    fn lost_requests_widen_the_gap_between_successes_and_to_the_end() {
        let report = ProbeReport::from_probes(
            &["a".into()],
            vec![
                probe(0, true),
                probe(1, false),
                probe(2, false),
                probe(3, true),
            ],
        );
        assert_eq!(report.lost(), 2);
        assert_eq!(report.longest_gap(), Duration::from_secs(3));
        let trailing = ProbeReport::from_probes(
            &["a".into()],
            vec![probe(0, true), probe(1, true), probe(6, false)],
        );
        assert_eq!(trailing.longest_gap(), Duration::from_secs(5));
    }

    #[test]
    fn targets_are_counted_apart() {
        let mut probes = vec![probe(0, true), probe(1, true)];
        probes.push(Probe {
            at: Duration::from_secs(0),
            target: 1,
            ok: false,
        });
        let report = ProbeReport::from_probes(&["a".into(), "b".into()], probes);
        assert_eq!(report.targets[0].1.lost, 0);
        assert_eq!(report.targets[1].1.lost, 1);
        assert_eq!(report.targets[1].1.sent, 1);
    }
}

/// The faults of a random chaos sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The kube-apiserver frozen with SIGSTOP.
    ApiserverStop,
    /// Every node's control-plane link dropping 30% of the packets.
    LossyApiLink,
    /// One node's control-plane link down (cut from the API, not from the LAN).
    NodeCutFromApi,
}

impl Fault {
    pub const ALL: [Fault; 3] = [
        Fault::ApiserverStop,
        Fault::LossyApiLink,
        Fault::NodeCutFromApi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ApiserverStop => "apiserver SIGSTOP",
            Fault::LossyApiLink => "API link 30% loss",
            Fault::NodeCutFromApi => "node cut from API",
        }
    }
}

/// One step of a chaos sequence: a fault held for `length`, then `pause` without a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    pub length: Duration,
    pub pause: Duration,
    /// Which node a per-node fault hits (1-based, below the node count).
    pub node: usize,
}

/// SplitMix64: a small, well-known generator; the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high.saturating_sub(low) + 1)
    }
}

/// A random sequence of faults for `seed` filling `duration` (pure): each fault 10-40 s,
/// each followed by 10-20 s without a fault.
pub fn schedule(seed: u64, duration: Duration, nodes: usize) -> Vec<Step> {
    let mut random = SplitMix64::new(seed);
    let mut steps = Vec::new();
    let mut total = Duration::ZERO;
    // Bounded: every step is at least 20 s long.
    while total < duration {
        let fault = Fault::ALL[(random.next_u64() % Fault::ALL.len() as u64) as usize];
        let step = Step {
            fault,
            length: Duration::from_secs(random.between(10, 40)),
            pause: Duration::from_secs(random.between(10, 20)),
            node: 1 + (random.next_u64() % nodes.max(1) as u64) as usize,
        };
        total += step.length + step.pause;
        steps.push(step);
    }
    steps
}

/// One row of the chaos table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultRow {
    pub count: usize,
    pub sent: usize,
    pub lost: usize,
    pub longest_gap: Duration,
    pub violations: usize,
}

/// The chaos table: per fault, how often, requests sent and lost while it was on (and in
/// the pause after it), the longest gap, invariant violations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultTable {
    pub rows: std::collections::BTreeMap<Fault, FaultRow>,
}

impl FaultTable {
    /// Adds one step's figures.
    pub fn add(&mut self, fault: Fault, report: &ProbeReport, violations: usize) {
        let row = self.rows.entry(fault).or_default();
        row.count += 1;
        row.sent += report.sent();
        row.lost += report.lost();
        row.longest_gap = row.longest_gap.max(report.longest_gap());
        row.violations += violations;
    }

    pub fn violations(&self) -> usize {
        self.rows.values().map(|r| r.violations).sum()
    }

    pub fn lost(&self) -> usize {
        self.rows.values().map(|r| r.lost).sum()
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<20} {:>5} {:>9} {:>6} {:>12} {:>10}\n",
            "fault", "count", "requests", "lost", "longest gap", "violations"
        );
        for (fault, row) in &self.rows {
            out.push_str(&format!(
                "{:<20} {:>5} {:>9} {:>6} {:>11.2}s {:>10}\n",
                fault.name(),
                row.count,
                row.sent,
                row.lost,
                row.longest_gap.as_secs_f64(),
                row.violations
            ));
        }
        out
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_another() {
        let a = schedule(7, Duration::from_secs(600), 2);
        assert_eq!(a, schedule(7, Duration::from_secs(600), 2));
        assert_ne!(a, schedule(8, Duration::from_secs(600), 2));
    }

    #[test]
    fn a_sequence_fills_the_duration_with_bounded_steps_on_existing_nodes() {
        let steps = schedule(42, Duration::from_secs(3600), 3);
        let total: Duration = steps.iter().map(|s| s.length + s.pause).sum();
        assert!(total >= Duration::from_secs(3600));
        assert!(total < Duration::from_secs(3600 + 60));
        for step in &steps {
            assert!((10..=40).contains(&step.length.as_secs()), "{step:?}");
            assert!((10..=20).contains(&step.pause.as_secs()), "{step:?}");
            assert!((1..=3).contains(&step.node), "{step:?}");
        }
        for fault in Fault::ALL {
            assert!(
                steps.iter().any(|s| s.fault == fault),
                "{fault:?} never drawn"
            );
        }
    }

    #[test]
    fn the_table_sums_steps_per_fault() {
        let report = ProbeReport::from_probes(
            &["a".into()],
            vec![
                Probe {
                    at: Duration::ZERO,
                    target: 0,
                    ok: true,
                },
                Probe {
                    at: Duration::from_secs(1),
                    target: 0,
                    ok: false,
                },
                Probe {
                    at: Duration::from_secs(2),
                    target: 0,
                    ok: true,
                },
            ],
        );
        let mut table = FaultTable::default();
        table.add(Fault::ApiserverStop, &report, 0);
        table.add(Fault::ApiserverStop, &report, 1);
        let row = &table.rows[&Fault::ApiserverStop];
        assert_eq!(
            (row.count, row.sent, row.lost, row.violations),
            (2, 6, 2, 1)
        );
        assert_eq!(row.longest_gap, Duration::from_secs(2));
        assert!(table.render().contains("apiserver SIGSTOP"));
        assert_eq!(table.violations(), 1);
    }
}

/// A duration as people write it: `90`, `90s`, `15m`, `2h` (pure).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| LabError::Invalid(format!("not a duration: {text:?}")))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| LabError::Invalid(format!("not a duration (use s, m or h): {text:?}")))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m").ok(), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h").ok(), Some(Duration::from_secs(7200)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("h").is_err());
    }
}

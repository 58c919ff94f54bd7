//! A network-namespace lab for the membership driver: one namespace holding a bridge (the
//! LAN) and one namespace per node, each with a veth on that bridge and an address in
//! 192.0.2.0/24 (DESIGN.md's node LAN; no route anywhere else). Each node runs a real speaker
//! membership process (this very executable, re-run with an environment variable naming its
//! role) that prints its live set on every change; the lab reads those lines and timestamps
//! them. Dropping the lab kills the processes and deletes the namespaces, test failure or not.
//!
//! Shared by `tests/membership_udp.rs` and `benches/membership.rs` through `#[path]`.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_speaker::membership::{
    ClusterKeys, DEFAULT_MEMBERSHIP_PORT, DriverConfig, MembershipConfig, MembershipDriver,
};

/// Environment variable that turns this executable into a lab speaker:
/// `name|bind address|seed,seed,…`.
pub const SPEAKER_ENV: &str = "HERALD_MEMBERSHIP_LAB_SPEAKER";
/// Line prefix a lab speaker prints before its live set.
const LIVE_PREFIX: &str = "HERALD-LIVE ";
/// A lab speaker exits on its own after this long, should its parent vanish.
const SPEAKER_LIFETIME: Duration = Duration::from_secs(300);
/// The key every lab speaker shares.
const LAB_KEY: &[u8] = b"herald-membership-netns-lab-key!";

/// True when this machine can build the lab: root, and the `ip` tool.
pub fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    root && ip
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("ip {}: {error}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Deletes `hmb<pid>-…` namespaces left behind by a lab process that no longer exists (one
/// killed before its drop could run).
fn remove_labs_of_dead_processes() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let listing = String::from_utf8_lossy(&output.stdout);
    for name in listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(pid) = name
            .strip_prefix("hmb")
            .and_then(|rest| rest.split('-').next())
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()))
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// One live-set report from one lab speaker.
struct Report {
    node: usize,
    at: Instant,
    live: BTreeSet<String>,
}

/// The namespaces and speaker processes of one lab.
pub struct NamespaceLab {
    prefix: String,
    lan: String,
    size: usize,
    namespaces: Vec<String>,
    speakers: Vec<Option<Child>>,
    views: Vec<BTreeSet<String>>,
    reports: mpsc::Receiver<Report>,
    report_tx: mpsc::Sender<Report>,
}

impl NamespaceLab {
    /// Builds the LAN namespace and `size` node namespaces (at most 100).
    pub fn create(size: usize) -> Result<Self, String> {
        remove_labs_of_dead_processes();
        let (report_tx, reports) = mpsc::channel();
        let prefix = format!("hmb{}", std::process::id());
        let size = size.min(100);
        let mut lab = Self {
            lan: format!("{prefix}-lan"),
            prefix,
            size,
            namespaces: Vec::new(),
            speakers: (0..size).map(|_| None).collect(),
            views: vec![BTreeSet::new(); size],
            reports,
            report_tx,
        };
        // On failure the half-built lab is dropped here, which deletes what was made.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let lan = self.lan.clone();
        ip(&["netns", "add", &lan])?;
        self.namespaces.push(lan.clone());
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan, "link", "set", "br0", "up"])?;
        for index in 0..self.size {
            let node = self.namespace(index);
            ip(&["netns", "add", &node])?;
            self.namespaces.push(node.clone());
            let port = format!("p{index}");
            ip(&[
                "-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &node,
            ])?;
            ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"])?;
            let address = format!("{}/24", Self::node_ip(index));
            ip(&["-n", &node, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &node, "link", "set", "eth0", "up"])?;
            ip(&["-n", &node, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn namespace(&self, index: usize) -> String {
        format!("{}-n{index}", self.prefix)
    }

    fn node_ip(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, u8::try_from(11 + index).unwrap_or(u8::MAX))
    }

    /// The membership address of node `index`.
    pub fn node_addr(index: usize) -> SocketAddr {
        SocketAddr::from((Self::node_ip(index), DEFAULT_MEMBERSHIP_PORT))
    }

    /// The name of node `index`.
    pub fn node_name(index: usize) -> String {
        format!("node-{index:02}")
    }

    /// Starts node `index`'s speaker: `exe args…` run inside its namespace with the speaker
    /// environment set.
    pub fn start_speaker(&mut self, index: usize, exe: &Path, args: &[&str]) -> Result<(), String> {
        let seeds: Vec<String> = (0..self.size)
            .map(|other| Self::node_addr(other).to_string())
            .collect();
        let spec = format!(
            "{}|{}|{}",
            Self::node_name(index),
            Self::node_addr(index),
            seeds.join(",")
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace(index)])
            .arg(exe)
            .args(args)
            .env(SPEAKER_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("spawn speaker {index}: {error}"))?;
        let stdout = child.stdout.take().ok_or("speaker stdout")?;
        let reports = self.report_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(members) = line.strip_prefix(LIVE_PREFIX) else {
                    continue;
                };
                let live = members
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect();
                let report = Report {
                    node: index,
                    at: Instant::now(),
                    live,
                };
                if reports.send(report).is_err() {
                    break;
                }
            }
        });
        if let Some(slot) = self.speakers.get_mut(index) {
            *slot = Some(child);
        }
        if let Some(view) = self.views.get_mut(index) {
            view.clear();
        }
        Ok(())
    }

    /// SIGKILLs node `index`'s speaker; returns when it was killed.
    pub fn kill_speaker(&mut self, index: usize) -> Instant {
        if let Some(mut child) = self.speakers.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let killed = Instant::now();
            let _ = child.wait();
            if let Some(view) = self.views.get_mut(index) {
                view.clear();
            }
            return killed;
        }
        Instant::now()
    }

    /// The set of names of running speakers.
    pub fn running(&self) -> BTreeSet<String> {
        (0..self.size)
            .filter(|index| self.speakers.get(*index).is_some_and(Option::is_some))
            .map(Self::node_name)
            .collect()
    }

    /// Reads reports until every running speaker satisfies `done(index, its live set)` or
    /// `within` passes; returns the arrival time of the report that completed it.
    pub fn wait_until(
        &mut self,
        within: Duration,
        done: impl Fn(usize, &BTreeSet<String>) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        let all_done = |lab: &Self| {
            (0..lab.size)
                .filter(|index| lab.speakers.get(*index).is_some_and(Option::is_some))
                .all(|index| lab.views.get(index).is_some_and(|view| done(index, view)))
        };
        if all_done(self) {
            return Some(Instant::now());
        }
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let report = self.reports.recv_timeout(left).ok()?;
            let running = self.speakers.get(report.node).is_some_and(Option::is_some);
            if !running {
                continue;
            }
            if let Some(view) = self.views.get_mut(report.node) {
                *view = report.live;
            }
            if all_done(self) {
                return Some(report.at);
            }
        }
    }

    /// Waits until every running speaker sees exactly the running speakers.
    pub fn wait_converged(&mut self, within: Duration) -> Option<Instant> {
        let running = self.running();
        self.wait_until(within, |_, live| *live == running)
    }
}

impl Drop for NamespaceLab {
    fn drop(&mut self) {
        for child in self.speakers.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", namespace]);
        }
    }
}

/// If this process was started as a lab speaker, runs it (printing its live set on every
/// change, for at most five minutes) and returns true; otherwise returns false at once.
pub fn run_speaker_if_asked() -> bool {
    let Ok(spec) = std::env::var(SPEAKER_ENV) else {
        return false;
    };
    if let Err(error) = run_speaker(&spec) {
        eprintln!("lab speaker: {error}");
        std::process::exit(1);
    }
    true
}

fn run_speaker(spec: &str) -> Result<(), String> {
    let mut fields = spec.split('|');
    let name = fields.next().ok_or("no name")?.to_owned();
    let bind: SocketAddr = fields
        .next()
        .ok_or("no bind address")?
        .parse()
        .map_err(|error| format!("bind address: {error}"))?;
    let seeds = fields
        .next()
        .unwrap_or_default()
        .split(',')
        .filter(|seed| !seed.is_empty())
        .map(|seed| {
            seed.parse()
                .map_err(|error| format!("seed {seed}: {error}"))
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    let keys = ClusterKeys::new(LAB_KEY).map_err(|error| error.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async move {
        let driver = MembershipDriver::start(DriverConfig {
            node_name: name,
            bind,
            seeds,
            keys,
            protocol: MembershipConfig::default(),
        })
        .await
        .map_err(|error| error.to_string())?;
        let mut live = driver.live_members();
        let stop = tokio::time::sleep(SPEAKER_LIFETIME);
        tokio::pin!(stop);
        loop {
            let members: Vec<String> = live.borrow_and_update().iter().cloned().collect();
            println!("{LIVE_PREFIX}{}", members.join(","));
            tokio::select! {
                changed = live.changed() => if changed.is_err() { break },
                () = &mut stop => break,
            }
        }
        Ok(())
    })
}

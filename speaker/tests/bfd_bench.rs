//! Benchmark: the CPU one speaker spends on 100 BFD sessions at 50 ms × 3.
//!
//! Two network namespaces joined by a veth pair; each holds 100 addresses (198.18.0.1-100 and
//! 198.18.1.1-100, the benchmarking range) and runs one `BfdManager` on its own thread (a
//! single-threaded tokio runtime, `setns` into the namespace first), with 100 single-hop
//! sessions to the other side. Once every session is Up, the CPU time of side A's thread over
//! the measuring window is read from `/proc/thread-self/stat` and printed as a share of one
//! core, with the packet rates. No session may leave Up meanwhile.
//!
//! Ignored (needs root, takes ~40 s); run under the lab lock:
//! `flock /run/herald-outer.lock cargo test -p herald-speaker --test bfd_bench -- --ignored --nocapture`
//! Optional: `HERALD_BFD_BENCH_SECS` (default 20).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_bfd::{DampingConfig, Profile, State};
use herald_speaker::bfd::driver::{BfdManager, BfdPeerConfig};
use herald_speaker::bfd::metrics::{BfdMetrics, PeerLabel};
use herald_speaker::bfd::socket::Hop;

const SESSIONS: u8 = 100;

fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and their veth pair; removed on drop.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        let pid = std::process::id();
        let ns = Namespaces {
            a: format!("hbfdb-a-{pid}"),
            b: format!("hbfdb-b-{pid}"),
        };
        must(&["ip", "netns", "add", &ns.a]);
        must(&["ip", "netns", "add", &ns.b]);
        must(&[
            "ip", "link", "add", "hbfdba", "netns", &ns.a, "type", "veth", "peer", "name",
            "hbfdbb", "netns", &ns.b,
        ]);
        for (name, dev, third) in [(&ns.a, "hbfdba", 0), (&ns.b, "hbfdbb", 1)] {
            for i in 1..=SESSIONS {
                must(&[
                    "ip",
                    "-n",
                    name,
                    "addr",
                    "add",
                    &format!("198.18.{third}.{i}/16"),
                    "dev",
                    dev,
                ]);
            }
            must(&["ip", "-n", name, "link", "set", "lo", "up"]);
            must(&["ip", "-n", name, "link", "set", dev, "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// CPU time (user + system) of the calling thread, in clock ticks (USER_HZ, 100 on Linux).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(") ").expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

struct SideReport {
    name: String,
    cpu: Duration,
    window: Duration,
    sent: u64,
    received: u64,
    left_up: u64,
}

/// Runs one side: `ours` is the third octet of this side's addresses.
fn side(netns: &str, ours: u8, theirs: u8, hold: Duration, report: mpsc::Sender<SideReport>) {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).expect("netns file");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let netns = netns.to_owned();
    runtime.block_on(async move {
        let metrics = BfdMetrics::default();
        let mut manager = BfdManager::new(metrics.clone());
        let profile = Profile {
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(50),
            detect_mult: 3,
            passive: false,
        };
        let desired: BTreeMap<String, BfdPeerConfig> = (1..=SESSIONS)
            .map(|i| {
                (
                    format!("peer-{i}"),
                    BfdPeerConfig {
                        peer_address: IpAddr::V4(Ipv4Addr::new(198, 18, theirs, i)),
                        local_address: Some(IpAddr::V4(Ipv4Addr::new(198, 18, ours, i))),
                        hop: Hop::Single,
                        profile,
                        strict: false,
                        damping: DampingConfig::default(),
                    },
                )
            })
            .collect();
        let errors = manager.apply(&desired);
        assert!(errors.is_empty(), "{errors:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = manager
                .status()
                .values()
                .filter(|s| s.state == State::Up)
                .count();
            if up == usize::from(SESSIONS) {
                break;
            }
            assert!(Instant::now() < deadline, "only {up} sessions came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the poll sequences settle to the 50 ms rate.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let count = |family: &prometheus_client::metrics::family::Family<
            PeerLabel,
            prometheus_client::metrics::counter::Counter,
        >|
         -> u64 {
            (1..=SESSIONS)
                .map(|i| {
                    family
                        .get_or_create(&PeerLabel {
                            peer: format!("peer-{i}"),
                        })
                        .get()
                })
                .sum()
        };
        let (sent0, received0) = (
            count(&metrics.packets_sent),
            count(&metrics.packets_received),
        );
        let cpu0 = thread_cpu_ticks();
        let started = Instant::now();
        tokio::time::sleep(hold).await;
        let cpu = thread_cpu_ticks() - cpu0;
        let window = started.elapsed();
        let left_up = (1..=SESSIONS)
            .map(|i| {
                metrics
                    .transitions
                    .get_or_create(&herald_speaker::bfd::metrics::TransitionLabels {
                        peer: format!("peer-{i}"),
                        from: "up",
                        to: "down",
                    })
                    .get()
            })
            .sum();
        let _ = report.send(SideReport {
            name: netns.to_owned(),
            cpu: Duration::from_millis(cpu * 10),
            window,
            sent: count(&metrics.packets_sent) - sent0,
            received: count(&metrics.packets_received) - received0,
            left_up,
        });
        // Keep answering until the other side has measured too.
        tokio::time::sleep(Duration::from_secs(3)).await;
        manager.shutdown().await;
    });
}

#[test]
#[ignore = "benchmark: needs root and ~40 s; see the file header"]
fn cpu_of_100_bfd_sessions_at_50_ms() {
    let secs: u64 = std::env::var("HERALD_BFD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let hold = Duration::from_secs(secs);
    let ns = Namespaces::new();
    let (tx, rx) = mpsc::channel();
    let (a, b) = (ns.a.clone(), ns.b.clone());
    let tx_b = tx.clone();
    let side_a = std::thread::spawn(move || side(&a, 0, 1, hold, tx));
    let side_b = std::thread::spawn(move || side(&b, 1, 0, hold, tx_b));
    let reports: Vec<SideReport> = (0..2)
        .map(|_| {
            rx.recv_timeout(hold + Duration::from_secs(120))
                .expect("a side reports")
        })
        .collect();
    side_a.join().expect("side A");
    side_b.join().expect("side B");
    for r in &reports {
        let name = &r.name;
        let share = r.cpu.as_secs_f64() / r.window.as_secs_f64() * 100.0;
        println!(
            "side {name}: {SESSIONS} sessions at 50 ms x 3: CPU {:.2} s over {:.1} s = {share:.1} % of one core; \
             {:.0} packets/s sent, {:.0} received; {} Up -> Down transitions",
            r.cpu.as_secs_f64(),
            r.window.as_secs_f64(),
            r.sent as f64 / r.window.as_secs_f64(),
            r.received as f64 / r.window.as_secs_f64(),
            r.left_up
        );
        // 100 sessions at one packet per 37.5-50 ms each: about 2300 packets/s. A generous
        // floor only proves the sessions ran at their fast rate (no timing assertion).
        assert!(r.sent as f64 / r.window.as_secs_f64() > 1000.0);
    }
}

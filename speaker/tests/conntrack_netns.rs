//! The conntrack flush against the real kernel, in a network namespace the test creates and
//! deletes (even on failure). Needs root, iproute2 and nft; prints SKIPPED otherwise.
//!
//! A UDP "client" keeps one 5-tuple (fixed source port) towards an external address that an
//! nftables output-hook rule DNATs to backend 1. The rule is then changed to backend 2: the
//! kernel keeps sending the same flow to backend 1 (its tracked NAT binding) — the stale
//! flow a UDP client suffers after its backend left. After `conntrack::flush` the same
//! flow reaches backend 2. Everything runs on the namespace's loopback; nothing leaves it.
//! A second test prints what a flush costs with 10,000 tracked flows.

#[path = "support/forwarding_fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use fixture::ScratchNetns;
use herald_speaker::forwarding::conntrack;
use herald_speaker::forwarding::stale::StaleFlow;
use herald_speaker::model::Protocol;
use herald_speaker::planner::ForwardKey;

const EXTERNAL: &str = "203.0.113.10";
const BACKEND_1: &str = "198.18.1.5";
const BACKEND_2: &str = "198.18.2.5";
const BACKEND_PORT: u16 = 5353;

fn skip() -> bool {
    if fixture::nft_available() {
        return false;
    }
    eprintln!("SKIPPED: needs root, iproute2 and nft (apt-get install nftables)");
    true
}

/// Loopback up, the external address and both backends on it, and the DNAT rule.
fn prepare(ns: &ScratchNetns, backend: &str) {
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", &format!("{EXTERNAL}/32"), "dev", "lo"],
        vec!["addr", "add", &format!("{BACKEND_1}/32"), "dev", "lo"],
        vec!["addr", "add", &format!("{BACKEND_2}/32"), "dev", "lo"],
    ] {
        let out = ns.exec("ip", &args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    point_dnat_at(ns, backend);
}

fn point_dnat_at(ns: &ScratchNetns, backend: &str) {
    let script = format!(
        "table ip conntrack_test\ndelete table ip conntrack_test\n\
         table ip conntrack_test {{\n  chain out {{\n    type nat hook output priority -100;\n    \
         ip daddr {EXTERNAL} udp dport 53 dnat to {backend}:{BACKEND_PORT}\n  }}\n}}\n"
    );
    let out = ns.nft_stdin(&["-f", "-"], &script);
    assert!(out.status.success(), "nft: {out:?}");
}

/// Runs `work` on a thread that has entered the namespace (sockets it opens live there).
fn in_namespace<T: Send + 'static>(
    ns: &ScratchNetns,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        work()
    })
    .join()
    .expect("namespace thread")
}

fn server(address: &str) -> UdpSocket {
    let socket = UdpSocket::bind((address, BACKEND_PORT)).expect("bind backend");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    socket
}

/// Sends one datagram and says which backend received it (None: neither within 300 ms).
fn send_and_see(client: &UdpSocket, backends: &[(&str, &UdpSocket)]) -> Option<String> {
    client
        .send_to(b"ping", (EXTERNAL, 53))
        .expect("send datagram");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for (name, socket) in backends {
            let mut buffer = [0u8; 16];
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            if socket.recv_from(&mut buffer).is_ok() {
                return Some((*name).to_string());
            }
        }
    }
    None
}

fn stale_to(backend: &str) -> BTreeSet<StaleFlow> {
    [StaleFlow {
        key: ForwardKey {
            address: EXTERNAL.parse().expect("address"),
            protocol: Protocol::Udp,
            port: 53,
        },
        backend: backend.parse().expect("address"),
        backend_port: BACKEND_PORT,
    }]
    .into()
}

#[test]
fn a_udp_flow_pinned_to_a_backend_that_left_reaches_the_new_one_after_the_flush() {
    if skip() {
        return;
    }
    let ns = ScratchNetns::create("ct");
    prepare(&ns, BACKEND_1);
    let (first, client, one, two) = in_namespace(&ns, || {
        let one = server(BACKEND_1);
        let two = server(BACKEND_2);
        let client = UdpSocket::bind("127.0.0.1:40053").expect("bind client");
        let first = send_and_see(&client, &[("one", &one), ("two", &two)]);
        (first, client, one, two)
    });
    assert_eq!(first.as_deref(), Some("one"));

    point_dnat_at(&ns, BACKEND_2);
    let (pinned, report, after) = in_namespace(&ns, move || {
        let backends = [("one", &one), ("two", &two)];
        let pinned = send_and_see(&client, &backends);
        let report = conntrack::flush(&stale_to(BACKEND_1)).expect("flush");
        let after = send_and_see(&client, &backends);
        (pinned, report, after)
    });
    assert_eq!(
        pinned.as_deref(),
        Some("one"),
        "without a flush the tracked flow keeps its old backend (the problem)"
    );
    assert!(report.deleted >= 1, "{report:?}");
    assert!(report.scanned >= report.deleted, "{report:?}");
    assert_eq!(after.as_deref(), Some("two"), "after the flush: {report:?}");
}

#[test]
fn a_flush_deletes_only_the_stale_flows_and_prints_its_cost_at_10000_entries() {
    if skip() {
        return;
    }
    const FLOWS: u16 = 10_000;
    let ns = ScratchNetns::create("ct10k");
    prepare(&ns, BACKEND_1);
    // Flows to backend 1, each from its own source port.
    let make_flows = || {
        for offset in 0..FLOWS {
            let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 20_000 + offset)))
                .expect("bind source");
            socket.send_to(b"x", (EXTERNAL, 53)).expect("send");
        }
    };
    let figures = in_namespace(&ns, move || {
        make_flows();
        let unrelated = conntrack::flush(&stale_to(BACKEND_2)).expect("flush unrelated");
        let started = Instant::now();
        let all = conntrack::flush(&stale_to(BACKEND_1)).expect("flush all");
        let took = started.elapsed();
        (unrelated, all, took)
    });
    let (unrelated, all, took) = figures;
    assert_eq!(unrelated.deleted, 0, "{unrelated:?}");
    assert!(unrelated.scanned >= usize::from(FLOWS), "{unrelated:?}");
    assert!(all.deleted >= usize::from(FLOWS), "{all:?}");
    println!(
        "conntrack flush (Herald, ctnetlink): scanned {} entries and deleted {} in {took:?} \
         ({:.1} µs per deleted entry); a dump with nothing to delete scanned {} entries",
        all.scanned,
        all.deleted,
        took.as_secs_f64() * 1e6 / all.deleted.max(1) as f64,
        unrelated.scanned
    );
    // The reference, same run and same table: conntrack-tools' `conntrack -D` with the
    // filter kube-proxy uses (original destination + reply source).
    let has_cli = ns.exec("conntrack", &["--version"]).status.success();
    if !has_cli {
        println!("reference: SKIPPED (conntrack-tools not installed)");
        return;
    }
    in_namespace(&ns, make_flows);
    let started = Instant::now();
    let out = ns.exec(
        "conntrack",
        &[
            "-D",
            "-p",
            "udp",
            "--orig-dst",
            EXTERNAL,
            "--reply-src",
            BACKEND_1,
        ],
    );
    let reference = started.elapsed();
    assert!(out.status.success(), "conntrack -D: {out:?}");
    println!(
        "reference `conntrack -D -p udp --orig-dst .. --reply-src ..`: {reference:?} for {FLOWS} \
         entries; Herald/reference = {:.2}",
        took.as_secs_f64() / reference.as_secs_f64()
    );
}

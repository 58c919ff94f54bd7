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

/// The addresses of one family's run.
#[derive(Clone, Copy)]
struct Addresses {
    external: &'static str,
    backend_1: &'static str,
    backend_2: &'static str,
    host_prefix: u8,
    /// nftables family and address match (`ip daddr` / `ip6 daddr`).
    nft_family: &'static str,
    client: &'static str,
}

const V4: Addresses = Addresses {
    external: EXTERNAL,
    backend_1: BACKEND_1,
    backend_2: BACKEND_2,
    host_prefix: 32,
    nft_family: "ip",
    client: "127.0.0.1:40053",
};

const V6: Addresses = Addresses {
    external: "2001:db8:100::10",
    backend_1: "2001:db8:244:1::5",
    backend_2: "2001:db8:244:2::5",
    host_prefix: 128,
    nft_family: "ip6",
    client: "[::1]:40053",
};

impl Addresses {
    /// `backend:port` as nftables writes a DNAT target.
    fn dnat_target(&self, backend: &str) -> String {
        if self.nft_family == "ip6" {
            format!("[{backend}]:{BACKEND_PORT}")
        } else {
            format!("{backend}:{BACKEND_PORT}")
        }
    }

    fn external_socket(&self) -> SocketAddr {
        SocketAddr::new(self.external.parse().expect("address"), 53)
    }

    fn backend_socket(&self, backend: &str) -> SocketAddr {
        SocketAddr::new(backend.parse().expect("address"), BACKEND_PORT)
    }
}

fn skip() -> bool {
    if fixture::nft_available() {
        return false;
    }
    eprintln!("SKIPPED: needs root, iproute2 and nft (apt-get install nftables)");
    true
}

/// Loopback up, the external address and both backends on it (`nodad`: usable at once),
/// and the DNAT rule.
fn prepare_family(ns: &ScratchNetns, family: Addresses, backend: &str) {
    let out = ns.exec("ip", &["link", "set", "lo", "up"]);
    assert!(out.status.success(), "ip link: {out:?}");
    for address in [family.external, family.backend_1, family.backend_2] {
        let cidr = format!("{address}/{}", family.host_prefix);
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", "lo"];
        if family.nft_family == "ip6" {
            args.push("nodad");
        }
        let out = ns.exec("ip", &args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    point_family_dnat_at(ns, family, backend);
}

fn point_family_dnat_at(ns: &ScratchNetns, family: Addresses, backend: &str) {
    let table = family.nft_family;
    let script = format!(
        "table {table} conntrack_test\ndelete table {table} conntrack_test\n\
         table {table} conntrack_test {{\n  chain out {{\n    type nat hook output priority -100;\n    \
         {table} daddr {} udp dport 53 dnat to {}\n  }}\n}}\n",
        family.external,
        family.dnat_target(backend)
    );
    let out = ns.nft_stdin(&["-f", "-"], &script);
    assert!(out.status.success(), "nft: {out:?}");
}

fn prepare(ns: &ScratchNetns, backend: &str) {
    prepare_family(ns, V4, backend);
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

fn server(address: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(address).expect("bind backend");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    socket
}

/// Sends one datagram and says which backend received it (None: neither within 300 ms).
fn send_and_see(
    client: &UdpSocket,
    target: SocketAddr,
    backends: &[(&str, &UdpSocket)],
) -> Option<String> {
    client.send_to(b"ping", target).expect("send datagram");
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
    stale_to_in(V4, backend)
}

fn stale_to_in(family: Addresses, backend: &str) -> BTreeSet<StaleFlow> {
    [StaleFlow {
        key: ForwardKey {
            address: family.external.parse().expect("address"),
            protocol: Protocol::Udp,
            port: 53,
        },
        backend: backend.parse().expect("address"),
        backend_port: BACKEND_PORT,
    }]
    .into()
}

fn pinned_flow_moves_after_the_flush(family: Addresses) {
    if skip() {
        return;
    }
    let ns = ScratchNetns::create("ct");
    prepare_family(&ns, family, family.backend_1);
    let target = family.external_socket();
    let (first, client, one, two) = in_namespace(&ns, move || {
        let one = server(family.backend_socket(family.backend_1));
        let two = server(family.backend_socket(family.backend_2));
        let client = UdpSocket::bind(family.client).expect("bind client");
        let first = send_and_see(&client, target, &[("one", &one), ("two", &two)]);
        (first, client, one, two)
    });
    assert_eq!(first.as_deref(), Some("one"));

    point_family_dnat_at(&ns, family, family.backend_2);
    let (pinned, report, after) = in_namespace(&ns, move || {
        let backends = [("one", &one), ("two", &two)];
        let pinned = send_and_see(&client, target, &backends);
        let report = conntrack::flush(&stale_to_in(family, family.backend_1)).expect("flush");
        let after = send_and_see(&client, target, &backends);
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
fn a_udp_flow_pinned_to_a_backend_that_left_reaches_the_new_one_after_the_flush() {
    pinned_flow_moves_after_the_flush(V4);
}

#[test]
fn an_ipv6_udp_flow_pinned_to_a_backend_that_left_reaches_the_new_one_after_the_flush() {
    pinned_flow_moves_after_the_flush(V6);
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

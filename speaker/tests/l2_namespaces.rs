//! Layer-2 mode against real Linux neighbours: two network namespaces joined by a veth pair.
//!
//! Namespace A runs our announcers on its veth; namespace B is a plain Linux host whose
//! neighbour table must learn A's MAC for the service addresses — by asking (ARP request / NS
//! answered by us) and, when ownership moves from a fake owner to A, by our gratuitous ARP /
//! unsolicited NA alone. Needs root (namespaces, raw sockets) and iproute2 + iputils ping.
//! Only 192.0.2.0/24 and 2001:db8:1::/64, no routes out; namespaces are removed on drop, so
//! also when an assertion fails.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_speaker::l2::announcer::{AddressPhase, AnnouncerConfig, AnnouncerEvent};
use herald_speaker::l2::frames::MacAddr;
use herald_speaker::l2::interfaces::announce_interfaces;
use herald_speaker::l2::io::{
    InterfaceAnnouncer, InterfaceAnnouncerConfig, InterfaceEvent, discover_interfaces,
};

const MAC_A: &str = "02:00:5e:20:00:0a";
const MAC_B: &str = "02:00:5e:20:00:0b";
const FAKE_OWNER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x20, 0x00, 0x99]);
const VIP4: &str = "192.0.2.200";
const VIP6: &str = "2001:db8:1::200";
const MOVED4: &str = "192.0.2.201";
const MOVED6: &str = "2001:db8:1::201";

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces with a veth pair; deleted on drop.
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            a: format!("hl2t-a-{pid}"),
            b: format!("hl2t-b-{pid}"),
        };
        let (a, b) = (lab.a.as_str(), lab.b.as_str());
        for ns in [a, b] {
            // `ip netns add` can fail transiently while another test mounts or unmounts
            // /run/netns; retry a few times.
            let added = (0..5).any(|attempt| {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let out = run(&["ip", "netns", "add", ns]);
                if !out.status.success() {
                    eprintln!(
                        "ip netns add {ns}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let _ = run(&["ip", "netns", "del", ns]);
                }
                out.status.success()
            });
            assert!(added, "could not create namespace {ns}");
        }
        must(&[
            "ip", "link", "add", "va", "netns", a, "address", MAC_A, "type", "veth", "peer",
            "name", "vb", "netns", b, "address", MAC_B,
        ]);
        for (ns, dev, v4, v6) in [
            (a, "va", "192.0.2.10/24", "2001:db8:1::10/64"),
            (b, "vb", "192.0.2.11/24", "2001:db8:1::11/64"),
        ] {
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            must(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            must(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // The service addresses live on A's loopback, as kube-proxy or our forwarding would
        // have them, so A's kernel answers pings once frames reach it. arp_ignore=1 keeps A's
        // kernel from answering ARP for them on va: only our announcer may.
        for vip in [VIP4, MOVED4] {
            must(&[
                "ip",
                "-n",
                a,
                "addr",
                "add",
                &format!("{vip}/32"),
                "dev",
                "lo",
            ]);
        }
        for vip in [VIP6, MOVED6] {
            must(&[
                "ip",
                "-n",
                a,
                "addr",
                "add",
                &format!("{vip}/128"),
                "dev",
                "lo",
            ]);
        }
        for key in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.va.arp_ignore=1",
        ] {
            must(&["ip", "netns", "exec", a, "sysctl", "-qw", key]);
        }
        lab
    }

    /// Runs `f` on a thread inside namespace A; sockets it opens (and threads it starts) stay
    /// in A.
    fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.a);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|_| panic!("thread in namespace A panicked"))
        })
    }

    /// Pings until one succeeds (at most `attempts`): on a loaded 2-core machine one second is
    /// not always enough for the first reply.
    fn ping_from_b_within(&self, address: &str, attempts: usize) -> bool {
        (0..attempts).any(|_| self.ping_from_b(address))
    }

    fn ping_from_b(&self, address: &str) -> bool {
        let family = if address.contains(':') { "-6" } else { "-4" };
        run(&[
            "ip", "netns", "exec", &self.b, "ping", family, "-c1", "-W1", address,
        ])
        .status
        .success()
    }

    /// B's neighbour entry for `address`: "lladdr ... STATE" text, or empty.
    fn neighbour_in_b(&self, address: &str) -> String {
        let out = run(&["ip", "-n", &self.b, "neigh", "show", address, "dev", "vb"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn wait_for_neighbour_in_b(&self, address: &str, mac: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        for _ in 0..100 {
            if self
                .neighbour_in_b(address)
                .contains(&format!("lladdr {mac}"))
            {
                return true;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.b]);
    }
}

fn addresses(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter()
        .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
        .collect()
}

fn config() -> AnnouncerConfig {
    AnnouncerConfig {
        probe_count: 2,
        probe_interval: Duration::from_millis(100),
        burst_count: 3,
        burst_interval: Duration::from_millis(200),
        refresh_interval: Some(Duration::from_secs(5)),
        conflict_retry_interval: Duration::from_millis(500),
        defend_interval: Duration::from_secs(10),
    }
}

fn wait_announcing(
    announcer: &InterfaceAnnouncer,
    wanted: &BTreeSet<IpAddr>,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    for _ in 0..200 {
        let announcing: BTreeSet<IpAddr> = announcer
            .phases()
            .into_iter()
            .filter(|(_, phase)| *phase == AddressPhase::Announcing)
            .map(|(address, _)| address)
            .collect();
        if wanted.is_subset(&announcing) {
            return true;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_linux_neighbour_resolves_our_addresses_and_follows_a_gratuitous_move_without_asking() {
    let lab = Lab::new();

    // Nobody answers for the service addresses yet: the kernel in A must not.
    assert!(
        !lab.ping_from_b(VIP4),
        "A's kernel answered ARP for {VIP4} by itself"
    );
    assert!(
        !lab.ping_from_b(VIP6),
        "A's kernel answered NDP for {VIP6} by itself"
    );

    let (events_tx, events) = mpsc::channel::<InterfaceEvent>();
    let (real, fake) = lab.in_a(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let interfaces = runtime
            .block_on(discover_interfaces())
            .unwrap_or_else(|e| panic!("discovery: {e}"));
        let chosen = announce_interfaces(
            VIP4.parse().unwrap_or_else(|e| panic!("{e}")),
            &interfaces,
            &[],
        );
        assert_eq!(chosen.len(), 1, "{interfaces:?}");
        assert_eq!(chosen[0].name, "va");
        assert_eq!(chosen[0].mac.map(|m| m.to_string()).as_deref(), Some(MAC_A));
        let start = |mac| {
            InterfaceAnnouncer::start(
                InterfaceAnnouncerConfig {
                    interface: "va".to_owned(),
                    mac,
                    announcer: config(),
                },
                events_tx.clone(),
            )
            .unwrap_or_else(|e| panic!("start announcer: {e}"))
        };
        (start(None), start(Some(FAKE_OWNER_MAC)))
    });

    // 1. A owns VIP4 and VIP6; B resolves them by asking, and traffic flows.
    let owned = addresses(&[VIP4, VIP6]);
    real.set_addresses(owned.clone());
    assert!(
        wait_announcing(&real, &owned, Duration::from_secs(3)),
        "{:?}",
        real.phases()
    );
    // B's failed attempts above left entries that our announcements already updated; flush
    // them so that B has to ask (announcements never create entries on Linux by default).
    must(&["ip", "-n", &lab.b, "neigh", "flush", "dev", "vb"]);
    assert!(
        lab.ping_from_b_within(VIP4, 3),
        "ping {VIP4} through our ARP answer failed"
    );
    assert!(
        lab.ping_from_b_within(VIP6, 3),
        "ping {VIP6} through our NDP answer failed"
    );
    assert!(
        lab.neighbour_in_b(VIP4).contains(MAC_A),
        "{}",
        lab.neighbour_in_b(VIP4)
    );
    assert!(
        lab.neighbour_in_b(VIP6).contains(MAC_A),
        "{}",
        lab.neighbour_in_b(VIP6)
    );
    let counters = real.counters();
    assert!(counters.arp_requests_answered >= 1, "{counters:?}");
    assert!(
        counters.neighbor_solicitations_answered >= 1,
        "{counters:?}"
    );

    // 2. A fake owner (another MAC on the same segment) holds MOVED4/MOVED6; B learns its MAC.
    let moved = addresses(&[MOVED4, MOVED6]);
    fake.set_addresses(moved.clone());
    assert!(
        wait_announcing(&fake, &moved, Duration::from_secs(3)),
        "{:?}",
        fake.phases()
    );
    let fake_mac = FAKE_OWNER_MAC.to_string();
    let _ = lab.ping_from_b(MOVED4); // fails: A's kernel drops frames to the fake MAC
    let _ = lab.ping_from_b(MOVED6);
    assert!(
        lab.wait_for_neighbour_in_b(MOVED4, &fake_mac, Duration::from_secs(3)),
        "{}",
        lab.neighbour_in_b(MOVED4)
    );
    assert!(
        lab.wait_for_neighbour_in_b(MOVED6, &fake_mac, Duration::from_secs(3)),
        "{}",
        lab.neighbour_in_b(MOVED6)
    );

    // 3. While the fake owner is alive, A probing for the same addresses finds the conflict and
    //    does not take them.
    while events.try_recv().is_ok() {}
    real.set_addresses(owned.union(&moved).copied().collect());
    let mut conflicts = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while conflicts.len() < 2 && Instant::now() < deadline {
        if let Ok(InterfaceEvent {
            event:
                AnnouncerEvent::ConflictWhileProbing {
                    address, other_mac, ..
                },
            ..
        }) = events.recv_timeout(Duration::from_millis(100))
        {
            assert_eq!(other_mac, FAKE_OWNER_MAC);
            conflicts.insert(address);
        }
    }
    assert_eq!(
        conflicts, moved,
        "A did not notice the fake owner while probing"
    );
    assert!(
        lab.neighbour_in_b(MOVED4).contains(&fake_mac),
        "B must still point at the fake owner"
    );

    // 4. The fake owner dies; A's retry probes find nobody, A announces, and B's existing
    //    entries switch to A's MAC from the gratuitous ARP / unsolicited NA alone.
    let answered_before = (
        real.counters().arp_requests_answered,
        real.counters().neighbor_solicitations_answered,
    );
    drop(fake);
    assert!(
        wait_announcing(&real, &moved, Duration::from_secs(3)),
        "{:?}",
        real.phases()
    );
    assert!(
        lab.wait_for_neighbour_in_b(MOVED4, MAC_A, Duration::from_secs(2)),
        "{}",
        lab.neighbour_in_b(MOVED4)
    );
    assert!(
        lab.wait_for_neighbour_in_b(MOVED6, MAC_A, Duration::from_secs(2)),
        "{}",
        lab.neighbour_in_b(MOVED6)
    );
    let answered_after = (
        real.counters().arp_requests_answered,
        real.counters().neighbor_solicitations_answered,
    );
    assert_eq!(
        answered_before, answered_after,
        "B asked instead of following the announcement"
    );
    assert!(
        lab.ping_from_b_within(MOVED4, 3),
        "traffic to {MOVED4} does not reach the new owner"
    );
    assert!(
        lab.ping_from_b_within(MOVED6, 3),
        "traffic to {MOVED6} does not reach the new owner"
    );
    assert_eq!(real.transmit_errors(), 0);
    drop(real);
}

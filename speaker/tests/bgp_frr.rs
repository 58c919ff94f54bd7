//! Herald's BGP driver against a real FRR: two network namespaces joined by a veth pair
//! (router 192.0.2.1 running FRR's zebra + bgpd, node 192.0.2.11 running Herald's BgpManager),
//! eBGP with TCP-MD5 and both sides connecting (so collision resolution happens for real).
//! FRR must learn the IPv4 route with its communities, large community and link bandwidth, the
//! IPv6 route over MP_REACH_NLRI, install the IPv4 route in the router's kernel table, drop both
//! when Herald withdraws them, and see a Cease when Herald shuts down.
//!
//! The parent test creates and always tears down the namespaces and FRR; the Herald side runs in
//! a child process (this same test binary, re-executed with `ip netns exec`), so the test needs
//! no unsafe `setns`. Skipped (with a message) when not root or FRR is not installed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use herald_speaker::bgp::codec::{LargeCommunity, RouteAttributes};
use herald_speaker::bgp::driver::{BgpManager, DesiredBgp, ListenConfig, PeerConfig};
use herald_speaker::bgp::fsm::{
    GracefulRestartConfig, SessionConfig, SessionError, State, StopReason,
};
use ipnet::IpNet;

const CHILD_ENV: &str = "HERALD_BGP_FRR_CHILD";
const PASSWORD: &str = "herald-md5-secret";

struct Names {
    router_ns: String,
    node_ns: String,
    frr: String,
}

/// Unique per process and test (tests of this file run in parallel).
fn names(tag: &str) -> Names {
    let pid = std::process::id();
    Names {
        router_ns: format!("hvt-r{tag}{pid}"),
        node_ns: format!("hvt-n{tag}{pid}"),
        frr: format!("hvt{tag}{pid}"),
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn must(program: &str, args: &[&str]) {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node's address on the veth, and the router's.
const NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Our side of a session to FRR's AS 64500, with the short timers every test uses.
fn session(local_as: u32, connect_retry_secs: u64) -> SessionConfig {
    let mut session = SessionConfig::new(local_as, 64500, NODE);
    session.hold_time_secs = 9;
    session.connect_retry = Duration::from_secs(connect_retry_secs);
    session
}

/// A peer at `address` with the TCP-MD5 password FRR expects.
fn md5_peer(session: SessionConfig, address: IpAddr) -> PeerConfig {
    let mut peer = PeerConfig::new(session, address);
    peer.password = Some(PASSWORD.into());
    peer
}

/// One peer named `name` and the routes announced to it.
fn desired(name: &str, peer: PeerConfig, routes: BTreeMap<IpNet, RouteAttributes>) -> DesiredBgp {
    DesiredBgp {
        peers: [(name.to_string(), peer)].into(),
        routes: [(name.to_string(), routes)].into(),
    }
}

/// Routes with default attributes.
fn plain_routes(prefixes: &[&str]) -> BTreeMap<IpNet, RouteAttributes> {
    prefixes
        .iter()
        .map(|p| (p.parse().unwrap(), RouteAttributes::default()))
        .collect()
}

/// Waits (bounded) for `peer` to be Established, failing with the status otherwise.
async fn established(manager: &BgpManager, peer: &str) {
    assert!(
        manager
            .wait_for_state(peer, State::Established, Duration::from_secs(60))
            .await,
        "no session with {peer}: {:?}",
        manager.status()
    );
}

/// Starts one FRR daemon of lab `frr` in `router_ns`, writing its pid to `pid_file`.
fn start_frr_daemon(router_ns: &str, frr: &str, daemon: &str, pid_file: &str) {
    let binary = format!("/usr/lib/frr/{daemon}");
    must(
        "ip",
        &[
            "netns",
            "exec",
            router_ns,
            &binary,
            "-d",
            "-N",
            frr,
            "-F",
            "traditional",
            "-A",
            "127.0.0.1",
            "-i",
            pid_file,
        ],
    );
}

/// Everything the parent creates; removed on drop, also when an assertion fails.
struct Lab {
    names: Names,
}

impl Lab {
    fn new(tag: &str, frr_config: &str) -> Lab {
        let names = names(tag);
        let lab = Lab { names };
        let n = &lab.names;
        must("ip", &["netns", "add", &n.router_ns]);
        must("ip", &["netns", "add", &n.node_ns]);
        must(
            "ip",
            &[
                "link",
                "add",
                "hvt-rt",
                "netns",
                &n.router_ns,
                "type",
                "veth",
                "peer",
                "name",
                "hvt-nd",
                "netns",
                &n.node_ns,
            ],
        );
        for (ns, dev, v4, v6) in [
            (&n.router_ns, "hvt-rt", "192.0.2.1/24", "2001:db8:1::1/64"),
            (&n.node_ns, "hvt-nd", "192.0.2.11/24", "2001:db8:1::11/64"),
        ] {
            must("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
            must("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        let etc = format!("/etc/frr/{}", n.frr);
        let var = format!("/var/run/frr/{}", n.frr);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&var).unwrap();
        std::fs::write(format!("{etc}/frr.conf"), frr_config).unwrap();
        std::fs::write(format!("{etc}/daemons"), "zebra=yes\nbgpd=yes\n").unwrap();
        std::fs::write(format!("{etc}/vtysh.conf"), "").unwrap();
        must("chown", &["-R", "frr:frr", &etc, &var]);
        for daemon in ["zebra", "bgpd"] {
            start_frr_daemon(&n.router_ns, &n.frr, daemon, &format!("{var}/{daemon}.pid"));
        }
        // bgpd needs a moment before vtysh can reach it; bounded retries.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = lab.vtysh(&["-b"]);
            if out.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "vtysh -b never succeeded");
            std::thread::sleep(Duration::from_millis(300));
        }
        lab
    }

    fn vtysh(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "netns",
            "exec",
            &self.names.router_ns,
            "vtysh",
            "-N",
            &self.names.frr,
        ];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let var = format!("/var/run/frr/{}", self.names.frr);
        for daemon in ["bgpd", "zebra"] {
            if let Ok(pid) = std::fs::read_to_string(format!("{var}/{daemon}.pid")) {
                let _ = run("kill", &[pid.trim()]);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = run("ip", &["netns", "del", &self.names.router_ns]);
        let _ = run("ip", &["netns", "del", &self.names.node_ns]);
        let _ = std::fs::remove_dir_all(format!("/etc/frr/{}", self.names.frr));
        let _ = std::fs::remove_dir_all(var);
    }
}

/// An FRR configuration: the router's BGP instance (AS 64500) with `$body` below it.
macro_rules! frr_router {
    ($body:literal) => {
        concat!(
            "frr defaults traditional\n",
            "hostname herald-test-router\n",
            "router bgp 64500\n",
            " bgp router-id 192.0.2.1\n",
            $body
        )
    };
}

fn frr_config() -> String {
    frr_router!(
        " no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 password herald-md5-secret
 neighbor 192.0.2.11 timers 3 9
 neighbor 192.0.2.11 timers connect 2
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 192.0.2.11 activate
 exit-address-family
"
    )
    .to_string()
}

fn prerequisites_missing() -> Option<&'static str> {
    if !Path::new("/usr/lib/frr/bgpd").exists() {
        return Some("FRR is not installed (apt-get install frr)");
    }
    let id = run("id", &["-u"]);
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        return Some("needs root for network namespaces");
    }
    None
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Both halves of a test: in the child (`CHILD_ENV` set) the Herald `side`; in the parent
/// the lab, skipped (with a message) without root or FRR, around a re-run of `test_name`.
fn lab_test(tag: &str, test_name: &str, frr_config: &str, side: fn()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return side();
    }
    if let Some(reason) = prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    run_in_lab(tag, test_name, frr_config);
}

/// Sets up the lab and runs `test_name` again inside the node namespace, where the
/// `CHILD_ENV` branch of that test does the Herald side.
fn run_in_lab(tag: &str, test_name: &str, frr_config: &str) {
    let lab = Lab::new(tag, frr_config);
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.names.node_ns,
            exe,
            "--exact",
            test_name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("HERALD_FRR_ROUTER_NS", &lab.names.router_ns)
        .env("HERALD_FRR_NAME", &lab.names.frr)
        .spawn()
        .unwrap();
    // The child is bounded by its own deadlines; this bounds it once more.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Herald side did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the Herald side failed: {status}");
    drop(lab);
}

#[test]
fn herald_peers_with_frr_which_learns_installs_and_withdraws_the_routes() {
    lab_test(
        "a",
        "herald_peers_with_frr_which_learns_installs_and_withdraws_the_routes",
        &frr_config(),
        herald_side,
    );
}

#[test]
fn a_wrong_asn_and_a_wrong_password_each_give_a_clear_status_and_no_crash() {
    lab_test(
        "b",
        "a_wrong_asn_and_a_wrong_password_each_give_a_clear_status_and_no_crash",
        &frr_config(),
        misconfigured_side,
    );
}

#[test]
fn ten_thousand_prefixes_reach_frr_in_few_packed_updates() {
    lab_test(
        "c",
        "ten_thousand_prefixes_reach_frr_in_few_packed_updates",
        &frr_config(),
        ten_thousand_prefixes_side,
    );
}

/// Number of /32s announced, from the benchmarking range 198.18.0.0/15.
const MANY_PREFIXES: u32 = 10_000;

/// Runs inside the node namespace: announces 10,000 /32s on an Established session, measures
/// until FRR counts them all, and checks how many UPDATEs that took.
fn ten_thousand_prefixes_side() {
    let received = || -> u64 {
        lab_json("show bgp ipv4 unicast summary json")["peers"]["192.0.2.11"]["pfxRcd"]
            .as_u64()
            .unwrap_or(0)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let peer = md5_peer(session(64512, 2), ROUTER);
        let mut desired = desired("router", peer, BTreeMap::new());
        let mut manager = BgpManager::new(None).unwrap();
        manager.apply(&desired).unwrap();
        established(&manager, "router").await;
        let before = manager.status()["router"].session.update_messages_sent;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let routes: BTreeMap<IpNet, RouteAttributes> = (0..MANY_PREFIXES)
            .map(|i| {
                let net = ipnet::Ipv4Net::new(Ipv4Addr::from(base + i), 32).unwrap();
                (IpNet::V4(net), RouteAttributes::default())
            })
            .collect();
        desired.routes.insert("router".to_string(), routes);
        let started = Instant::now();
        manager.apply(&desired).unwrap();
        tokio::task::block_in_place(|| {
            wait_until(
                "FRR to count every prefix",
                Duration::from_secs(120),
                || received() == u64::from(MANY_PREFIXES),
            );
        });
        let elapsed = started.elapsed();
        let messages = manager.status()["router"].session.update_messages_sent - before;
        println!(
            "{MANY_PREFIXES} prefixes: in FRR's table after {elapsed:?}, {messages} UPDATE messages"
        );
        // 810 /32s fit in one 4096-byte UPDATE with these attributes: 13 messages.
        assert_eq!(messages, u64::from(MANY_PREFIXES.div_ceil(810)));
        manager.shutdown(StopReason::PeerDeconfigured).await;
    });
}

/// FRR peering with the node over IPv6 (and graceful restart on, for the restart test).
fn frr_config_ipv6_and_graceful_restart() -> String {
    frr_router!(
        " no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 neighbor 2001:db8:1::11 remote-as 64512
 neighbor 2001:db8:1::11 password herald-md5-secret
 neighbor 2001:db8:1::11 timers 3 9
 neighbor 2001:db8:1::11 timers connect 2
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 timers 3 9
 neighbor 192.0.2.11 timers connect 2
 address-family ipv4 unicast
  neighbor 2001:db8:1::11 activate
  neighbor 192.0.2.11 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 2001:db8:1::11 activate
 exit-address-family
"
    )
    .to_string()
}

#[test]
fn herald_peers_with_frr_over_an_ipv6_session_carrying_both_families() {
    lab_test(
        "d",
        "herald_peers_with_frr_over_an_ipv6_session_carrying_both_families",
        &frr_config_ipv6_and_graceful_restart(),
        ipv6_session_side,
    );
}

#[test]
fn with_graceful_restart_frr_keeps_the_routes_while_the_speaker_restarts() {
    lab_test(
        "e",
        "with_graceful_restart_frr_keeps_the_routes_while_the_speaker_restarts",
        &frr_config_ipv6_and_graceful_restart(),
        graceful_restart_side,
    );
}

/// `vtysh -c` in the router namespace of the lab this child runs in.
fn lab_vtysh(command: &str) -> String {
    let router_ns = std::env::var("HERALD_FRR_ROUTER_NS").unwrap();
    let frr = std::env::var("HERALD_FRR_NAME").unwrap();
    let out = run(
        "ip",
        &[
            "netns", "exec", &router_ns, "vtysh", "-N", &frr, "-c", command,
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lab_json(command: &str) -> serde_json::Value {
    serde_json::from_str(&lab_vtysh(command)).unwrap_or(serde_json::Value::Null)
}

/// Whether FRR's BGP table for `family` ("ipv4" or "ipv6") holds `prefix`.
fn in_frr(family: &str, prefix: &str) -> bool {
    lab_json(&format!("show bgp {family} unicast json"))["routes"]
        .get(prefix)
        .is_some()
}

/// Runs inside the node namespace: an IPv6 TCP session (MD5 over IPv6) carrying an IPv6 route
/// (next hop: the connection's own address) and an IPv4 route (configured IPv4 next hop).
fn ipv6_session_side() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut session = session(64512, 2);
        session.next_hop_v4 = Some(NODE);
        let peer = md5_peer(session, "2001:db8:1::1".parse().unwrap());
        let routes = plain_routes(&["2001:db8:100::20/128", "203.0.113.20/32"]);
        let mut manager = BgpManager::new(Some(&ListenConfig::default())).unwrap();
        manager.apply(&desired("router6", peer, routes)).unwrap();
        established(&manager, "router6").await;
        tokio::task::block_in_place(|| {
            wait_until("both routes in FRR", Duration::from_secs(30), || {
                in_frr("ipv6", "2001:db8:100::20/128") && in_frr("ipv4", "203.0.113.20/32")
            });
            let v6 = lab_vtysh("show bgp ipv6 unicast 2001:db8:100::20/128 json");
            assert!(v6.contains("2001:db8:1::11"), "IPv6 next hop: {v6}");
            let v4 = lab_vtysh("show bgp ipv4 unicast 203.0.113.20/32 json");
            assert!(v4.contains("192.0.2.11"), "IPv4 next hop: {v4}");
        });
        manager.shutdown(StopReason::PeerDeconfigured).await;
    });
}

/// Runs inside the node namespace: a speaker with graceful restart announces a route, "dies"
/// (closes without NOTIFICATION), and a new speaker comes back with the Restart State bit.
/// FRR must keep the route (stale) in between and refresh it after our End-of-RIB.
fn graceful_restart_side() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let desired = |restarting: bool| {
            let mut session = session(64512, 1);
            session.families = vec![herald_speaker::bgp::codec::Family::Ipv4Unicast];
            session.graceful_restart = Some(GracefulRestartConfig {
                restart_time_secs: 60,
                restarting,
            });
            let peer = PeerConfig::new(session, ROUTER);
            desired("router", peer, plain_routes(&["203.0.113.30/32"]))
        };
        let route = || lab_json("show bgp ipv4 unicast 203.0.113.30/32 json");
        let is_stale = |v: &serde_json::Value| v["paths"][0]["stale"].as_bool() == Some(true);

        let mut first = BgpManager::new(None).unwrap();
        first.apply(&desired(false)).unwrap();
        established(&first, "router").await;
        tokio::task::block_in_place(|| {
            wait_until("the route in FRR", Duration::from_secs(30), || {
                route()["paths"][0].is_object()
            });
        });
        first.shutdown(StopReason::Restarting).await;

        // Gone for longer than FRR's hold time: the route must survive, marked stale.
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::block_in_place(|| {
            let held = route();
            assert!(
                is_stale(&held),
                "FRR dropped or did not mark the route: {held}"
            );
        });

        let mut second = BgpManager::new(None).unwrap();
        second.apply(&desired(true)).unwrap();
        established(&second, "router").await;
        tokio::task::block_in_place(|| {
            wait_until(
                "the route to be fresh again",
                Duration::from_secs(30),
                || {
                    let v = route();
                    v["paths"][0].is_object() && !is_stale(&v)
                },
            );
        });
        second.shutdown(StopReason::PeerDeconfigured).await;
        tokio::task::block_in_place(|| {
            wait_until(
                "the route withdrawn by the Cease",
                Duration::from_secs(30),
                || !route()["paths"][0].is_object(),
            );
        });
    });
}

#[test]
fn after_frr_restarts_the_session_and_the_route_come_back_by_themselves() {
    lab_test(
        "f",
        "after_frr_restarts_the_session_and_the_route_come_back_by_themselves",
        &frr_config(),
        frr_restart_side,
    );
}

/// Runs inside the node namespace: FRR's bgpd is killed and started again under us.
fn frr_restart_side() {
    let router_ns = std::env::var("HERALD_FRR_ROUTER_NS").unwrap();
    let frr = std::env::var("HERALD_FRR_NAME").unwrap();
    let pid_file = format!("/var/run/frr/{frr}/bgpd.pid");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let peer = md5_peer(session(64512, 1), ROUTER);
        let routes = plain_routes(&["203.0.113.40/32"]);
        let mut manager = BgpManager::new(Some(&ListenConfig::default())).unwrap();
        manager.apply(&desired("router", peer, routes)).unwrap();
        let route_in_frr = || in_frr("ipv4", "203.0.113.40/32");
        established(&manager, "router").await;
        tokio::task::block_in_place(|| {
            wait_until("the route in FRR", Duration::from_secs(30), route_in_frr);
            let pid = std::fs::read_to_string(&pid_file).unwrap();
            must("kill", &[pid.trim()]);
        });
        assert!(
            manager
                .wait_for_state("router", State::Idle, Duration::from_secs(15))
                .await,
            "the loss of FRR went unnoticed"
        );
        tokio::task::block_in_place(|| {
            // Wait for the old bgpd to be gone before starting a new one.
            wait_until("bgpd to exit", Duration::from_secs(15), || {
                !Path::new(&pid_file).exists()
                    || run("pgrep", &["-F", &pid_file]).status.code() == Some(1)
            });
            start_frr_daemon(&router_ns, &frr, "bgpd", &pid_file);
            wait_until("the configuration to load", Duration::from_secs(20), || {
                run(
                    "ip",
                    &["netns", "exec", &router_ns, "vtysh", "-N", &frr, "-b"],
                )
                .status
                .success()
            });
        });
        let started = Instant::now();
        established(&manager, "router").await;
        tokio::task::block_in_place(|| {
            wait_until(
                "the route back in FRR",
                Duration::from_secs(30),
                route_in_frr,
            );
        });
        println!(
            "session and route back {:?} after bgpd restarted",
            started.elapsed()
        );
        manager.shutdown(StopReason::PeerDeconfigured).await;
    });
}

#[test]
fn over_ibgp_frr_receives_our_local_pref_and_an_empty_as_path() {
    let config = frr_router!(
        " no bgp default ipv4-unicast
 neighbor 192.0.2.11 remote-as 64500
 neighbor 192.0.2.11 timers 3 9
 neighbor 192.0.2.11 timers connect 2
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
 exit-address-family
"
    );
    lab_test(
        "g",
        "over_ibgp_frr_receives_our_local_pref_and_an_empty_as_path",
        config,
        ibgp_side,
    );
}

/// Runs inside the node namespace: an iBGP session (same ASN on both sides).
fn ibgp_side() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut session = session(64500, 1);
        session.families = vec![herald_speaker::bgp::codec::Family::Ipv4Unicast];
        let peer = PeerConfig::new(session, ROUTER);
        let attributes = RouteAttributes {
            local_pref: Some(250),
            ..Default::default()
        };
        let routes: BTreeMap<IpNet, RouteAttributes> =
            [("203.0.113.50/32".parse().unwrap(), attributes)].into();
        let mut manager = BgpManager::new(None).unwrap();
        manager.apply(&desired("router", peer, routes)).unwrap();
        established(&manager, "router").await;
        tokio::task::block_in_place(|| {
            wait_until("the route in FRR", Duration::from_secs(30), || {
                lab_json("show bgp ipv4 unicast 203.0.113.50/32 json")["paths"][0].is_object()
            });
            let path = &lab_json("show bgp ipv4 unicast 203.0.113.50/32 json")["paths"][0];
            assert_eq!(path["locPrf"], 250, "LOCAL_PREF: {path}");
            assert_eq!(path["aspath"]["length"], 0, "AS_PATH: {path}");
        });
        manager.shutdown(StopReason::PeerDeconfigured).await;
    });
}

/// Waits (bounded) for the session to "router" to report an error `accept` takes, asserting
/// it never reaches Established meanwhile; returns that error.
async fn first_error(
    manager: &BgpManager,
    what: &str,
    accept: impl Fn(&SessionError) -> bool,
) -> SessionError {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = manager.status()["router"].session.clone();
        assert_ne!(status.state, State::Established);
        if let Some(error) = status.last_error.as_ref().filter(|e| accept(e)) {
            return error.clone();
        }
        assert!(Instant::now() < deadline, "no {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs inside the node namespace: first our ASN is not the one FRR expects, then the ASN is
/// right but the MD5 password is wrong.
fn misconfigured_side() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let wrong_asn = md5_peer(session(64513, 1), ROUTER);
        let mut manager = BgpManager::new(None).unwrap();
        manager
            .apply(&desired("router", wrong_asn, BTreeMap::new()))
            .unwrap();
        let error = first_error(&manager, "Bad Peer AS", |e| {
            matches!(e, SessionError::NotificationReceived(_))
        })
        .await;
        let SessionError::NotificationReceived(n) = &error else {
            unreachable!("first_error returns only what it accepts")
        };
        assert_eq!((n.code, n.subcode), (2, 2), "FRR answers Bad Peer AS");
        println!("wrong ASN: {error}");

        let mut wrong_password = PeerConfig::new(session(64512, 1), ROUTER);
        wrong_password.password = Some("not-the-password".into());
        manager
            .apply(&desired("router", wrong_password, BTreeMap::new()))
            .unwrap();
        // FRR's kernel drops our unsigned-for-it SYNs: the connection never comes up.
        let error = first_error(&manager, "connect failure", |e| {
            *e == SessionError::ConnectFailed
        })
        .await;
        println!("wrong password: {error}");
        manager.shutdown(StopReason::PeerDeconfigured).await;
    });
}

/// Runs inside the node namespace.
fn herald_side() {
    let router_ns = std::env::var("HERALD_FRR_ROUTER_NS").unwrap();
    let (vtysh, json) = (lab_vtysh, lab_json);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut session = session(64512, 2);
        session.next_hop_v6 = Some("2001:db8:1::11".parse().unwrap());
        let peer = md5_peer(session, ROUTER);
        let v4: IpNet = "203.0.113.10/32".parse().unwrap();
        let v6: IpNet = "2001:db8:100::10/128".parse().unwrap();
        let attributes = RouteAttributes {
            communities: vec![(64512 << 16) | 100],
            large_communities: vec![LargeCommunity {
                global_admin: 64512,
                local_data_1: 1,
                local_data_2: 2,
            }],
            link_bandwidth_bytes_per_sec: Some(750_000),
            ..Default::default()
        };
        let routes: BTreeMap<IpNet, RouteAttributes> =
            [(v4, attributes), (v6, RouteAttributes::default())].into();
        let mut desired = desired("router", peer, routes);
        let mut manager = BgpManager::new(Some(&ListenConfig::default())).unwrap();
        manager.apply(&desired).unwrap();
        let started = Instant::now();
        established(&manager, "router").await;
        println!("established after {:?}", started.elapsed());

        tokio::task::block_in_place(|| {
            wait_until("the IPv4 route in FRR", Duration::from_secs(30), || {
                in_frr("ipv4", "203.0.113.10/32")
            });
            println!("route in FRR after {:?}", started.elapsed());
            let detail = vtysh("show bgp ipv4 unicast 203.0.113.10/32 json");
            assert!(detail.contains("64512:100"), "community missing: {detail}");
            assert!(
                detail.contains("64512:1:2"),
                "large community missing: {detail}"
            );
            assert!(
                detail.contains("LB:64512:750000"),
                "link bandwidth missing: {detail}"
            );
            assert!(detail.contains("192.0.2.11"), "next hop missing: {detail}");
            let path = &json("show bgp ipv4 unicast 203.0.113.10/32 json")["paths"][0];
            assert_eq!(path["aspath"]["string"], "64512", "AS_PATH as FRR reads it");
            wait_until("the IPv6 route in FRR", Duration::from_secs(30), || {
                in_frr("ipv6", "2001:db8:100::10/128")
            });
            wait_until(
                "the route in the router's kernel",
                Duration::from_secs(30),
                || {
                    let out = run("ip", &["-n", &router_ns, "route", "show", "203.0.113.10"]);
                    String::from_utf8_lossy(&out.stdout).contains("via 192.0.2.11")
                },
            );
        });

        // Withdraw everything: FRR forgets both routes.
        desired.routes.clear();
        manager.apply(&desired).unwrap();
        tokio::task::block_in_place(|| {
            wait_until("the withdrawals", Duration::from_secs(30), || {
                !in_frr("ipv4", "203.0.113.10/32") && !in_frr("ipv6", "2001:db8:100::10/128")
            });
        });

        // A clean shutdown reaches FRR as a Cease.
        manager
            .shutdown(StopReason::AdministrativeShutdown(
                "herald test done".into(),
            ))
            .await;
        tokio::task::block_in_place(|| {
            wait_until("FRR to see the Cease", Duration::from_secs(30), || {
                let neighbor = vtysh("show bgp neighbors 192.0.2.11 json");
                !neighbor.contains("\"bgpState\":\"Established\"")
                    && neighbor.contains("Administrative Shutdown")
            });
        });
    });
}

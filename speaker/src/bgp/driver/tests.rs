//! The BGP driver against real sockets on loopback: sessions, collisions, MD5, shutdown.

use super::*;
use crate::bgp::fsm::SessionConfig;

#[test]
fn the_md5_option_has_the_kernels_216_byte_layout() {
    assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    assert_eq!(std::mem::offset_of!(TcpMd5Sig, flags), 128);
    assert_eq!(std::mem::offset_of!(TcpMd5Sig, key_len), 130);
    assert_eq!(std::mem::offset_of!(TcpMd5Sig, ifindex), 132);
    assert_eq!(std::mem::offset_of!(TcpMd5Sig, key), 136);
}

#[test]
fn sockaddr_bytes_put_family_and_address_where_the_kernel_reads_them() {
    let v4 = sockaddr_bytes("192.0.2.1".parse().unwrap());
    assert_eq!(u16::from_ne_bytes([v4[0], v4[1]]), libc::AF_INET as u16);
    assert_eq!(&v4[4..8], &[192, 0, 2, 1]);
    let v6 = sockaddr_bytes("2001:db8::1".parse().unwrap());
    assert_eq!(u16::from_ne_bytes([v6[0], v6[1]]), libc::AF_INET6 as u16);
    assert_eq!(v6[8..10], [0x20, 0x01]);
}

#[test]
fn single_hop_ebgp_sends_with_ttl_1_multihop_with_255_and_ibgp_with_the_default() {
    let ebgp = PeerConfig::new(
        SessionConfig::new(64512, 64500, Ipv4Addr::new(192, 0, 2, 11)),
        "192.0.2.1".parse().unwrap(),
    );
    assert_eq!(ebgp.ttl(), Some(1));
    let multihop = PeerConfig {
        ebgp_multihop: true,
        ..ebgp.clone()
    };
    assert_eq!(multihop.ttl(), Some(255));
    let ibgp = PeerConfig::new(
        SessionConfig::new(64512, 64512, Ipv4Addr::new(192, 0, 2, 11)),
        "192.0.2.1".parse().unwrap(),
    );
    assert_eq!(ibgp.ttl(), None);
}

#[test]
fn an_md5_key_longer_than_80_bytes_is_refused_before_any_syscall() {
    let key = [b'k'; 81];
    assert!(matches!(
        set_tcp_md5(-1, "192.0.2.1".parse().unwrap(), Some(&key)),
        Err(DriverError::Md5KeyTooLong)
    ));
}

#[test]
fn ipv4_mapped_peer_addresses_are_matched_as_ipv4() {
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(canonical(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
}

/// Two managers on loopback, one active and one passive, reach Established over real TCP
/// and the route arrives; then the passive side is removed and the active one notices.
#[tokio::test]
async fn two_managers_peer_over_loopback_tcp_and_exchange_routes() {
    // The passive side listens on an ephemeral port of 127.0.0.1.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let listen = ListenConfig {
        addresses: vec!["127.0.0.1".parse().unwrap()],
        port,
    };
    let mut passive = BgpManager::new(Some(&listen)).unwrap();
    let mut passive_session = SessionConfig::new(64500, 64512, Ipv4Addr::new(192, 0, 2, 1));
    passive_session.passive = true;
    passive_session.hold_time_secs = 3;
    let mut passive_peer = PeerConfig::new(passive_session, "127.0.0.2".parse().unwrap());
    passive_peer.ebgp_multihop = true;
    passive
        .apply(&DesiredBgp {
            peers: [("active".to_string(), passive_peer)].into(),
            routes: BTreeMap::new(),
        })
        .unwrap();

    let mut active = BgpManager::new(None).unwrap();
    let mut active_session = SessionConfig::new(64512, 64500, Ipv4Addr::new(192, 0, 2, 11));
    active_session.hold_time_secs = 3;
    active_session.connect_retry = Duration::from_millis(500);
    let mut active_peer = PeerConfig::new(active_session, "127.0.0.1".parse().unwrap());
    active_peer.peer_port = port;
    active_peer.source_address = Some("127.0.0.2".parse().unwrap());
    active_peer.ebgp_multihop = true;
    let routes: BTreeMap<IpNet, RouteAttributes> = [(
        "203.0.113.10/32".parse().unwrap(),
        RouteAttributes::default(),
    )]
    .into();
    active
        .apply(&DesiredBgp {
            peers: [("passive".to_string(), active_peer)].into(),
            routes: [("passive".to_string(), routes)].into(),
        })
        .unwrap();

    assert!(
        active
            .wait_for_state("passive", State::Established, Duration::from_secs(10))
            .await
    );
    assert!(
        passive
            .wait_for_state("active", State::Established, Duration::from_secs(10))
            .await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while active.status()["passive"].session.prefixes_advertised != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "route not advertised"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while passive.status()["active"]
        .session
        .end_of_rib_received
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no End-of-RIB at the passive side"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Removing the peer on the passive side sends a Cease; the active side drops to Idle.
    passive.apply(&DesiredBgp::default()).unwrap();
    assert!(
        active
            .wait_for_state("passive", State::Idle, Duration::from_secs(5))
            .await
    );
    let error = active.status()["passive"].session.last_error.clone();
    assert!(
        matches!(error, Some(super::super::fsm::SessionError::NotificationReceived(ref n)) if n.code == 6 && n.subcode == 3),
        "{error:?}"
    );
    active
        .shutdown(StopReason::AdministrativeShutdown("test over".into()))
        .await;
    passive
        .shutdown(StopReason::AdministrativeShutdown("test over".into()))
        .await;
}

/// A passive manager on an ephemeral loopback port and the peer config that reaches it.
fn loopback_pair(hold_time_secs: u16) -> (BgpManager, PeerConfig) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let listen = ListenConfig {
        addresses: vec!["127.0.0.1".parse().unwrap()],
        port,
    };
    let mut passive = BgpManager::new(Some(&listen)).unwrap();
    let mut session = SessionConfig::new(64500, 64512, Ipv4Addr::new(192, 0, 2, 1));
    session.passive = true;
    let mut peer = PeerConfig::new(session, "127.0.0.3".parse().unwrap());
    peer.ebgp_multihop = true;
    passive
        .apply(&DesiredBgp {
            peers: [("active".to_string(), peer)].into(),
            routes: BTreeMap::new(),
        })
        .unwrap();
    let mut session = SessionConfig::new(64512, 64500, Ipv4Addr::new(192, 0, 2, 11));
    session.hold_time_secs = hold_time_secs;
    session.connect_retry = Duration::from_millis(500);
    session.backoff.initial = Duration::from_millis(100);
    let mut active = PeerConfig::new(session, "127.0.0.1".parse().unwrap());
    active.peer_port = port;
    active.source_address = Some("127.0.0.3".parse().unwrap());
    active.ebgp_multihop = true;
    (passive, active)
}

#[tokio::test]
async fn a_changed_peer_config_restarts_its_session_and_a_repeated_apply_changes_nothing() {
    let (passive, active_peer) = loopback_pair(30);
    let mut active = BgpManager::new(None).unwrap();
    let mut desired = DesiredBgp {
        peers: [("p".to_string(), active_peer.clone())].into(),
        routes: BTreeMap::new(),
    };
    active.apply(&desired).unwrap();
    assert!(
        passive
            .wait_for_state("active", State::Established, Duration::from_secs(10))
            .await
    );
    let hold = |m: &BgpManager, name: &str| {
        m.status()[name]
            .session
            .negotiated
            .as_ref()
            .map(|n| n.hold_time)
    };
    assert_eq!(hold(&passive, "active"), Some(Duration::from_secs(30)));

    // The same desired state again: the session stays as it is.
    active.apply(&desired).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active.status()["p"].session.state, State::Established);
    assert_eq!(active.status()["p"].session.consecutive_failures, 0);
    assert_eq!(
        passive.status()["active"].session.last_error,
        None,
        "a restart would have reached the passive side as a Cease"
    );

    // A new hold time: the old session is stopped (Cease / Peer De-configured) and a new one
    // comes up with the new value.
    let mut changed = active_peer;
    changed.session.hold_time_secs = 15;
    desired.peers.insert("p".to_string(), changed);
    active.apply(&desired).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hold(&passive, "active") != Some(Duration::from_secs(15)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renegotiation: {:?}",
            passive.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        passive.status()["active"].session.last_error,
        Some(super::super::fsm::SessionError::NotificationReceived(ref n)) if (n.code, n.subcode) == (6, 3)
    ));
    active.shutdown(StopReason::PeerDeconfigured).await;
    passive.shutdown(StopReason::PeerDeconfigured).await;
}

//! FSM tests on virtual time: one session driven by hand, and two sessions wired to each other
//! through in-memory byte queues.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::*;
use crate::codec::{self, Capabilities, Family, Message, RouteAttributes, error_code, subcode};

const LOCAL_AS: u32 = 64512;
const PEER_AS: u32 = 64500;
const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL_ADDR: IpAddr = IpAddr::V4(LOCAL_ID);

fn config() -> SessionConfig {
    SessionConfig::new(LOCAL_AS, PEER_AS, LOCAL_ID)
}

fn peer_caps(asn: u32) -> Capabilities {
    Capabilities {
        four_octet_as: Some(asn),
        multiprotocol: vec![(1, 1), (2, 1)],
        route_refresh: true,
        graceful_restart: None,
        other: vec![],
    }
}

fn peer_open(asn: u32, hold: u16, id: Ipv4Addr) -> Message {
    Message::Open(codec::open_message(asn, hold, id, peer_caps(asn)))
}

fn routes(prefixes: &[&str]) -> BTreeMap<IpNet, RouteAttributes> {
    prefixes
        .iter()
        .map(|p| (p.parse().unwrap(), RouteAttributes::default()))
        .collect()
}

/// Decodes every SendBytes output to `conn`.
fn sent(outputs: &[Output], conn: ConnectionId) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendBytes { conn: c, bytes } if *c == conn => {
                Some(codec::decode(bytes).expect("we send valid messages"))
            }
            _ => None,
        })
        .collect()
}

fn notifications(outputs: &[Output], conn: ConnectionId) -> Vec<(u8, u8)> {
    sent(outputs, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Notification(n) => Some((n.code, n.subcode)),
            _ => None,
        })
        .collect()
}

fn closed(outputs: &[Output], conn: ConnectionId) -> bool {
    outputs.contains(&Output::CloseConnection { conn })
}

fn connect_id(outputs: &[Output]) -> ConnectionId {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn } => Some(*conn),
            _ => None,
        })
        .expect("a Connect output")
}

/// A session driven by hand through Start, TCP up, OPEN, KEEPALIVE.
struct Driven {
    session: Session,
    now: Instant,
    conn: ConnectionId,
}

impl Driven {
    fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        let mut session = Session::new(config);
        let out = session.handle(now, Input::Start);
        let conn = connect_id(&out);
        Self { session, now, conn }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.session.handle(self.now, input)
    }

    fn tcp_up(&mut self) -> Vec<Output> {
        let conn = self.conn;
        self.input(Input::TcpConnected {
            conn,
            direction: Direction::Outbound,
            local_address: LOCAL_ADDR,
        })
    }

    fn receive(&mut self, message: Message) -> Vec<Output> {
        let conn = self.conn;
        self.input(Input::MessageReceived { conn, message })
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.input(Input::TimerExpired)
    }

    fn open_confirm(&mut self, hold: u16) -> Vec<Output> {
        self.tcp_up();
        self.receive(peer_open(PEER_AS, hold, PEER_ID))
    }

    fn established(&mut self) -> Vec<Output> {
        self.open_confirm(90);
        self.receive(Message::Keepalive)
    }
}

// --- starting and connecting ------------------------------------------------------------------

#[test]
fn start_asks_for_an_outbound_connection_and_moves_to_connect() {
    let mut session = Session::new(config());
    let out = session.handle(Instant::now(), Input::Start);
    connect_id(&out);
    assert_eq!(session.state(), State::Connect);
    assert!(out.contains(&Output::StateChanged {
        from: State::Idle,
        to: State::Connect
    }));
}

#[test]
fn a_passive_session_waits_in_active_without_connecting() {
    let mut session = Session::new(SessionConfig {
        passive: true,
        ..config()
    });
    let out = session.handle(Instant::now(), Input::Start);
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    assert_eq!(session.state(), State::Active);
    assert_eq!(
        session.poll_timeout(),
        None,
        "a passive session has no ConnectRetry"
    );
}

#[test]
fn a_failed_connect_goes_to_active_and_retries_after_connect_retry() {
    let mut d = Driven::new(config());
    let first = d.conn;
    let out = d.input(Input::TcpFailed { conn: first });
    assert_eq!(d.session.state(), State::Active);
    assert!(out.contains(&Output::Error(SessionError::ConnectFailed)));
    assert!(
        d.advance(DEFAULT_CONNECT_RETRY - Duration::from_millis(1))
            .is_empty()
    );
    let out = d.advance(Duration::from_millis(1));
    let second = connect_id(&out);
    assert_ne!(first, second);
    assert_eq!(d.session.state(), State::Connect);
}

#[test]
fn a_connect_that_hangs_past_connect_retry_is_abandoned_and_retried() {
    let mut d = Driven::new(config());
    let first = d.conn;
    let out = d.advance(DEFAULT_CONNECT_RETRY);
    assert!(closed(&out, first));
    assert_ne!(connect_id(&out), first);
}

#[test]
fn a_late_connection_for_an_abandoned_attempt_is_closed() {
    let mut d = Driven::new(config());
    let first = d.conn;
    d.advance(DEFAULT_CONNECT_RETRY);
    let out = d.input(Input::TcpConnected {
        conn: first,
        direction: Direction::Outbound,
        local_address: LOCAL_ADDR,
    });
    assert!(closed(&out, first));
    assert_eq!(d.session.state(), State::Connect);
}

#[test]
fn tcp_connected_sends_our_open_with_capabilities_and_moves_to_open_sent() {
    let mut d = Driven::new(SessionConfig {
        local_as: 4_200_000_001,
        ..config()
    });
    let out = d.tcp_up();
    assert_eq!(d.session.state(), State::OpenSent);
    let [Message::Open(open)] = &sent(&out, d.conn)[..] else {
        panic!("expected exactly our OPEN")
    };
    assert_eq!(open.my_as, codec::AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(open.hold_time_secs, 90);
    assert_eq!(open.bgp_identifier, LOCAL_ID);
    assert!(open.capabilities.route_refresh);
    assert_eq!(
        open.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(open.capabilities.graceful_restart, None);
}

#[test]
fn an_inbound_connection_before_start_is_refused() {
    let mut session = Session::new(config());
    let conn = session.allocate_connection_id();
    let out = session.handle(
        Instant::now(),
        Input::TcpConnected {
            conn,
            direction: Direction::Inbound,
            local_address: LOCAL_ADDR,
        },
    );
    assert_eq!(out, vec![Output::CloseConnection { conn }]);
    assert_eq!(session.state(), State::Idle);
}

#[test]
fn a_passive_session_answers_an_inbound_connection_with_its_open() {
    let mut session = Session::new(SessionConfig {
        passive: true,
        ..config()
    });
    let now = Instant::now();
    session.handle(now, Input::Start);
    let conn = session.allocate_connection_id();
    let out = session.handle(
        now,
        Input::TcpConnected {
            conn,
            direction: Direction::Inbound,
            local_address: LOCAL_ADDR,
        },
    );
    assert!(matches!(&sent(&out, conn)[..], [Message::Open(_)]));
    assert_eq!(session.state(), State::OpenSent);
}

// --- OPEN validation ----------------------------------------------------------------------------

#[test]
fn an_open_with_the_wrong_peer_asn_is_answered_with_bad_peer_as_notification() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let out = d.receive(peer_open(64999, 90, PEER_ID));
    assert_eq!(
        notifications(&out, d.conn),
        vec![(error_code::OPEN_MESSAGE, subcode::BAD_PEER_AS)]
    );
    assert!(closed(&out, d.conn));
    assert_eq!(d.session.state(), State::Idle);
    assert!(matches!(
        d.session.status().last_error,
        Some(SessionError::NotificationSent(_))
    ));
}

#[test]
fn a_two_octet_my_as_that_disagrees_with_the_four_octet_capability_is_bad_peer_as() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let mut open = codec::open_message(PEER_AS, 90, PEER_ID, peer_caps(PEER_AS));
    open.my_as = 64999;
    let out = d.receive(Message::Open(open));
    assert_eq!(notifications(&out, d.conn), vec![(2, 2)]);
}

#[test]
fn a_four_octet_peer_asn_is_accepted_through_as_trans_and_the_capability() {
    let mut d = Driven::new(SessionConfig {
        peer_as: 4_200_000_002,
        ..config()
    });
    d.tcp_up();
    let out = d.receive(peer_open(4_200_000_002, 90, PEER_ID));
    assert!(notifications(&out, d.conn).is_empty());
    assert_eq!(d.session.state(), State::OpenConfirm);
}

#[test]
fn a_peer_without_the_four_octet_capability_is_matched_on_my_as() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let mut open = codec::open_message(PEER_AS, 90, PEER_ID, peer_caps(PEER_AS));
    open.capabilities.four_octet_as = None;
    d.receive(Message::Open(open));
    assert_eq!(d.session.state(), State::OpenConfirm);
}

#[test]
fn an_open_with_hold_time_1_or_2_is_answered_with_unacceptable_hold_time() {
    for hold in [1, 2] {
        let mut d = Driven::new(config());
        d.tcp_up();
        let out = d.receive(peer_open(PEER_AS, hold, PEER_ID));
        assert_eq!(
            notifications(&out, d.conn),
            vec![(error_code::OPEN_MESSAGE, subcode::UNACCEPTABLE_HOLD_TIME)]
        );
    }
}

#[test]
fn an_open_with_a_zero_bgp_identifier_is_answered_with_bad_bgp_identifier() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let out = d.receive(peer_open(PEER_AS, 90, Ipv4Addr::UNSPECIFIED));
    assert_eq!(
        notifications(&out, d.conn),
        vec![(2, subcode::BAD_BGP_IDENTIFIER)]
    );
}

#[test]
fn an_ibgp_open_carrying_our_own_identifier_is_answered_with_bad_bgp_identifier() {
    let mut d = Driven::new(SessionConfig {
        peer_as: LOCAL_AS,
        ..config()
    });
    d.tcp_up();
    let out = d.receive(peer_open(LOCAL_AS, 90, LOCAL_ID));
    assert_eq!(
        notifications(&out, d.conn),
        vec![(2, subcode::BAD_BGP_IDENTIFIER)]
    );
}

#[test]
fn an_open_of_the_wrong_version_on_the_wire_gets_unsupported_version_with_version_4() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let mut open = codec::open_message(PEER_AS, 90, PEER_ID, peer_caps(PEER_AS));
    open.version = 3;
    let conn = d.conn;
    let out = d.input(Input::BytesReceived {
        conn,
        bytes: codec::encode_open(&open).unwrap(),
    });
    let Some(Message::Notification(n)) = sent(&out, conn).pop() else {
        panic!("expected a NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
}

#[test]
fn a_valid_open_is_answered_with_keepalive_and_moves_to_open_confirm() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let out = d.receive(peer_open(PEER_AS, 90, PEER_ID));
    assert_eq!(sent(&out, d.conn), vec![Message::Keepalive]);
    assert_eq!(d.session.state(), State::OpenConfirm);
}

// --- timers -------------------------------------------------------------------------------------

#[test]
fn the_negotiated_hold_time_is_the_smaller_and_keepalive_a_third_of_it() {
    let mut d = Driven::new(config());
    d.open_confirm(30);
    d.receive(Message::Keepalive);
    let negotiated = d.session.status().negotiated.unwrap();
    assert_eq!(negotiated.hold_time, Duration::from_secs(30));
    assert_eq!(negotiated.keepalive, Some(Duration::from_secs(10)));
    assert!(negotiated.four_octet_as);
}

#[test]
fn a_configured_keepalive_is_used_but_never_beyond_a_third_of_the_hold_time() {
    for (configured, expected) in [(5, 5), (60, 30)] {
        let mut d = Driven::new(SessionConfig {
            keepalive_secs: Some(configured),
            ..config()
        });
        d.open_confirm(90);
        d.receive(Message::Keepalive);
        let negotiated = d.session.status().negotiated.unwrap();
        assert_eq!(negotiated.keepalive, Some(Duration::from_secs(expected)));
    }
}

#[test]
fn keepalives_are_sent_every_keepalive_interval_once_established() {
    let mut d = Driven::new(config());
    d.established();
    for _ in 0..3 {
        assert!(sent(&d.advance(Duration::from_secs(29)), d.conn).is_empty());
        assert_eq!(
            sent(&d.advance(Duration::from_secs(1)), d.conn),
            vec![Message::Keepalive]
        );
        d.receive(Message::Keepalive);
    }
}

#[test]
fn hold_time_zero_means_no_keepalives_and_no_hold_timer() {
    let mut d = Driven::new(config());
    d.open_confirm(0);
    d.receive(Message::Keepalive);
    assert_eq!(d.session.state(), State::Established);
    assert_eq!(d.session.poll_timeout(), None);
    let negotiated = d.session.status().negotiated.unwrap();
    assert_eq!(negotiated.keepalive, None);
    assert!(d.advance(Duration::from_secs(3600)).is_empty());
    assert_eq!(d.session.state(), State::Established);
}

#[test]
fn the_status_counts_each_time_an_established_session_ends() {
    let mut d = Driven::new(config());
    assert_eq!(d.session.status().established_ended, 0);
    d.established();
    assert_eq!(d.session.status().established_ended, 0);
    let conn = d.conn;
    d.input(Input::TcpClosed { conn });
    assert_eq!(d.session.state(), State::Idle);
    assert_eq!(d.session.status().established_ended, 1);
    // Failing to connect again is not another flap.
    let out = d.advance(Backoff::default().initial);
    let conn = connect_id(&out);
    d.input(Input::TcpFailed { conn });
    assert_eq!(d.session.status().established_ended, 1);
}

#[test]
fn hold_timer_expiry_sends_hold_timer_expired_and_backs_off_to_idle() {
    let mut d = Driven::new(config());
    d.established();
    d.advance(Duration::from_secs(60));
    let out = d.advance(Duration::from_secs(30));
    assert!(notifications(&out, d.conn).contains(&(error_code::HOLD_TIMER_EXPIRED, 0)));
    assert!(closed(&out, d.conn));
    assert_eq!(d.session.state(), State::Idle);
    // Back-off over, it connects again by itself.
    let out = d.advance(Backoff::default().initial);
    connect_id(&out);
    assert_eq!(d.session.state(), State::Connect);
}

#[test]
fn bfd_down_closes_an_established_session_at_once_with_cease_bfd_down_and_backs_off() {
    let mut d = Driven::new(config());
    d.established();
    let out = d.input(Input::BfdDown);
    assert_eq!(
        notifications(&out, d.conn),
        vec![(error_code::CEASE, subcode::BFD_DOWN)]
    );
    assert!(closed(&out, d.conn));
    assert_eq!(d.session.state(), State::Idle);
    let out = d.advance(Backoff::default().initial);
    connect_id(&out);
    assert_eq!(d.session.state(), State::Connect);
}

#[test]
fn bfd_down_without_a_connection_changes_nothing() {
    let mut d = Driven::new(config());
    d.input(Input::Start);
    let state = d.session.state();
    assert!(d.input(Input::BfdDown).is_empty());
    assert_eq!(d.session.state(), state);
}

#[test]
fn a_peer_that_never_answers_our_open_hits_the_four_minute_open_sent_hold_time() {
    let mut d = Driven::new(config());
    d.tcp_up();
    assert!(
        d.advance(OPEN_SENT_HOLD_TIME - Duration::from_secs(1))
            .is_empty()
    );
    let out = d.advance(Duration::from_secs(1));
    assert_eq!(notifications(&out, d.conn), vec![(4, 0)]);
}

#[test]
fn consecutive_failures_double_the_idle_time_up_to_the_cap() {
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(8),
        stable_after: Duration::from_secs(60),
    };
    let mut d = Driven::new(SessionConfig {
        backoff: backoff.clone(),
        ..config()
    });
    let mut idle_times = Vec::new();
    for _ in 0..6 {
        d.tcp_up();
        let conn = d.conn;
        d.input(Input::TcpClosed { conn });
        assert_eq!(d.session.state(), State::Idle);
        let idle = d.session.poll_timeout().unwrap() - d.now;
        idle_times.push(idle.as_secs());
        let out = d.advance(idle);
        d.conn = connect_id(&out);
    }
    assert_eq!(idle_times, vec![1, 2, 4, 8, 8, 8]);
    assert_eq!(d.session.status().consecutive_failures, 6);
}

#[test]
fn a_session_that_stayed_established_for_the_stability_period_resets_the_back_off() {
    let mut d = Driven::new(config());
    for _ in 0..3 {
        d.tcp_up();
        let conn = d.conn;
        d.input(Input::TcpClosed { conn });
        let idle = d.session.poll_timeout().unwrap() - d.now;
        d.conn = connect_id(&d.advance(idle));
    }
    assert_eq!(d.session.status().consecutive_failures, 3);
    d.established();
    for _ in 0..3 {
        d.advance(Duration::from_secs(30));
        d.receive(Message::Keepalive);
    }
    let conn = d.conn;
    d.input(Input::TcpClosed { conn });
    assert_eq!(d.session.status().consecutive_failures, 1);
    assert_eq!(
        d.session.poll_timeout().unwrap() - d.now,
        Duration::from_secs(1)
    );
}

// --- unexpected messages ----------------------------------------------------------------------

#[test]
fn an_update_in_open_sent_is_an_fsm_error_with_subcode_1() {
    let mut d = Driven::new(config());
    d.tcp_up();
    let out = d.receive(Message::Update(Default::default()));
    assert_eq!(notifications(&out, d.conn), vec![(error_code::FSM, 1)]);
}

#[test]
fn an_update_in_open_confirm_is_an_fsm_error_with_subcode_2() {
    let mut d = Driven::new(config());
    d.open_confirm(90);
    let out = d.receive(Message::Update(Default::default()));
    assert_eq!(notifications(&out, d.conn), vec![(error_code::FSM, 2)]);
}

#[test]
fn an_open_in_established_is_an_fsm_error_with_subcode_3() {
    let mut d = Driven::new(config());
    d.established();
    let out = d.receive(peer_open(PEER_AS, 90, PEER_ID));
    assert_eq!(notifications(&out, d.conn), vec![(error_code::FSM, 3)]);
    assert_eq!(d.session.state(), State::Idle);
}

#[test]
fn a_garbled_header_is_answered_with_connection_not_synchronized() {
    let mut d = Driven::new(config());
    d.established();
    let conn = d.conn;
    let out = d.input(Input::BytesReceived {
        conn,
        bytes: vec![0; 19],
    });
    assert_eq!(notifications(&out, conn), vec![(1, 1)]);
    assert!(closed(&out, conn));
}

#[test]
fn a_header_with_length_18_on_the_wire_is_a_bad_message_length_not_a_crash() {
    let mut d = Driven::new(config());
    d.established();
    let conn = d.conn;
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&[0, 18, 4]);
    let out = d.input(Input::BytesReceived { conn, bytes });
    assert_eq!(notifications(&out, conn), vec![(1, 2)]);
}

#[test]
fn a_notification_from_the_peer_closes_the_connection_without_answering() {
    let mut d = Driven::new(config());
    d.established();
    let out = d.receive(Message::Notification(codec::NotificationMessage::new(
        6,
        2,
        vec![],
    )));
    assert!(notifications(&out, d.conn).is_empty());
    assert!(closed(&out, d.conn));
    assert!(matches!(
        d.session.status().last_error,
        Some(SessionError::NotificationReceived(_))
    ));
}

#[test]
fn updates_from_the_peer_are_ignored_but_keep_the_session_alive_and_end_of_rib_is_noted() {
    let mut d = Driven::new(config());
    d.established();
    d.advance(Duration::from_secs(80));
    let conn = d.conn;
    d.input(Input::BytesReceived {
        conn,
        bytes: codec::encode_end_of_rib(Family::Ipv4Unicast),
    });
    d.advance(Duration::from_secs(80));
    assert_eq!(d.session.state(), State::Established);
    assert_eq!(
        d.session.status().end_of_rib_received,
        vec![Family::Ipv4Unicast]
    );
}

// --- routes -----------------------------------------------------------------------------------

fn update_messages(out: &[Output], conn: ConnectionId) -> Vec<codec::UpdateMessage> {
    sent(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[test]
fn established_sends_the_whole_table_then_end_of_rib_for_each_negotiated_family() {
    let mut d = Driven::new(SessionConfig {
        next_hop_v6: Some("2001:db8:1::11".parse().unwrap()),
        ..config()
    });
    d.input(Input::SetRoutes(routes(&[
        "203.0.113.10/32",
        "203.0.113.11/32",
        "2001:db8:100::10/128",
    ])));
    let out = d.established();
    let updates = update_messages(&out, d.conn);
    assert_eq!(updates.len(), 4);
    assert_eq!(updates[0].nlri.len(), 2);
    assert_eq!(updates[1].mp_reach.as_ref().unwrap().nlri.len(), 1);
    assert_eq!(updates[2].end_of_rib(), Some(Family::Ipv4Unicast));
    assert_eq!(updates[3].end_of_rib(), Some(Family::Ipv6Unicast));
    assert!(out.contains(&Output::RoutesSent {
        announced: 3,
        withdrawn: 0,
        messages: 4
    }));
    assert!(out.contains(&Output::StateChanged {
        from: State::OpenConfirm,
        to: State::Established
    }));
    assert_eq!(d.session.status().prefixes_advertised, 3);
    assert_eq!(d.session.status().update_messages_sent, 4);
}

#[test]
fn the_next_hop_is_the_connection_local_address_unless_configured() {
    let mut d = Driven::new(config());
    d.input(Input::SetRoutes(routes(&["203.0.113.10/32"])));
    let out = d.established();
    let first = &update_messages(&out, d.conn)[0];
    assert_eq!(
        first.attribute(codec::attr_type::NEXT_HOP).unwrap().value,
        LOCAL_ID.octets().to_vec()
    );
}

#[test]
fn ipv6_routes_without_an_ipv6_next_hop_are_reported_and_ipv4_still_goes_out() {
    let mut d = Driven::new(config());
    d.input(Input::SetRoutes(routes(&[
        "203.0.113.10/32",
        "2001:db8:100::10/128",
    ])));
    let out = d.established();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Error(SessionError::Encode(_))))
    );
    assert_eq!(update_messages(&out, d.conn)[0].nlri.len(), 1);
    assert_eq!(d.session.status().prefixes_advertised, 1);
}

#[test]
fn changing_routes_while_established_sends_only_the_differences() {
    let mut d = Driven::new(config());
    d.input(Input::SetRoutes(routes(&[
        "203.0.113.10/32",
        "203.0.113.11/32",
    ])));
    d.established();
    let out = d.input(Input::SetRoutes(routes(&[
        "203.0.113.11/32",
        "203.0.113.12/32",
    ])));
    let updates = update_messages(&out, d.conn);
    assert_eq!(updates.len(), 2);
    assert_eq!(
        updates[0].withdrawn,
        vec!["203.0.113.10/32".parse().unwrap()]
    );
    assert_eq!(updates[1].nlri, vec!["203.0.113.12/32".parse().unwrap()]);
    assert!(out.contains(&Output::RoutesSent {
        announced: 1,
        withdrawn: 1,
        messages: 2
    }));
    // The same set again sends nothing.
    let out = d.input(Input::SetRoutes(routes(&[
        "203.0.113.11/32",
        "203.0.113.12/32",
    ])));
    assert!(update_messages(&out, d.conn).is_empty());
}

#[test]
fn a_changed_community_re_announces_the_prefix() {
    let mut d = Driven::new(config());
    d.input(Input::SetRoutes(routes(&["203.0.113.10/32"])));
    d.established();
    let mut changed = routes(&["203.0.113.10/32"]);
    changed.values_mut().for_each(|a| a.communities = vec![42]);
    let out = d.input(Input::SetRoutes(changed));
    let updates = update_messages(&out, d.conn);
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0]
            .attribute(codec::attr_type::COMMUNITIES)
            .is_some()
    );
}

#[test]
fn a_route_refresh_resends_the_table_for_that_family() {
    let mut d = Driven::new(config());
    d.input(Input::SetRoutes(routes(&["203.0.113.10/32"])));
    d.established();
    let out = d.receive(Message::RouteRefresh(codec::RouteRefreshMessage {
        afi: 1,
        safi: 1,
    }));
    let updates = update_messages(&out, d.conn);
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].end_of_rib(), Some(Family::Ipv4Unicast));
}

// --- stopping and graceful restart --------------------------------------------------------------

#[test]
fn stop_sends_cease_administrative_shutdown_with_the_communication() {
    let mut d = Driven::new(config());
    d.established();
    let out = d.input(Input::Stop(StopReason::AdministrativeShutdown(
        "node drained".into(),
    )));
    let Some(Message::Notification(n)) = sent(&out, d.conn).pop() else {
        panic!("expected a NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_communication().as_deref(), Some("node drained"));
    assert!(closed(&out, d.conn));
    assert_eq!(d.session.state(), State::Idle);
    assert_eq!(
        d.session.poll_timeout(),
        None,
        "a stopped session does not restart"
    );
}

#[test]
fn a_deconfigured_peer_gets_cease_peer_deconfigured() {
    let mut d = Driven::new(config());
    d.established();
    let out = d.input(Input::Stop(StopReason::PeerDeconfigured));
    assert_eq!(notifications(&out, d.conn), vec![(6, 3)]);
}

fn gr_config(restarting: bool) -> SessionConfig {
    SessionConfig {
        graceful_restart: Some(GracefulRestartConfig {
            restart_time_secs: 120,
            restarting,
        }),
        ..config()
    }
}

fn peer_open_with_gr() -> Message {
    let mut caps = peer_caps(PEER_AS);
    caps.graceful_restart = Some(codec::GracefulRestartCapability {
        restart_state: false,
        restart_time_secs: 120,
        families: vec![],
    });
    Message::Open(codec::open_message(PEER_AS, 90, PEER_ID, caps))
}

#[test]
fn a_restarting_stop_with_graceful_restart_negotiated_closes_without_notification() {
    let mut d = Driven::new(gr_config(false));
    d.tcp_up();
    d.receive(peer_open_with_gr());
    d.receive(Message::Keepalive);
    let out = d.input(Input::Stop(StopReason::Restarting));
    assert!(notifications(&out, d.conn).is_empty());
    assert!(closed(&out, d.conn));
}

#[test]
fn a_restarting_stop_without_peer_graceful_restart_sends_a_cease() {
    let mut d = Driven::new(gr_config(false));
    d.established();
    let out = d.input(Input::Stop(StopReason::Restarting));
    assert_eq!(notifications(&out, d.conn), vec![(6, 2)]);
}

#[test]
fn a_restarted_speaker_sets_the_restart_bit_until_it_has_sent_end_of_rib() {
    let mut d = Driven::new(gr_config(true));
    let out = d.tcp_up();
    let Some(Message::Open(open)) = sent(&out, d.conn).pop() else {
        panic!()
    };
    let gr = open.capabilities.graceful_restart.unwrap();
    assert!(gr.restart_state);
    assert_eq!(gr.restart_time_secs, 120);
    assert!(gr.families.iter().all(|f| f.forwarding_preserved));
    d.receive(peer_open_with_gr());
    d.receive(Message::Keepalive);
    // Next session: the R bit is clear.
    let conn = d.conn;
    d.input(Input::TcpClosed { conn });
    let idle = d.session.poll_timeout().unwrap() - d.now;
    d.conn = connect_id(&d.advance(idle));
    let out = d.tcp_up();
    let Some(Message::Open(open)) = sent(&out, d.conn).pop() else {
        panic!()
    };
    assert!(!open.capabilities.graceful_restart.unwrap().restart_state);
}

// --- collisions -----------------------------------------------------------------------------------

/// Outbound connection in OpenSent plus an inbound one; the peer's OPEN arrives on the inbound.
fn collide(
    local_id: Ipv4Addr,
    peer_id: Ipv4Addr,
) -> (Session, ConnectionId, ConnectionId, Vec<Output>) {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig {
        router_id: local_id,
        ..config()
    });
    let outbound = connect_id(&session.handle(now, Input::Start));
    session.handle(
        now,
        Input::TcpConnected {
            conn: outbound,
            direction: Direction::Outbound,
            local_address: LOCAL_ADDR,
        },
    );
    let inbound = session.allocate_connection_id();
    session.handle(
        now,
        Input::TcpConnected {
            conn: inbound,
            direction: Direction::Inbound,
            local_address: LOCAL_ADDR,
        },
    );
    let out = session.handle(
        now,
        Input::MessageReceived {
            conn: inbound,
            message: peer_open(PEER_AS, 90, peer_id),
        },
    );
    (session, outbound, inbound, out)
}

#[test]
fn on_collision_our_outbound_connection_wins_when_our_identifier_is_higher() {
    let (session, outbound, inbound, out) =
        collide(Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        notifications(&out, inbound),
        vec![(6, subcode::CONNECTION_COLLISION_RESOLUTION)]
    );
    assert!(closed(&out, inbound));
    assert!(!closed(&out, outbound));
    assert_eq!(
        session.state(),
        State::OpenSent,
        "the outbound one still awaits its OPEN"
    );
    assert_eq!(session.status().consecutive_failures, 0);
}

#[test]
fn on_collision_the_peers_connection_wins_when_its_identifier_is_higher() {
    let (session, outbound, inbound, out) =
        collide(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 200));
    assert_eq!(notifications(&out, outbound), vec![(6, 7)]);
    assert!(closed(&out, outbound));
    assert_eq!(sent(&out, inbound), vec![Message::Keepalive]);
    assert_eq!(session.state(), State::OpenConfirm);
}

#[test]
fn a_new_connection_colliding_with_an_established_one_is_rejected_without_graceful_restart() {
    let mut d = Driven::new(config());
    d.established();
    let inbound = d.session.allocate_connection_id();
    d.input(Input::TcpConnected {
        conn: inbound,
        direction: Direction::Inbound,
        local_address: LOCAL_ADDR,
    });
    let out = d.input(Input::MessageReceived {
        conn: inbound,
        message: peer_open(PEER_AS, 90, PEER_ID),
    });
    assert_eq!(notifications(&out, inbound), vec![(6, 7)]);
    assert_eq!(d.session.state(), State::Established);
}

#[test]
fn a_restarted_graceful_peer_reconnecting_replaces_the_established_connection() {
    let mut d = Driven::new(gr_config(false));
    d.tcp_up();
    d.receive(peer_open_with_gr());
    d.receive(Message::Keepalive);
    let old = d.conn;
    let inbound = d.session.allocate_connection_id();
    d.input(Input::TcpConnected {
        conn: inbound,
        direction: Direction::Inbound,
        local_address: LOCAL_ADDR,
    });
    let out = d.input(Input::MessageReceived {
        conn: inbound,
        message: peer_open_with_gr(),
    });
    assert!(closed(&out, old));
    assert!(notifications(&out, old).is_empty());
    assert_eq!(d.session.state(), State::OpenConfirm);
    let out = d.input(Input::MessageReceived {
        conn: inbound,
        message: Message::Keepalive,
    });
    assert_eq!(d.session.state(), State::Established);
    assert!(out.iter().any(|o| matches!(o, Output::RoutesSent { .. })));
}

// --- two speakers wired together -----------------------------------------------------------------

/// Two sessions joined by in-memory TCP: Connect outputs become connection pairs, SendBytes
/// become byte queues, CloseConnection reaches the other side as TcpClosed.
struct Pair {
    sessions: [Session; 2],
    now: Instant,
    /// (side, conn) -> (other side, other conn)
    links: BTreeMap<(usize, ConnectionId), (usize, ConnectionId)>,
    queue: VecDeque<(usize, Input)>,
    /// Whether each side accepts TCP connections (its "listener" is up).
    listening: [bool; 2],
    /// Everything each side has received as UPDATE.
    received_updates: [Vec<codec::UpdateMessage>; 2],
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Self {
        Self {
            sessions: [Session::new(a), Session::new(b)],
            now: Instant::now(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            listening: [true, true],
            received_updates: [Vec::new(), Vec::new()],
        }
    }

    fn address(side: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, if side == 0 { 11 } else { 1 }))
    }

    fn apply(&mut self, side: usize, outputs: Vec<Output>) {
        let other = 1 - side;
        for output in outputs {
            match output {
                Output::Connect { conn } => {
                    if self.listening[other] {
                        let theirs = self.sessions[other].allocate_connection_id();
                        self.links.insert((side, conn), (other, theirs));
                        self.links.insert((other, theirs), (side, conn));
                        self.queue.push_back((
                            side,
                            Input::TcpConnected {
                                conn,
                                direction: Direction::Outbound,
                                local_address: Self::address(side),
                            },
                        ));
                        self.queue.push_back((
                            other,
                            Input::TcpConnected {
                                conn: theirs,
                                direction: Direction::Inbound,
                                local_address: Self::address(other),
                            },
                        ));
                    } else {
                        self.queue.push_back((side, Input::TcpFailed { conn }));
                    }
                }
                Output::SendBytes { conn, bytes } => {
                    if let Some(&(to, their_conn)) = self.links.get(&(side, conn)) {
                        if let Ok(Message::Update(update)) = codec::decode(&bytes) {
                            self.received_updates[to].push(update);
                        }
                        self.queue.push_back((
                            to,
                            Input::BytesReceived {
                                conn: their_conn,
                                bytes,
                            },
                        ));
                    }
                }
                Output::CloseConnection { conn } => {
                    if let Some((to, their_conn)) = self.links.remove(&(side, conn)) {
                        self.links.remove(&(to, their_conn));
                        self.queue
                            .push_back((to, Input::TcpClosed { conn: their_conn }));
                    }
                }
                Output::StateChanged { .. } | Output::RoutesSent { .. } | Output::Error(_) => {}
            }
        }
    }

    fn input(&mut self, side: usize, input: Input) {
        let out = self.sessions[side].handle(self.now, input);
        self.apply(side, out);
        self.drain();
    }

    /// Starts both sides before either hears from the other: both connect out at once.
    fn start_both(&mut self) {
        let a = self.sessions[0].handle(self.now, Input::Start);
        let b = self.sessions[1].handle(self.now, Input::Start);
        self.apply(0, a);
        self.apply(1, b);
        self.drain();
    }

    fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some((side, input)) = self.queue.pop_front() else {
                return;
            };
            let out = self.sessions[side].handle(self.now, input);
            self.apply(side, out);
        }
        panic!("message storm: the queue did not drain");
    }

    /// Advances virtual time to the next timer, at most `limit` ahead.
    fn step(&mut self, limit: Instant) -> bool {
        let next = self.sessions.iter().filter_map(|s| s.poll_timeout()).min();
        match next {
            Some(t) if t <= limit => {
                self.now = self.now.max(t);
                for side in 0..2 {
                    if self.sessions[side]
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                    {
                        self.input(side, Input::TimerExpired);
                    }
                }
                true
            }
            _ => {
                self.now = limit;
                false
            }
        }
    }

    fn run_for(&mut self, duration: Duration) {
        let limit = self.now + duration;
        for _ in 0..10_000 {
            if !self.step(limit) {
                return;
            }
        }
        panic!("too many timer events");
    }

    fn states(&self) -> [State; 2] {
        [self.sessions[0].state(), self.sessions[1].state()]
    }

    fn announced_to(&self, side: usize) -> Vec<IpNet> {
        // Replays the UPDATEs a side received into a table.
        let mut table = std::collections::BTreeSet::new();
        for update in &self.received_updates[side] {
            for w in &update.withdrawn {
                table.remove(&IpNet::V4(*w));
            }
            for n in &update.nlri {
                table.insert(IpNet::V4(*n));
            }
        }
        table.into_iter().collect()
    }
}

fn pair_configs() -> (SessionConfig, SessionConfig) {
    let a = SessionConfig {
        hold_time_secs: 9,
        ..SessionConfig::new(LOCAL_AS, PEER_AS, LOCAL_ID)
    };
    let b = SessionConfig {
        hold_time_secs: 9,
        ..SessionConfig::new(PEER_AS, LOCAL_AS, PEER_ID)
    };
    (a, b)
}

#[test]
fn two_speakers_reach_established_and_exchange_routes() {
    let (a, b) = pair_configs();
    let mut pair = Pair::new(a, b);
    pair.input(
        0,
        Input::SetRoutes(routes(&["203.0.113.10/32", "203.0.113.11/32"])),
    );
    pair.start_both();
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.states(), [State::Established, State::Established]);
    assert_eq!(
        pair.announced_to(1),
        vec![
            "203.0.113.10/32".parse::<IpNet>().unwrap(),
            "203.0.113.11/32".parse().unwrap()
        ]
    );
    // Both connected out at once; exactly one connection survived the collision, and the
    // losing one did not count as a failure.
    assert_eq!(pair.links.len(), 2);
    assert!(
        pair.sessions
            .iter()
            .all(|s| s.status().consecutive_failures == 0)
    );
    // Keepalives hold the session up over a long quiet period.
    pair.run_for(Duration::from_secs(600));
    assert_eq!(pair.states(), [State::Established, State::Established]);
    // Withdrawing one route reaches the other side.
    pair.input(0, Input::SetRoutes(routes(&["203.0.113.11/32"])));
    assert_eq!(
        pair.announced_to(1),
        vec!["203.0.113.11/32".parse::<IpNet>().unwrap()]
    );
    assert!(
        pair.sessions[1]
            .status()
            .end_of_rib_received
            .contains(&Family::Ipv4Unicast)
    );
}

#[test]
fn two_speakers_recover_after_one_side_drops_the_connection() {
    let (a, b) = pair_configs();
    let mut pair = Pair::new(a, b);
    pair.input(0, Input::SetRoutes(routes(&["203.0.113.10/32"])));
    pair.input(1, Input::Start);
    pair.input(0, Input::Start);
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.states(), [State::Established, State::Established]);

    // Side 1 goes away: its listener is down and it stops answering.
    pair.listening[1] = false;
    pair.input(
        1,
        Input::Stop(StopReason::AdministrativeShutdown("maintenance".into())),
    );
    assert_eq!(pair.sessions[0].state(), State::Idle);
    assert!(matches!(
        pair.sessions[0].status().last_error,
        Some(SessionError::NotificationReceived(_))
    ));
    pair.run_for(Duration::from_secs(30));
    assert_ne!(pair.sessions[0].state(), State::Established);

    // It comes back; side 0 reconnects on its own and re-sends its table.
    pair.received_updates[1].clear();
    pair.listening[1] = true;
    pair.input(1, Input::Start);
    pair.run_for(Duration::from_secs(60));
    assert_eq!(pair.states(), [State::Established, State::Established]);
    assert_eq!(
        pair.announced_to(1),
        vec!["203.0.113.10/32".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn a_silent_peer_is_detected_by_the_hold_timer_and_the_session_comes_back() {
    let (a, b) = pair_configs();
    let mut pair = Pair::new(a, b);
    pair.input(1, Input::Start);
    pair.input(0, Input::Start);
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.states(), [State::Established, State::Established]);
    // Cut the wire silently: bytes go nowhere, no close is seen.
    pair.links.clear();
    pair.run_for(Duration::from_secs(10));
    assert!(matches!(
        pair.sessions[0].status().last_error,
        Some(SessionError::NotificationSent(ref n)) if n.code == error_code::HOLD_TIMER_EXPIRED
    ));
    pair.run_for(Duration::from_secs(60));
    assert_eq!(pair.states(), [State::Established, State::Established]);
}

#[test]
fn our_own_late_outbound_connection_never_replaces_an_established_graceful_session() {
    // A passive-accepted session is Established; our outbound attempt completes afterwards.
    let now = Instant::now();
    let mut session = Session::new(gr_config(false));
    let outbound = connect_id(&session.handle(now, Input::Start));
    let inbound = session.allocate_connection_id();
    session.handle(
        now,
        Input::TcpConnected {
            conn: inbound,
            direction: Direction::Inbound,
            local_address: LOCAL_ADDR,
        },
    );
    session.handle(
        now,
        Input::MessageReceived {
            conn: inbound,
            message: peer_open_with_gr(),
        },
    );
    let out = session.handle(
        now,
        Input::MessageReceived {
            conn: inbound,
            message: Message::Keepalive,
        },
    );
    assert_eq!(session.state(), State::Established);
    assert!(closed(&out, outbound), "the pending attempt is abandoned");
    // Even if that attempt's connection still shows up, it is refused.
    let out = session.handle(
        now,
        Input::TcpConnected {
            conn: outbound,
            direction: Direction::Outbound,
            local_address: LOCAL_ADDR,
        },
    );
    assert!(closed(&out, outbound));
    assert_eq!(session.state(), State::Established);
}

proptest::proptest! {
    /// Whatever an Established peer sends, the session answers with outputs, never a panic,
    /// and ends either still Established or Idle after a NOTIFICATION/close.
    #[test]
    fn an_established_session_never_panics_on_arbitrary_bytes(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), 0..8),
        valid_header in proptest::prelude::any::<bool>(),
    ) {
        let mut d = Driven::new(config());
        d.established();
        let conn = d.conn;
        for (i, mut bytes) in chunks.into_iter().enumerate() {
            if valid_header && i == 0 && bytes.len() >= 19 {
                bytes[..16].fill(0xff);
                let len = (bytes.len() as u16).to_be_bytes();
                bytes[16] = len[0];
                bytes[17] = len[1];
                bytes[18] = 1 + bytes[18] % 5;
            }
            d.input(Input::BytesReceived { conn, bytes });
        }
        let state = d.session.state();
        proptest::prop_assert!(matches!(state, State::Established | State::Idle));
    }
}

//! Tests of [`super`] (report.rs).

use std::net::IpAddr;

use ipnet::IpNet;

use super::*;
use crate::bgp::codec::RouteAttributes;
use crate::bgp::fsm::{Negotiated, SessionStatus};
use crate::planner::RouteAttributes as PlannedAttributes;

fn status(state: State, families: &[Family]) -> PeerStatus {
    PeerStatus {
        peer_address: "192.0.2.1".parse::<IpAddr>().expect("ip"),
        session: SessionStatus {
            state,
            prefixes_advertised: 2,
            consecutive_failures: 0,
            last_error: None,
            negotiated: (state == State::Established).then(|| Negotiated {
                hold_time: Duration::from_secs(9),
                keepalive: Some(Duration::from_secs(3)),
                four_octet_as: true,
                families: families.to_vec(),
                peer_id: "192.0.2.1".parse().expect("id"),
                peer_route_refresh: true,
                peer_graceful_restart: None,
            }),
            end_of_rib_received: vec![],
            update_messages_sent: 3,
            established_ended: 0,
        },
    }
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("lab", name)
}

fn net(text: &str) -> IpNet {
    text.parse().expect("prefix")
}

/// Two peers; `web` on a v4 and a v6 prefix, `db` on a v4 prefix, both to both peers.
fn plan_and_translation() -> (BgpPlan, Translation) {
    let mut plan = BgpPlan::default();
    let mut translation = Translation::default();
    for peer in ["v4", "v6"] {
        let routes = plan.routes.entry(peer.to_string()).or_default();
        for (prefix, service) in [
            ("203.0.113.10/32", "web"),
            ("2001:db8:100::10/128", "web"),
            ("203.0.113.11/32", "db"),
        ] {
            routes.insert(
                net(prefix),
                PlannedAttributes {
                    services: [key(service)].into(),
                    ..PlannedAttributes::default()
                },
            );
            translation
                .desired
                .routes
                .entry(peer.to_string())
                .or_default()
                .insert(net(prefix), RouteAttributes::default());
        }
    }
    (plan, translation)
}

#[test]
fn a_service_is_carried_by_established_peers_whose_negotiated_families_cover_its_prefix() {
    let (plan, translation) = plan_and_translation();
    let statuses: BTreeMap<String, PeerStatus> = [
        (
            "v4".to_string(),
            status(State::Established, &[Family::Ipv4Unicast]),
        ),
        (
            "v6".to_string(),
            status(State::Established, &[Family::Ipv6Unicast]),
        ),
    ]
    .into();
    let carried = carriers(&plan, &translation, &statuses);
    assert_eq!(
        carried[&key("web")],
        ["v4".to_string(), "v6".to_string()].into()
    );
    assert_eq!(carried[&key("db")], ["v4".to_string()].into());
}

#[test]
fn a_peer_that_is_not_established_carries_nothing() {
    let (plan, translation) = plan_and_translation();
    let statuses: BTreeMap<String, PeerStatus> = [
        ("v4".to_string(), status(State::Active, &[])),
        ("v6".to_string(), status(State::OpenConfirm, &[])),
    ]
    .into();
    assert!(carriers(&plan, &translation, &statuses).is_empty());
}

#[test]
fn a_prefix_left_out_of_the_sessions_routes_is_not_counted_as_carried() {
    let (plan, mut translation) = plan_and_translation();
    translation.desired.routes.remove("v6");
    let statuses: BTreeMap<String, PeerStatus> = [
        (
            "v4".to_string(),
            status(State::Established, &[Family::Ipv4Unicast]),
        ),
        (
            "v6".to_string(),
            status(
                State::Established,
                &[Family::Ipv4Unicast, Family::Ipv6Unicast],
            ),
        ),
    ]
    .into();
    let carried = carriers(&plan, &translation, &statuses);
    assert_eq!(carried[&key("web")], ["v4".to_string()].into());
}

#[test]
fn reports_say_why_a_peer_is_held_back_and_hint_at_md5_on_connect_failures() {
    let held = session_report(None, Some("Secret herald-system/x not found"), true);
    assert_eq!(held.state, BGPSessionState::Idle);
    assert_eq!(
        held.last_error.as_deref(),
        Some("not started: Secret herald-system/x not found")
    );
    let mut failing = status(State::Active, &[]);
    failing.session.last_error = Some(SessionError::ConnectFailed);
    let plain = session_report(Some(&failing), None, false);
    assert_eq!(plain.state, BGPSessionState::Active);
    assert_eq!(
        plain.last_error.as_deref(),
        Some("TCP connection to the peer failed")
    );
    let md5 = session_report(Some(&failing), None, true);
    assert!(
        md5.last_error
            .as_deref()
            .is_some_and(|e| e.contains("TCP-MD5"))
    );
    let up = session_report(Some(&status(State::Established, &[])), None, false);
    assert_eq!(up.state, BGPSessionState::Established);
    assert_eq!(up.advertised_prefixes, 2);
}

#[test]
fn a_bfd_session_is_written_beside_the_bgp_entry_and_a_change_of_its_state_is_a_write() {
    let mut book = StatusBook::new("n1");
    let t0 = Instant::now();
    let mut up = report(BGPSessionState::Established, 1);
    up.bfd = Some(bfd_report(
        BfdState::Up,
        Diagnostic::None,
        Some(Duration::from_millis(100)),
        Duration::from_millis(300),
    ));
    book.observe(
        &[("router".to_string(), up.clone())].into(),
        Timestamp::now(),
    );
    let [StatusWrite::Set { bfd: Some(bfd), .. }] = &book.due(t0, Duration::ZERO)[..] else {
        panic!("one write with a BFD entry");
    };
    assert_eq!(bfd.node, "n1");
    assert_eq!(bfd.state, "up");
    assert_eq!(bfd.diagnostic, None);
    assert_eq!(bfd.transmit_interval, Some(100));
    assert_eq!(bfd.detection_time, Some(300));
    assert!(
        book.due(t0, Duration::ZERO).is_empty(),
        "unchanged: no write"
    );

    let mut down = up;
    down.bfd = Some(bfd_report(
        BfdState::Down,
        Diagnostic::ControlDetectionTimeExpired,
        None,
        Duration::from_millis(300),
    ));
    book.observe(&[("router".to_string(), down)].into(), Timestamp::now());
    let [StatusWrite::Set { bfd: Some(bfd), .. }] = &book.due(t0, Duration::ZERO)[..] else {
        panic!("the BFD state change is written");
    };
    assert_eq!(bfd.state, "down");
    assert_eq!(
        bfd.diagnostic.as_deref(),
        Some("controlDetectionTimeExpired")
    );
}

fn report(state: BGPSessionState, prefixes: i64) -> SessionReport {
    SessionReport {
        bfd: None,
        state,
        last_error: None,
        advertised_prefixes: prefixes,
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("timestamp")
}

#[test]
fn status_is_written_on_change_only_and_at_most_once_per_interval() {
    let start = Instant::now();
    let interval = Duration::from_secs(1);
    let mut book = StatusBook::new("n1");
    book.observe(
        &[("router".into(), report(BGPSessionState::Connect, 0))].into(),
        at(0),
    );
    let first = book.due(start, interval);
    assert!(matches!(&first[..], [StatusWrite::Set { peer, entry, .. }]
        if peer == "router" && entry.node == "n1" && entry.state == BGPSessionState::Connect));
    assert!(
        book.due(start + interval * 5, interval).is_empty(),
        "unchanged"
    );

    book.observe(
        &[("router".into(), report(BGPSessionState::Established, 0))].into(),
        at(5),
    );
    book.observe(
        &[("router".into(), report(BGPSessionState::Established, 1))].into(),
        at(6),
    );
    let t = start + Duration::from_secs(6);
    let writes = book.due(t, interval);
    let [StatusWrite::Set { entry, .. }] = &writes[..] else {
        panic!("one write expected: {writes:?}");
    };
    assert_eq!(entry.advertised_prefixes, Some(1));
    assert_eq!(
        entry.last_transition_time,
        Some(Time(at(5))),
        "the transition time is the state change, not the prefix count change"
    );
    book.observe(
        &[("router".into(), report(BGPSessionState::Established, 2))].into(),
        at(6),
    );
    assert!(
        book.due(t + interval / 2, interval).is_empty(),
        "rate limited"
    );
    assert_eq!(book.due(t + interval, interval).len(), 1);
}

#[test]
fn a_failed_status_write_is_retried_and_a_peer_no_longer_planned_is_removed_once() {
    let start = Instant::now();
    let interval = Duration::from_secs(1);
    let mut book = StatusBook::new("n1");
    book.observe(
        &[("router".into(), report(BGPSessionState::Active, 0))].into(),
        at(0),
    );
    assert_eq!(book.due(start, interval).len(), 1);
    book.failed("router");
    assert!(
        book.due(start, interval).is_empty(),
        "not before the interval"
    );
    assert_eq!(book.due(start + interval, interval).len(), 1);

    book.observe(&BTreeMap::new(), at(2));
    let writes = book.due(start + interval * 2, interval);
    assert_eq!(
        writes,
        [StatusWrite::Remove {
            peer: "router".into()
        }]
    );
    assert!(book.due(start + interval * 3, interval).is_empty());
}

#[test]
fn entries_left_by_an_earlier_run_are_removed_unless_planned_again() {
    let mut book = StatusBook::new("n1");
    book.seed_existing(["old".to_string(), "router".to_string()], at(0));
    book.observe(
        &[("router".into(), report(BGPSessionState::Connect, 0))].into(),
        at(0),
    );
    let mut writes = book.due(Instant::now(), Duration::from_secs(1));
    writes.sort_by_key(|w| format!("{w:?}"));
    assert_eq!(writes.len(), 2);
    assert!(writes.contains(&StatusWrite::Remove { peer: "old".into() }));
    assert!(
        writes
            .iter()
            .any(|w| matches!(w, StatusWrite::Set { peer, .. } if peer == "router"))
    );
}

#[test]
fn annotations_wait_for_the_seed_then_write_changes_and_remove_stale_values() {
    let start = Instant::now();
    let interval = Duration::from_secs(1);
    let mut book = AnnotationBook::default();
    let carried: BTreeMap<ServiceKey, BTreeSet<String>> = [
        (key("web"), ["v4".to_string(), "v6".to_string()].into()),
        (key("db"), ["v4".to_string()].into()),
    ]
    .into();
    book.set_desired(&carried);
    assert!(book.due(start, interval).is_empty(), "not seeded yet");
    book.seed(
        [
            (key("db"), "v4".to_string()),
            (key("gone"), "v4".to_string()),
        ]
        .into(),
    );
    let mut writes = book.due(start, interval);
    writes.sort_by(|a, b| a.service.cmp(&b.service));
    assert_eq!(
        writes,
        [
            AnnotationWrite {
                service: key("gone"),
                value: None
            },
            AnnotationWrite {
                service: key("web"),
                value: Some("v4,v6".into())
            },
        ]
    );
    assert!(book.due(start + interval, interval).is_empty());

    book.set_desired(&[(key("web"), ["v4".to_string()].into())].into());
    let writes = book.due(start + interval * 3, interval);
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes.contains(&AnnotationWrite {
        service: key("db"),
        value: None
    }));
    assert!(writes.contains(&AnnotationWrite {
        service: key("web"),
        value: Some("v4".into())
    }));
}

#[test]
fn a_failed_annotation_write_is_retried() {
    let start = Instant::now();
    let interval = Duration::from_secs(1);
    let mut book = AnnotationBook::default();
    book.seed(BTreeMap::new());
    book.set_desired(&[(key("web"), ["v4".to_string()].into())].into());
    assert_eq!(book.due(start, interval).len(), 1);
    book.failed(&key("web"));
    assert!(book.due(start, interval).is_empty());
    assert_eq!(
        book.due(start + interval, interval),
        [AnnotationWrite {
            service: key("web"),
            value: Some("v4".into())
        }]
    );
}

#[test]
fn annotation_keys_use_the_node_name_or_a_hashed_short_form() {
    assert_eq!(annotation_key("node-1"), "bgp-peers.herald.dev/node-1");
    assert_eq!(
        annotation_key("worker.rack1.example.com"),
        "bgp-peers.herald.dev/worker.rack1.example.com"
    );
    let long = format!("{}.example.com", "a".repeat(70));
    let key = annotation_key(&long);
    let name = key.trim_start_matches(ANNOTATION_PREFIX);
    assert!(name.len() <= 63, "{name}");
    assert!(name.ends_with(|c: char| c.is_ascii_alphanumeric()));
    assert_ne!(
        key,
        annotation_key(&format!("{}.example.org", "a".repeat(70)))
    );
}

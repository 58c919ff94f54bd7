//! Tests of [`super`] (announcer.rs).

use super::*;
use crate::frames::{ALL_NODES_MULTICAST, NdpMessage, NeighborAdvertisement, NeighborSolicitation};
use std::net::Ipv4Addr;

const OUR_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]);
const OTHER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x00, 0x53, 0x02]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x00, 0x53, 0x03]);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn set(addresses: &[IpAddr]) -> BTreeSet<IpAddr> {
    addresses.iter().copied().collect()
}

fn transmitted(actions: &[Action], wanted: TransmitKind) -> Vec<Frame> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Transmit { frame, kind } if *kind == wanted => parse_frame(frame).ok(),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<AnnouncerEvent> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Event(event) => Some(*event),
            _ => None,
        })
        .collect()
}

/// An announcer that owns `addresses` (probing done, burst still running) at `t0 + 200ms`.
fn owning(addresses: &[IpAddr]) -> (Announcer, Instant) {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    announcer.set_addresses(t0, &set(addresses));
    let mut now = t0;
    for _ in 0..10 {
        let Some(next) = announcer.poll_timeout() else {
            break;
        };
        if announcer
            .phases()
            .all(|(_, phase)| phase == AddressPhase::Announcing)
        {
            break;
        }
        now = next;
        announcer.handle_timeout(now);
    }
    assert!(
        announcer
            .phases()
            .all(|(_, phase)| phase == AddressPhase::Announcing)
    );
    (announcer, now)
}

/// Runs the announcer's timers until `end`, returning (time, action) pairs.
fn run_until(announcer: &mut Announcer, from: Instant, end: Instant) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match announcer.poll_timeout() {
            Some(next) if next <= end => {
                for action in announcer.handle_timeout(next) {
                    out.push((next - from, action));
                }
            }
            _ => break,
        }
    }
    out
}

fn arp_frame_from(mac: MacAddr, destination: MacAddr, arp: ArpPacket) -> Vec<u8> {
    build_arp_frame(mac, destination, &arp)
}

/// Another node's gratuitous ARP request claiming [`VIP4`].
fn other_node_claims_vip4() -> Vec<u8> {
    arp_frame_from(
        OTHER_MAC,
        MacAddr::BROADCAST,
        ArpPacket::gratuitous_request(OTHER_MAC, VIP4),
    )
}

fn ns_frame(
    source_mac: MacAddr,
    destination_mac: MacAddr,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    slla: Option<MacAddr>,
) -> Vec<u8> {
    build_ndp_frame(
        source_mac,
        destination_mac,
        &NdpPacket {
            source,
            destination,
            hop_limit: 255,
            message: NdpMessage::Solicitation(NeighborSolicitation {
                target: VIP6,
                source_link_address: slla,
            }),
        },
    )
}

#[test]
fn a_new_ipv4_address_is_probed_twice_then_announced_by_gratuitous_request_and_reply() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    let first = announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4)]));
    let probes = transmitted(&first, TransmitKind::Probe);
    assert_eq!(probes.len(), 1);
    assert!(
        matches!(probes[0], Frame::Arp { arp, .. } if arp.is_probe() && arp.target_ip == VIP4 && arp.sender_mac == OUR_MAC)
    );
    assert_eq!(announcer.poll_timeout(), Some(t0 + ms(100)));
    assert_eq!(
        transmitted(&announcer.handle_timeout(t0 + ms(100)), TransmitKind::Probe).len(),
        1
    );
    assert!(
        announcer.handle_timeout(t0 + ms(150)).is_empty(),
        "nothing due between probes"
    );
    let taking = announcer.handle_timeout(t0 + ms(200));
    assert_eq!(
        events(&taking),
        vec![AnnouncerEvent::Announcing {
            address: IpAddr::V4(VIP4)
        }]
    );
    let announced = transmitted(&taking, TransmitKind::Announcement);
    let arps: Vec<ArpPacket> = announced
        .iter()
        .filter_map(|f| match f {
            Frame::Arp { ethernet, arp } if ethernet.destination.is_broadcast() => Some(*arp),
            _ => None,
        })
        .collect();
    assert_eq!(
        arps,
        vec![
            ArpPacket::gratuitous_request(OUR_MAC, VIP4),
            ArpPacket::gratuitous_reply(OUR_MAC, VIP4)
        ]
    );
    assert_eq!(announcer.counters().probes_sent, 2);
    assert_eq!(announcer.counters().announcements_sent, 2);
}

#[test]
fn announcements_repeat_in_a_burst_and_then_at_the_refresh_interval() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    let mut log: Vec<(Duration, Action)> = announcer
        .set_addresses(t0, &set(&[IpAddr::V6(VIP6)]))
        .into_iter()
        .map(|a| (Duration::ZERO, a))
        .collect();
    log.extend(run_until(&mut announcer, t0, t0 + Duration::from_secs(25)));
    let announced_at: Vec<Duration> = log
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Transmit {
                    kind: TransmitKind::Announcement,
                    ..
                }
            )
        })
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(
        announced_at,
        vec![ms(200), ms(700), ms(1200), ms(1700), ms(11_700), ms(21_700)]
    );
}

#[test]
fn with_probing_off_an_address_is_announced_at_once() {
    let t0 = Instant::now();
    let config = AnnouncerConfig {
        probe_count: 0,
        refresh_interval: None,
        burst_count: 0,
        ..AnnouncerConfig::default()
    };
    let mut announcer = Announcer::new(config, OUR_MAC);
    let actions = announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4)]));
    assert_eq!(transmitted(&actions, TransmitKind::Announcement).len(), 2);
    assert_eq!(
        announcer.poll_timeout(),
        None,
        "no burst, no refresh: nothing more to do"
    );
}

#[test]
fn a_takeover_skips_the_probe_and_announces_at_once_while_a_first_announcement_probes() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    let fresh = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 201));
    let actions = announcer.set_addresses_taking_over(
        t0,
        &set(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6), fresh]),
        &set(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6)]),
    );
    // Gratuitous ARP request + reply for the IPv4 takeover, one unsolicited NA for IPv6.
    assert_eq!(transmitted(&actions, TransmitKind::Announcement).len(), 3);
    assert_eq!(transmitted(&actions, TransmitKind::Probe).len(), 1);
    assert_eq!(
        events(&actions),
        vec![
            AnnouncerEvent::Announcing {
                address: IpAddr::V4(VIP4)
            },
            AnnouncerEvent::Announcing {
                address: IpAddr::V6(VIP6)
            },
        ]
    );
    assert!(actions.contains(&Action::JoinGroup(solicited_node_multicast(VIP6))));
    let phases: BTreeMap<IpAddr, AddressPhase> = announcer.phases().collect();
    assert_eq!(phases[&IpAddr::V4(VIP4)], AddressPhase::Announcing);
    assert_eq!(phases[&fresh], AddressPhase::Probing);
}

#[test]
fn a_takeover_of_an_address_still_probing_or_held_back_by_a_conflict_announces_it_at_once() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    let probing = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 201));
    announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4), probing]));
    let answer = arp_frame_from(
        OTHER_MAC,
        OUR_MAC,
        ArpPacket::reply_to(&ArpPacket::probe(OUR_MAC, VIP4), OTHER_MAC),
    );
    announcer.handle_frame(t0 + ms(10), &answer);
    // The other claimant was the owner and died: membership hands us both addresses.
    let actions = announcer.set_addresses_taking_over(
        t0 + ms(20),
        &set(&[IpAddr::V4(VIP4), probing]),
        &set(&[IpAddr::V4(VIP4), probing]),
    );
    assert_eq!(transmitted(&actions, TransmitKind::Announcement).len(), 4);
    assert!(
        announcer
            .phases()
            .all(|(_, phase)| phase == AddressPhase::Announcing)
    );
    // Asking again changes nothing: an announced address is not restarted.
    let again = announcer.set_addresses_taking_over(
        t0 + ms(30),
        &set(&[IpAddr::V4(VIP4), probing]),
        &set(&[IpAddr::V4(VIP4), probing]),
    );
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn ipv6_addresses_join_their_solicited_node_group_once_and_leave_when_the_last_user_goes() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    // Same low 24 bits, so the same solicited-node group.
    let other_prefix = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x200);
    let group = solicited_node_multicast(VIP6);
    let joined = announcer.set_addresses(t0, &set(&[IpAddr::V6(VIP6), IpAddr::V6(other_prefix)]));
    assert_eq!(
        joined
            .iter()
            .filter(|a| matches!(a, Action::JoinGroup(g) if *g == group))
            .count(),
        1
    );
    let one_left = announcer.set_addresses(t0, &set(&[IpAddr::V6(other_prefix)]));
    assert!(!one_left.iter().any(|a| matches!(a, Action::LeaveGroup(_))));
    assert_eq!(
        events(&one_left),
        vec![AnnouncerEvent::Released {
            address: IpAddr::V6(VIP6)
        }]
    );
    let none_left = announcer.set_addresses(t0, &BTreeSet::new());
    assert!(none_left.contains(&Action::LeaveGroup(group)));
    assert_eq!(announcer.poll_timeout(), None);
}

#[test]
fn an_arp_answer_during_probing_is_a_conflict_and_the_address_is_not_taken_until_a_retry_succeeds()
{
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4)]));
    let answer = arp_frame_from(
        OTHER_MAC,
        OUR_MAC,
        ArpPacket::reply_to(&ArpPacket::probe(OUR_MAC, VIP4), OTHER_MAC),
    );
    let actions = announcer.handle_frame(t0 + ms(10), &answer);
    assert_eq!(
        events(&actions),
        vec![AnnouncerEvent::ConflictWhileProbing {
            address: IpAddr::V4(VIP4),
            other_mac: OTHER_MAC,
            evidence: ConflictEvidence::ArpSenderAddress,
        }]
    );
    let later = run_until(&mut announcer, t0, t0 + ms(4_900));
    assert!(later.is_empty(), "nothing sent while conflicted: {later:?}");
    assert_eq!(
        announcer.phases().collect::<Vec<_>>(),
        vec![(IpAddr::V4(VIP4), AddressPhase::Conflicted)]
    );
    // 5 s after the conflict, probing starts over; nobody answers this time.
    let retry = run_until(&mut announcer, t0, t0 + ms(5_300));
    let probes = retry
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Transmit {
                    kind: TransmitKind::Probe,
                    ..
                }
            )
        })
        .count();
    assert_eq!(probes, 2);
    assert!(
        retry.iter().any(|(at, a)| *at == ms(5_210)
            && matches!(a, Action::Event(AnnouncerEvent::Announcing { .. })))
    );
    assert_eq!(announcer.counters().conflicts_detected, 1);
}

#[test]
fn another_host_probing_the_same_ipv4_address_at_the_same_time_is_a_conflict() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4)]));
    let their_probe = arp_frame_from(
        OTHER_MAC,
        MacAddr::BROADCAST,
        ArpPacket::probe(OTHER_MAC, VIP4),
    );
    assert!(matches!(
        events(&announcer.handle_frame(t0, &their_probe))[..],
        [AnnouncerEvent::ConflictWhileProbing {
            evidence: ConflictEvidence::ArpProbe,
            ..
        }]
    ));
}

#[test]
fn an_advertisement_or_a_dad_probe_from_another_node_during_ipv6_probing_is_a_conflict() {
    for (incoming, evidence) in [
        (
            build_ndp_frame(
                OTHER_MAC,
                MacAddr::BROADCAST,
                &NdpPacket::unsolicited_advertisement(OTHER_MAC, VIP6),
            ),
            ConflictEvidence::NeighborAdvertisement,
        ),
        (
            build_ndp_frame(
                OTHER_MAC,
                MacAddr::BROADCAST,
                &NdpPacket::duplicate_address_probe(VIP6),
            ),
            ConflictEvidence::DuplicateAddressProbe,
        ),
    ] {
        let t0 = Instant::now();
        let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
        announcer.set_addresses(t0, &set(&[IpAddr::V6(VIP6)]));
        assert_eq!(
            events(&announcer.handle_frame(t0, &incoming)),
            vec![AnnouncerEvent::ConflictWhileProbing {
                address: IpAddr::V6(VIP6),
                other_mac: OTHER_MAC,
                evidence
            }]
        );
        let after = run_until(&mut announcer, t0, t0 + ms(1_000));
        assert!(
            !after
                .iter()
                .any(|(_, a)| matches!(a, Action::Transmit { .. })),
            "{evidence:?}: {after:?}"
        );
    }
}

#[test]
fn arp_requests_for_an_owned_address_get_a_unicast_reply_and_others_do_not() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let request = ArpPacket {
        operation: ArpOperation::Request,
        sender_mac: CLIENT_MAC,
        sender_ip: CLIENT4,
        target_mac: MacAddr::ZERO,
        target_ip: VIP4,
    };
    let replies = transmitted(
        &announcer.handle_frame(
            now,
            &arp_frame_from(CLIENT_MAC, MacAddr::BROADCAST, request),
        ),
        TransmitKind::Reply,
    );
    assert_eq!(replies.len(), 1);
    let Frame::Arp { ethernet, arp } = replies[0] else {
        panic!("not ARP")
    };
    assert_eq!(ethernet.destination, CLIENT_MAC);
    assert_eq!(arp, ArpPacket::reply_to(&request, OUR_MAC));
    // Not ours, or unicast to another MAC: silence.
    let elsewhere = ArpPacket {
        target_ip: Ipv4Addr::new(192, 0, 2, 201),
        ..request
    };
    assert!(
        announcer
            .handle_frame(
                now,
                &arp_frame_from(CLIENT_MAC, MacAddr::BROADCAST, elsewhere)
            )
            .is_empty()
    );
    assert!(
        announcer
            .handle_frame(now, &arp_frame_from(CLIENT_MAC, OTHER_MAC, request))
            .is_empty()
    );
    assert_eq!(announcer.counters().arp_requests_answered, 1);
}

#[test]
fn requests_are_not_answered_while_the_address_is_still_being_probed() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6)]));
    let request = ArpPacket {
        operation: ArpOperation::Request,
        sender_mac: CLIENT_MAC,
        sender_ip: CLIENT4,
        target_mac: MacAddr::ZERO,
        target_ip: VIP4,
    };
    assert!(
        announcer
            .handle_frame(t0, &arp_frame_from(CLIENT_MAC, MacAddr::BROADCAST, request))
            .is_empty()
    );
    let ns = ns_frame(
        CLIENT_MAC,
        MacAddr::BROADCAST,
        CLIENT6,
        solicited_node_multicast(VIP6),
        Some(CLIENT_MAC),
    );
    assert!(announcer.handle_frame(t0, &ns).is_empty());
}

#[test]
fn an_arp_probe_for_an_owned_address_is_answered_and_reported() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let probe = ArpPacket::probe(OTHER_MAC, VIP4);
    let actions =
        announcer.handle_frame(now, &arp_frame_from(OTHER_MAC, MacAddr::BROADCAST, probe));
    let replies = transmitted(&actions, TransmitKind::Reply);
    assert!(
        matches!(replies[..], [Frame::Arp { arp, .. }] if arp.target_ip.is_unspecified() && arp.target_mac == OTHER_MAC)
    );
    assert!(matches!(
        events(&actions)[..],
        [AnnouncerEvent::ConflictWhileOwning {
            evidence: ConflictEvidence::ArpProbe,
            ..
        }]
    ));
}

fn advertisement_of(frame: &Frame) -> (MacAddr, Ipv6Addr, NeighborAdvertisement) {
    match frame {
        Frame::Ndp {
            ethernet,
            ndp:
                NdpPacket {
                    destination,
                    message: NdpMessage::Advertisement(na),
                    ..
                },
        } => (ethernet.destination, *destination, *na),
        other => panic!("not an NA: {other:?}"),
    }
}

#[test]
fn a_multicast_solicitation_is_answered_unicast_to_its_source_link_address_with_solicited_and_override()
 {
    let (mut announcer, now) = owning(&[IpAddr::V6(VIP6)]);
    let ns = ns_frame(
        CLIENT_MAC,
        MacAddr::BROADCAST,
        CLIENT6,
        solicited_node_multicast(VIP6),
        Some(CLIENT_MAC),
    );
    let replies = transmitted(&announcer.handle_frame(now, &ns), TransmitKind::Reply);
    assert_eq!(replies.len(), 1);
    let (mac, ip, na) = advertisement_of(&replies[0]);
    assert_eq!((mac, ip), (CLIENT_MAC, CLIENT6));
    assert!(na.solicited && na.override_entry);
    assert_eq!(na.target_link_address, Some(OUR_MAC));
    assert_eq!(announcer.counters().neighbor_solicitations_answered, 1);
}

#[test]
fn a_unicast_nud_probe_without_a_source_link_address_is_answered_to_the_frames_source() {
    let (mut announcer, now) = owning(&[IpAddr::V6(VIP6)]);
    let probe = ns_frame(CLIENT_MAC, OUR_MAC, CLIENT6, VIP6, None);
    let replies = transmitted(&announcer.handle_frame(now, &probe), TransmitKind::Reply);
    assert_eq!(
        replies.len(),
        1,
        "MetalLB leaves these unanswered; we must not"
    );
    let (mac, ip, na) = advertisement_of(&replies[0]);
    assert_eq!((mac, ip), (CLIENT_MAC, CLIENT6));
    assert!(na.solicited);
}

#[test]
fn a_dad_probe_for_an_owned_address_is_answered_to_all_nodes_and_reported() {
    let (mut announcer, now) = owning(&[IpAddr::V6(VIP6)]);
    let dad = build_ndp_frame(
        OTHER_MAC,
        MacAddr::BROADCAST,
        &NdpPacket::duplicate_address_probe(VIP6),
    );
    let actions = announcer.handle_frame(now, &dad);
    let replies = transmitted(&actions, TransmitKind::Reply);
    let (mac, ip, na) = advertisement_of(&replies[0]);
    assert_eq!(ip, ALL_NODES_MULTICAST);
    assert_eq!(mac, MacAddr::for_ipv6_multicast(ALL_NODES_MULTICAST));
    assert!(!na.solicited && na.override_entry);
    assert!(
        matches!(events(&actions)[..], [AnnouncerEvent::ConflictWhileOwning { evidence: ConflictEvidence::DuplicateAddressProbe, other_mac, .. }] if other_mac == OTHER_MAC)
    );
}

#[test]
fn another_mac_claiming_an_owned_address_is_reported_every_time_and_defended_once_per_interval() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let claim = other_node_claims_vip4();
    let first = announcer.handle_frame(now, &claim);
    assert_eq!(
        transmitted(&first, TransmitKind::Defence).len(),
        2,
        "gratuitous request and reply"
    );
    assert_eq!(
        events(&first),
        vec![AnnouncerEvent::ConflictWhileOwning {
            address: IpAddr::V4(VIP4),
            other_mac: OTHER_MAC,
            evidence: ConflictEvidence::ArpSenderAddress
        }]
    );
    let second = announcer.handle_frame(now + Duration::from_secs(9), &claim);
    assert!(
        transmitted(&second, TransmitKind::Defence).is_empty(),
        "within the defend interval"
    );
    assert_eq!(events(&second).len(), 1);
    let third = announcer.handle_frame(now + Duration::from_secs(10), &claim);
    assert_eq!(transmitted(&third, TransmitKind::Defence).len(), 2);
    assert_eq!(announcer.counters().conflicts_detected, 3);
    assert_eq!(
        announcer.phases().next(),
        Some((IpAddr::V4(VIP4), AddressPhase::Announcing)),
        "we keep announcing"
    );
}

#[test]
fn a_contested_address_is_given_up_without_defence_when_another_mac_claims_it_and_probed_again_later()
 {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6)]);
    announcer.set_contested(set(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6)]));
    let garp = other_node_claims_vip4();
    let actions = announcer.handle_frame(now, &garp);
    assert!(
        transmitted(&actions, TransmitKind::Defence).is_empty(),
        "a contested address is not defended: {actions:?}"
    );
    assert_eq!(
        events(&actions),
        vec![AnnouncerEvent::GaveWay {
            address: IpAddr::V4(VIP4),
            other_mac: OTHER_MAC,
            evidence: ConflictEvidence::ArpSenderAddress
        }]
    );
    let na = build_ndp_frame(
        OTHER_MAC,
        MacAddr::BROADCAST,
        &NdpPacket::unsolicited_advertisement(OTHER_MAC, VIP6),
    );
    let actions = announcer.handle_frame(now, &na);
    assert!(transmitted(&actions, TransmitKind::Defence).is_empty());
    assert!(matches!(
        events(&actions)[..],
        [AnnouncerEvent::GaveWay {
            evidence: ConflictEvidence::NeighborAdvertisement,
            ..
        }]
    ));
    assert!(
        announcer
            .phases()
            .all(|(_, phase)| phase == AddressPhase::Conflicted)
    );

    // Given up: requests for it go unanswered, and no refresh goes out...
    let request = ArpPacket {
        operation: ArpOperation::Request,
        sender_mac: CLIENT_MAC,
        sender_ip: CLIENT4,
        target_mac: MacAddr::ZERO,
        target_ip: VIP4,
    };
    let asked = announcer.handle_frame(
        now + ms(100),
        &arp_frame_from(CLIENT_MAC, MacAddr::BROADCAST, request),
    );
    assert!(asked.is_empty(), "{asked:?}");
    let retry = now + AnnouncerConfig::default().conflict_retry_interval;
    let quiet = run_until(&mut announcer, now, retry - ms(1));
    assert!(quiet.is_empty(), "{quiet:?}");
    // ...until the retry, which probes first (the owner would answer that probe).
    let later = run_until(&mut announcer, now, retry);
    let probes: Vec<_> = later
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Transmit {
                    kind: TransmitKind::Probe,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(probes.len(), 2, "one probe per address: {later:?}");
    assert!(later.iter().all(|(_, a)| !matches!(
        a,
        Action::Transmit {
            kind: TransmitKind::Announcement | TransmitKind::Defence,
            ..
        }
    )));
}

#[test]
fn only_the_contested_addresses_give_way_and_uncontesting_restores_the_defence() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let claim = other_node_claims_vip4();
    announcer.set_contested(set(&[IpAddr::V6(VIP6)]));
    let defended = announcer.handle_frame(now, &claim);
    assert_eq!(transmitted(&defended, TransmitKind::Defence).len(), 2);
    announcer.set_contested(set(&[IpAddr::V4(VIP4)]));
    announcer.set_contested(BTreeSet::new());
    let again = announcer.handle_frame(now + Duration::from_secs(10), &claim);
    assert_eq!(transmitted(&again, TransmitKind::Defence).len(), 2);
    assert_eq!(
        announcer.phases().next(),
        Some((IpAddr::V4(VIP4), AddressPhase::Announcing))
    );
}

#[test]
fn a_neighbor_advertisement_from_another_mac_for_an_owned_address_is_a_conflict() {
    let (mut announcer, now) = owning(&[IpAddr::V6(VIP6)]);
    let na = build_ndp_frame(
        OTHER_MAC,
        MacAddr::BROADCAST,
        &NdpPacket::unsolicited_advertisement(OTHER_MAC, VIP6),
    );
    let actions = announcer.handle_frame(now, &na);
    assert_eq!(transmitted(&actions, TransmitKind::Defence).len(), 1);
    assert!(matches!(
        events(&actions)[..],
        [AnnouncerEvent::ConflictWhileOwning {
            evidence: ConflictEvidence::NeighborAdvertisement,
            ..
        }]
    ));
}

#[test]
fn our_own_frames_echoed_back_by_the_packet_socket_are_ignored() {
    let t0 = Instant::now();
    let mut announcer = Announcer::new(AnnouncerConfig::default(), OUR_MAC);
    let mut sent = announcer.set_addresses(t0, &set(&[IpAddr::V4(VIP4), IpAddr::V6(VIP6)]));
    sent.extend(
        run_until(&mut announcer, t0, t0 + ms(2_000))
            .into_iter()
            .map(|(_, a)| a),
    );
    let mut echoed = 0;
    for action in sent {
        if let Action::Transmit { frame, .. } = action {
            assert!(announcer.handle_frame(t0 + ms(2_000), &frame).is_empty());
            echoed += 1;
        }
    }
    assert!(echoed >= 10);
    assert_eq!(announcer.counters().conflicts_detected, 0);
}

#[test]
fn malformed_frames_are_counted_and_ignored() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let mut bad = arp_frame_from(
        CLIENT_MAC,
        MacAddr::BROADCAST,
        ArpPacket::probe(CLIENT_MAC, VIP4),
    );
    bad[14 + 7] = 9; // unknown ARP operation
    assert!(announcer.handle_frame(now, &bad).is_empty());
    assert!(announcer.handle_frame(now, &[0u8; 5]).is_empty());
    assert_eq!(announcer.counters().malformed_frames, 2);
}

#[test]
fn a_released_address_is_no_longer_answered_or_announced() {
    let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
    let released = announcer.set_addresses(now, &BTreeSet::new());
    assert_eq!(
        events(&released),
        vec![AnnouncerEvent::Released {
            address: IpAddr::V4(VIP4)
        }]
    );
    let request = ArpPacket {
        operation: ArpOperation::Request,
        sender_mac: CLIENT_MAC,
        sender_ip: CLIENT4,
        target_mac: MacAddr::ZERO,
        target_ip: VIP4,
    };
    assert!(
        announcer
            .handle_frame(
                now,
                &arp_frame_from(CLIENT_MAC, MacAddr::BROADCAST, request)
            )
            .is_empty()
    );
    assert_eq!(announcer.poll_timeout(), None);
}

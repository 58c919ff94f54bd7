//! The per-interface layer-2 announcer: a sans-IO state machine.
//!
//! Owns, for one interface (one MAC), the life of every address this node should answer for:
//! probe before first use (RFC 5227 §2.1 for IPv4, RFC 4862 §5.4 duplicate address detection
//! for IPv6), announce at once on taking ownership (gratuitous ARP request and reply, RFC 5227
//! §2.3 / RFC 5944 §4.6; unsolicited Neighbor Advertisement with Override, RFC 4861 §7.2.6),
//! repeat in a short burst and then periodically (switch tables and neighbour caches age out),
//! answer ARP requests and Neighbor Solicitations — including unicast NUD probes and DAD
//! probes — and notice other MACs claiming our addresses.
//!
//! I/O stops at the [`Action`]s: frames to transmit, multicast groups to join or leave, and
//! events. Time is passed in; [`Announcer::poll_timeout`] says when to call
//! [`Announcer::handle_timeout`] next. The I/O edge is the speaker's `l2::io`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::frames::{
    ArpOperation, ArpPacket, EthernetHeader, Frame, MacAddr, NdpMessage, NdpPacket,
    build_arp_frame, build_ndp_frame, parse_frame, solicited_node_multicast,
};

/// Timing of probing, announcing and defending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// Probes sent before first announcing an address; 0 announces at once. RFC 5227 uses 3
    /// probes 1–2 s apart; we use a short window because a failover is waiting on it.
    pub probe_count: u32,
    /// Time between probes, and after the last probe before announcing.
    pub probe_interval: Duration,
    /// Announcements after the first one on taking ownership.
    pub burst_count: u32,
    /// Time between the announcements of the burst.
    pub burst_interval: Duration,
    /// Period of the refresh announcements after the burst; `None` for none.
    pub refresh_interval: Option<Duration>,
    /// After a probe found the address in use, wait this long and probe again.
    pub conflict_retry_interval: Duration,
    /// Defend an owned address against another claimant at most once per this interval
    /// (RFC 5227 §2.4 (b), DEFEND_INTERVAL 10 s), so that two claimants do not storm.
    pub defend_interval: Duration,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            probe_count: 2,
            probe_interval: Duration::from_millis(100),
            burst_count: 3,
            burst_interval: Duration::from_millis(500),
            refresh_interval: Some(Duration::from_secs(10)),
            conflict_retry_interval: Duration::from_secs(5),
            defend_interval: Duration::from_secs(10),
        }
    }
}

/// What a transmitted frame is for (logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    Probe,
    Announcement,
    Reply,
    Defence,
}

/// How we learned another node claims an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictEvidence {
    /// ARP with the address as sender IP (request, reply or gratuitous) from another MAC.
    ArpSenderAddress,
    /// An RFC 5227 probe for the address from another MAC.
    ArpProbe,
    /// A Neighbor Advertisement for the address from another MAC.
    NeighborAdvertisement,
    /// A duplicate address detection solicitation for the address from another MAC.
    DuplicateAddressProbe,
}

/// Something the speaker should know about (status, Events, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncerEvent {
    /// Probing found nobody else; the address is announced from now on.
    Announcing { address: IpAddr },
    /// Probing found the address in use; we do not take it and probe again later.
    ConflictWhileProbing {
        address: IpAddr,
        other_mac: MacAddr,
        evidence: ConflictEvidence,
    },
    /// Another MAC claims an address we announce.
    ConflictWhileOwning {
        address: IpAddr,
        other_mac: MacAddr,
        evidence: ConflictEvidence,
    },
    /// Another MAC claims a contested address we announce (see
    /// [`Announcer::set_contested`]): we stopped announcing it without defending it, and
    /// probe for it again later.
    GaveWay {
        address: IpAddr,
        other_mac: MacAddr,
        evidence: ConflictEvidence,
    },
    /// The address is no longer wanted here; we stopped answering for it.
    Released { address: IpAddr },
}

/// What the I/O edge must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Transmit {
        frame: Vec<u8>,
        kind: TransmitKind,
    },
    /// Start accepting frames for this IPv6 multicast group (a solicited-node group).
    JoinGroup(Ipv6Addr),
    /// Stop accepting them.
    LeaveGroup(Ipv6Addr),
    Event(AnnouncerEvent),
}

/// Counters since the announcer was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_received: u64,
    pub malformed_frames: u64,
    pub arp_requests_answered: u64,
    pub neighbor_solicitations_answered: u64,
    /// Gratuitous ARP requests and replies and unsolicited NAs sent (burst and refresh).
    pub announcements_sent: u64,
    pub probes_sent: u64,
    pub conflicts_detected: u64,
    pub defences_sent: u64,
}

/// Where an address is in its life, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPhase {
    Probing,
    Announcing,
    Conflicted,
}

#[derive(Debug, Clone)]
enum Phase {
    Probing {
        probes_sent: u32,
        next_at: Instant,
    },
    Conflicted {
        retry_at: Instant,
    },
    Announcing {
        burst_left: u32,
        next_at: Option<Instant>,
        last_defence: Option<Instant>,
    },
}

/// The state machine for one interface.
#[derive(Debug)]
pub struct Announcer {
    config: AnnouncerConfig,
    mac: MacAddr,
    addresses: BTreeMap<IpAddr, Phase>,
    /// Addresses given up rather than defended on a conflict.
    contested: BTreeSet<IpAddr>,
    counters: Counters,
}

impl Announcer {
    pub fn new(config: AnnouncerConfig, mac: MacAddr) -> Self {
        Announcer {
            config,
            mac,
            addresses: BTreeMap::new(),
            contested: BTreeSet::new(),
            counters: Counters::default(),
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Each wanted address and where it is.
    pub fn phases(&self) -> impl Iterator<Item = (IpAddr, AddressPhase)> + '_ {
        self.addresses.iter().map(|(address, phase)| {
            let phase = match phase {
                Phase::Probing { .. } => AddressPhase::Probing,
                Phase::Conflicted { .. } => AddressPhase::Conflicted,
                Phase::Announcing { .. } => AddressPhase::Announcing,
            };
            (*address, phase)
        })
    }

    /// Marks the addresses this node announces although another node is recorded as their
    /// announcer (this node took them while it could not see that node, e.g. cut off from
    /// its peers). When another MAC claims such an address, the claim is taken as that node
    /// being alive on the link: we give the address up at once (RFC 5227 §2.4 (a)) instead
    /// of defending it (§2.4 (b)), so that a node coming back from a partition does not pull
    /// the neighbour caches back to itself, and probe for it again after the conflict retry
    /// interval (the owner answers the probe, so we stay quiet while it lives). Other
    /// addresses are defended as before. Replaces the previous set.
    pub fn set_contested(&mut self, contested: BTreeSet<IpAddr>) {
        self.contested = contested;
    }

    /// Makes `wanted` the set of addresses this interface answers for. New addresses start
    /// probing (or are announced at once when probing is off); dropped ones are released.
    pub fn set_addresses(&mut self, now: Instant, wanted: &BTreeSet<IpAddr>) -> Vec<Action> {
        self.set_addresses_taking_over(now, wanted, &BTreeSet::new())
    }

    /// Like [`Announcer::set_addresses`], but the addresses of `wanted` that are also in
    /// `takeovers` skip the probe: they are announced at once, even if they were probing or
    /// held back by a conflict. For a takeover from an owner that membership reports dead,
    /// the RFC 5227 probe only adds delay — the dead owner cannot answer it, and a probe
    /// answered by a stale neighbour cache would wrongly block the failover.
    pub fn set_addresses_taking_over(
        &mut self,
        now: Instant,
        wanted: &BTreeSet<IpAddr>,
        takeovers: &BTreeSet<IpAddr>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let dropped: Vec<IpAddr> = self
            .addresses
            .keys()
            .filter(|address| !wanted.contains(address))
            .copied()
            .collect();
        for address in dropped {
            self.addresses.remove(&address);
            if let IpAddr::V6(v6) = address {
                let group = solicited_node_multicast(v6);
                if !self.group_in_use(group) {
                    actions.push(Action::LeaveGroup(group));
                }
            }
            actions.push(Action::Event(AnnouncerEvent::Released { address }));
        }
        for &address in wanted {
            let taking_over = takeovers.contains(&address);
            match self.addresses.get(&address) {
                Some(Phase::Announcing { .. }) => continue,
                Some(Phase::Probing { .. } | Phase::Conflicted { .. }) if taking_over => {
                    self.addresses
                        .insert(address, Self::announcing_now(now, &self.config));
                    actions.push(Action::Event(AnnouncerEvent::Announcing { address }));
                    continue;
                }
                Some(_) => continue,
                None => {}
            }
            if let IpAddr::V6(v6) = address {
                let group = solicited_node_multicast(v6);
                if !self.group_in_use(group) {
                    actions.push(Action::JoinGroup(group));
                }
            }
            if taking_over {
                self.addresses
                    .insert(address, Self::announcing_now(now, &self.config));
                actions.push(Action::Event(AnnouncerEvent::Announcing { address }));
            } else {
                self.addresses.insert(
                    address,
                    Phase::Probing {
                        probes_sent: 0,
                        next_at: now,
                    },
                );
            }
        }
        actions.extend(self.handle_timeout(now));
        actions
    }

    /// An address announced from `now` on: the first announcement at once, then the burst.
    fn announcing_now(now: Instant, config: &AnnouncerConfig) -> Phase {
        Phase::Announcing {
            burst_left: config.burst_count + 1,
            next_at: Some(now),
            last_defence: None,
        }
    }

    /// When [`Announcer::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.addresses
            .values()
            .filter_map(|phase| match phase {
                Phase::Probing { next_at, .. } => Some(*next_at),
                Phase::Conflicted { retry_at } => Some(*retry_at),
                Phase::Announcing { next_at, .. } => *next_at,
            })
            .min()
    }

    /// Sends due probes and announcements, moves probing addresses to announcing and retries
    /// conflicted ones.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let config = self.config.clone();
        let mac = self.mac;
        for (&address, phase) in &mut self.addresses {
            if let Phase::Conflicted { retry_at } = *phase
                && now >= retry_at
            {
                *phase = Phase::Probing {
                    probes_sent: 0,
                    next_at: now,
                };
            }
            if let Phase::Probing {
                probes_sent,
                next_at,
            } = phase
                && now >= *next_at
            {
                if *probes_sent < config.probe_count {
                    actions.push(Action::Transmit {
                        frame: probe_frame(mac, address),
                        kind: TransmitKind::Probe,
                    });
                    self.counters.probes_sent += 1;
                    *probes_sent += 1;
                    *next_at = now + config.probe_interval;
                } else {
                    actions.push(Action::Event(AnnouncerEvent::Announcing { address }));
                    *phase = Phase::Announcing {
                        burst_left: config.burst_count + 1,
                        next_at: Some(now),
                        last_defence: None,
                    };
                }
            }
            if let Phase::Announcing {
                burst_left,
                next_at: Some(next_at),
                ..
            } = phase
                && now >= *next_at
            {
                for frame in announcement_frames(mac, address) {
                    actions.push(Action::Transmit {
                        frame,
                        kind: TransmitKind::Announcement,
                    });
                    self.counters.announcements_sent += 1;
                }
                let after = if *burst_left > 0 {
                    *burst_left -= 1;
                    (*burst_left > 0).then_some(config.burst_interval)
                } else {
                    None
                };
                let after = after.or(config.refresh_interval);
                let due = after.map(|after| now + after);
                if let Phase::Announcing { next_at, .. } = phase {
                    *next_at = due;
                }
            }
        }
        actions
    }

    /// Handles one received Ethernet frame.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) -> Vec<Action> {
        self.counters.frames_received += 1;
        let frame = match parse_frame(bytes) {
            Ok(frame) => frame,
            Err(_) => {
                self.counters.malformed_frames += 1;
                return Vec::new();
            }
        };
        let ethernet = *frame.ethernet();
        if ethernet.source == self.mac
            || !(ethernet.destination == self.mac || ethernet.destination.is_multicast())
        {
            // Our own frames (a packet socket sees what we send) and unicast to someone else
            // (seen on promiscuous or bridged links) are not for us.
            return Vec::new();
        }
        match frame {
            Frame::Arp { arp, .. } => self.handle_arp(now, &ethernet, &arp),
            Frame::Ndp { ndp, .. } => self.handle_ndp(now, &ethernet, &ndp),
            Frame::Other { .. } => Vec::new(),
        }
    }

    fn handle_arp(
        &mut self,
        now: Instant,
        ethernet: &EthernetHeader,
        arp: &ArpPacket,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if arp.sender_mac == self.mac {
            return actions;
        }
        // A claim: another MAC uses one of our addresses as its sender address.
        if self.addresses.contains_key(&IpAddr::V4(arp.sender_ip)) {
            self.conflict(
                now,
                IpAddr::V4(arp.sender_ip),
                arp.sender_mac,
                ConflictEvidence::ArpSenderAddress,
                &mut actions,
            );
            return actions;
        }
        if arp.operation != ArpOperation::Request {
            return actions;
        }
        let target = IpAddr::V4(arp.target_ip);
        match self.addresses.get(&target) {
            Some(Phase::Announcing { .. }) => {
                let reply = ArpPacket::reply_to(arp, self.mac);
                actions.push(Action::Transmit {
                    frame: build_arp_frame(self.mac, ethernet.source, &reply),
                    kind: TransmitKind::Reply,
                });
                self.counters.arp_requests_answered += 1;
                if arp.is_probe() {
                    // Someone wants to start using our address; the reply tells them it is
                    // taken (RFC 5227 §2.1.1). Report it too.
                    self.report_conflict_while_owning(
                        target,
                        arp.sender_mac,
                        ConflictEvidence::ArpProbe,
                        &mut actions,
                    );
                }
            }
            Some(Phase::Probing { .. }) if arp.is_probe() => {
                // Two hosts probing at once: RFC 5227 §2.1.1 says both must back off.
                self.conflict(
                    now,
                    target,
                    arp.sender_mac,
                    ConflictEvidence::ArpProbe,
                    &mut actions,
                );
            }
            _ => {}
        }
        actions
    }

    fn handle_ndp(
        &mut self,
        now: Instant,
        ethernet: &EthernetHeader,
        ndp: &NdpPacket,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        match ndp.message {
            NdpMessage::Advertisement(na) => {
                let claimant = na.target_link_address.unwrap_or(ethernet.source);
                if claimant != self.mac && self.addresses.contains_key(&IpAddr::V6(na.target)) {
                    self.conflict(
                        now,
                        IpAddr::V6(na.target),
                        claimant,
                        ConflictEvidence::NeighborAdvertisement,
                        &mut actions,
                    );
                }
            }
            NdpMessage::Solicitation(ns) => {
                let target = IpAddr::V6(ns.target);
                let from_dad = ndp.source.is_unspecified();
                match self.addresses.get(&target) {
                    Some(Phase::Announcing { .. }) => {
                        // RFC 4861 §7.2.4: answer unicast to the solicitor (to all nodes for
                        // DAD), to its source link-layer option or, for a unicast NUD probe
                        // without one, to the frame's source.
                        let reply =
                            NdpPacket::solicited_advertisement(self.mac, ns.target, ndp.source);
                        let destination = ns.source_link_address.unwrap_or(ethernet.source);
                        actions.push(Action::Transmit {
                            frame: build_ndp_frame(self.mac, destination, &reply),
                            kind: TransmitKind::Reply,
                        });
                        self.counters.neighbor_solicitations_answered += 1;
                        if from_dad {
                            self.report_conflict_while_owning(
                                target,
                                ethernet.source,
                                ConflictEvidence::DuplicateAddressProbe,
                                &mut actions,
                            );
                        }
                    }
                    Some(Phase::Probing { .. }) if from_dad => {
                        // RFC 4862 §5.4.3: another node probing the same tentative address.
                        self.conflict(
                            now,
                            target,
                            ethernet.source,
                            ConflictEvidence::DuplicateAddressProbe,
                            &mut actions,
                        );
                    }
                    _ => {}
                }
            }
        }
        actions
    }

    /// Another MAC claims `address`: while probing we give it up for now; while owning we
    /// report it and defend at most once per defend interval (RFC 5227 §2.4 (b)), unless the
    /// address is contested: then we give it up as while probing (§2.4 (a)).
    fn conflict(
        &mut self,
        now: Instant,
        address: IpAddr,
        other_mac: MacAddr,
        evidence: ConflictEvidence,
        actions: &mut Vec<Action>,
    ) {
        let retry_at = now + self.config.conflict_retry_interval;
        let defend_interval = self.config.defend_interval;
        let mac = self.mac;
        let contested = self.contested.contains(&address);
        let Some(phase) = self.addresses.get_mut(&address) else {
            return;
        };
        match phase {
            Phase::Probing { .. } => {
                *phase = Phase::Conflicted { retry_at };
                self.counters.conflicts_detected += 1;
                actions.push(Action::Event(AnnouncerEvent::ConflictWhileProbing {
                    address,
                    other_mac,
                    evidence,
                }));
            }
            Phase::Conflicted { .. } => {}
            Phase::Announcing { .. } if contested => {
                *phase = Phase::Conflicted { retry_at };
                self.counters.conflicts_detected += 1;
                actions.push(Action::Event(AnnouncerEvent::GaveWay {
                    address,
                    other_mac,
                    evidence,
                }));
            }
            Phase::Announcing { last_defence, .. } => {
                let may_defend = last_defence.is_none_or(|last| now >= last + defend_interval);
                if may_defend {
                    *last_defence = Some(now);
                    for frame in announcement_frames(mac, address) {
                        actions.push(Action::Transmit {
                            frame,
                            kind: TransmitKind::Defence,
                        });
                        self.counters.defences_sent += 1;
                    }
                }
                self.report_conflict_while_owning(address, other_mac, evidence, actions);
            }
        }
    }

    fn report_conflict_while_owning(
        &mut self,
        address: IpAddr,
        other_mac: MacAddr,
        evidence: ConflictEvidence,
        actions: &mut Vec<Action>,
    ) {
        self.counters.conflicts_detected += 1;
        actions.push(Action::Event(AnnouncerEvent::ConflictWhileOwning {
            address,
            other_mac,
            evidence,
        }));
    }

    fn group_in_use(&self, group: Ipv6Addr) -> bool {
        self.addresses.keys().any(|address| match address {
            IpAddr::V6(v6) => solicited_node_multicast(*v6) == group,
            IpAddr::V4(_) => false,
        })
    }
}

fn probe_frame(mac: MacAddr, address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => build_arp_frame(mac, MacAddr::BROADCAST, &ArpPacket::probe(mac, v4)),
        IpAddr::V6(v6) => build_ndp_frame(
            mac,
            MacAddr::BROADCAST,
            &NdpPacket::duplicate_address_probe(v6),
        ),
    }
}

/// Gratuitous ARP request and reply for IPv4; one unsolicited NA with Override for IPv6.
fn announcement_frames(mac: MacAddr, address: IpAddr) -> Vec<Vec<u8>> {
    match address {
        IpAddr::V4(v4) => vec![
            build_arp_frame(
                mac,
                MacAddr::BROADCAST,
                &ArpPacket::gratuitous_request(mac, v4),
            ),
            build_arp_frame(
                mac,
                MacAddr::BROADCAST,
                &ArpPacket::gratuitous_reply(mac, v4),
            ),
        ],
        IpAddr::V6(v6) => vec![build_ndp_frame(
            mac,
            MacAddr::BROADCAST,
            &NdpPacket::unsolicited_advertisement(mac, v6),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{
        ALL_NODES_MULTICAST, NdpMessage, NeighborAdvertisement, NeighborSolicitation,
    };
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
    fn run_until(
        announcer: &mut Announcer,
        from: Instant,
        end: Instant,
    ) -> Vec<(Duration, Action)> {
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
        let joined =
            announcer.set_addresses(t0, &set(&[IpAddr::V6(VIP6), IpAddr::V6(other_prefix)]));
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
        assert!(retry.iter().any(|(at, a)| *at == ms(5_210)
            && matches!(a, Action::Event(AnnouncerEvent::Announcing { .. }))));
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
    fn another_mac_claiming_an_owned_address_is_reported_every_time_and_defended_once_per_interval()
    {
        let (mut announcer, now) = owning(&[IpAddr::V4(VIP4)]);
        let claim = arp_frame_from(
            OTHER_MAC,
            MacAddr::BROADCAST,
            ArpPacket::gratuitous_request(OTHER_MAC, VIP4),
        );
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
        let garp = arp_frame_from(
            OTHER_MAC,
            MacAddr::BROADCAST,
            ArpPacket::gratuitous_request(OTHER_MAC, VIP4),
        );
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
        let claim = arp_frame_from(
            OTHER_MAC,
            MacAddr::BROADCAST,
            ArpPacket::gratuitous_request(OTHER_MAC, VIP4),
        );
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
}

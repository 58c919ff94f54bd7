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
mod tests;

//! Ethernet, ARP and IPv6 Neighbor Discovery frames: pure build and parse.
//!
//! Owns the byte layout of everything layer-2 mode sends and understands: Ethernet II headers,
//! ARP for IPv4 over Ethernet (RFC 826, with the RFC 5227 probe/announcement forms) and the two
//! Neighbor Discovery messages we need (RFC 4861 Neighbor Solicitation and Advertisement, with
//! source/target link-layer address options), including the ICMPv6 checksum over the IPv6
//! pseudo-header (RFC 8200 §8.1). No I/O: bytes in, typed values out, and back.
//!
//! Parsers never panic on any input; they return [`FrameError`] for malformed ARP/NDP and
//! [`Frame::Other`] for well-formed traffic that layer-2 mode does not care about.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// EtherType of IPv4 (IEEE 802 numbers).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6 (RFC 2464 §3).
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// Destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Smallest Ethernet frame without the FCS (IEEE 802.3); shorter frames are padded with zeros.
pub const ETHERNET_MIN_FRAME_LEN: usize = 60;

/// ARP hardware type for Ethernet (RFC 826, IANA "Hardware Types").
const ARP_HARDWARE_ETHERNET: u16 = 1;
/// ARP over Ethernet for IPv4: 8 fixed bytes + 2×6 hardware + 2×4 protocol addresses.
pub const ARP_PACKET_LEN: usize = 28;

/// IPv6 fixed header length (RFC 8200 §3).
pub const IPV6_HEADER_LEN: usize = 40;
/// IPv6 "next header" value of ICMPv6 (RFC 4443).
pub const IP_PROTOCOL_ICMPV6: u8 = 58;
/// Neighbor Discovery messages must be sent, and are only accepted, with hop limit 255, which
/// proves they did not cross a router (RFC 4861 §7.1.1, §7.1.2).
pub const NDP_HOP_LIMIT: u8 = 255;
/// ICMPv6 type of Neighbor Solicitation (RFC 4861 §4.3).
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of Neighbor Advertisement (RFC 4861 §4.4).
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// NS and NA both have type, code, checksum, 4 bytes of flags/reserved and a 16-byte target.
const NDP_FIXED_LEN: usize = 24;
/// Option type of the source link-layer address (RFC 4861 §4.6.1).
const NDP_OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
/// Option type of the target link-layer address (RFC 4861 §4.6.1).
const NDP_OPTION_TARGET_LINK_ADDRESS: u8 = 2;
/// A link-layer address option for Ethernet is one 8-octet unit: type, length, 6-byte MAC.
const NDP_LINK_ADDRESS_OPTION_LEN: usize = 8;
/// Neighbor Advertisement flag bits in the first byte after the checksum (RFC 4861 §4.4).
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;

/// The link-scope all-nodes multicast address, ff02::1 (RFC 4291 §2.7.1): where unsolicited
/// Neighbor Advertisements go (RFC 4861 §7.2.6).
pub const ALL_NODES_MULTICAST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" target hardware address of ARP requests (RFC 5227 §2.1.1).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Group (multicast or broadcast) addresses have the low bit of the first octet set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// The Ethernet destination for an IPv6 multicast address: 33:33 followed by the last four
    /// octets of the address (RFC 2464 §7).
    pub fn for_ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a MAC address (want six hex octets separated by ':'): {0:?}")]
pub struct MacAddrParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts
                .next()
                .ok_or_else(|| MacAddrParseError(s.to_owned()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(MacAddrParseError(s.to_owned()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacAddrParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacAddrParseError(s.to_owned()));
        }
        Ok(MacAddr(octets))
    }
}

/// The solicited-node multicast address of `address`: ff02::1:ff00:0/104 plus its low 24 bits
/// (RFC 4291 §2.7.1). Neighbor Solicitations for `address` are sent there (RFC 4861 §7.2.2).
pub fn solicited_node_multicast(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Is `address` in ff02::1:ff00:0/104?
pub fn is_solicited_node_multicast(address: Ipv6Addr) -> bool {
    address.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// Why a frame that claims to be ARP or Neighbor Discovery was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("{what} truncated: need {needed} bytes, have {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error(
        "ARP for hardware type {hardware_type}/{hardware_len} and protocol {protocol_type:#06x}/{protocol_len}, only Ethernet/IPv4 is supported"
    )]
    UnsupportedArp {
        hardware_type: u16,
        protocol_type: u16,
        hardware_len: u8,
        protocol_len: u8,
    },
    #[error("unknown ARP operation {0}")]
    UnknownArpOperation(u16),
    #[error("IPv6 EtherType with IP version {0}")]
    NotIpv6(u8),
    #[error("IPv6 payload length {declared} exceeds the {available} bytes in the frame")]
    Ipv6PayloadBeyondFrame { declared: usize, available: usize },
    #[error("Neighbor Discovery message with hop limit {0}, RFC 4861 requires 255")]
    NdpHopLimitNot255(u8),
    #[error("ICMPv6 checksum mismatch: message says {found:#06x}, computed {computed:#06x}")]
    Icmpv6ChecksumMismatch { found: u16, computed: u16 },
    #[error("Neighbor Discovery message with ICMPv6 code {0}, RFC 4861 requires 0")]
    NdpNonZeroCode(u8),
    #[error("Neighbor Discovery target {0} is a multicast address")]
    NdpMulticastTarget(Ipv6Addr),
    #[error("Neighbor Discovery option with length 0")]
    NdpZeroLengthOption,
    #[error("Neighbor Discovery option runs past the end of the message")]
    NdpOptionOverrun,
    #[error("link-layer address option of {0} octets, Ethernet needs 8")]
    NdpBadLinkAddressOptionLength(usize),
    #[error(
        "Neighbor Solicitation from the unspecified address carries a source link-layer option"
    )]
    NdpUnspecifiedSourceWithLinkAddress,
    #[error(
        "Neighbor Solicitation from the unspecified address is not sent to a solicited-node group but to {0}"
    )]
    NdpUnspecifiedSourceNotToSolicitedNode(Ipv6Addr),
    #[error("Neighbor Advertisement to multicast {0} with the Solicited flag set")]
    NdpSolicitedAdvertisementToMulticast(Ipv6Addr),
}

/// The 14-byte Ethernet II header (no 802.1Q tag: tagged frames are [`Frame::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetHeader {
    pub destination: MacAddr,
    pub source: MacAddr,
    pub ethertype: u16,
}

impl EthernetHeader {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.destination.0);
        out.extend_from_slice(&self.source.0);
        out.extend_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// ARP operation codes (RFC 826; IANA "Operation Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOperation {
    Request,
    Reply,
}

impl ArpOperation {
    fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// An ARP packet for IPv4 over Ethernet (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// RFC 5227 §2.1.1 probe: a request with sender IP 0.0.0.0 asking for `address`, so that
    /// neighbours do not update their caches while we check nobody else uses it.
    pub fn probe(our_mac: MacAddr, address: Ipv4Addr) -> Self {
        ArpPacket {
            operation: ArpOperation::Request,
            sender_mac: our_mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: MacAddr::ZERO,
            target_ip: address,
        }
    }

    /// Gratuitous ARP, request form (RFC 5227 §2.3 "ARP Announcement", RFC 5944 §4.6): sender
    /// and target IP are both `address`; every neighbour with an entry for it updates it.
    pub fn gratuitous_request(our_mac: MacAddr, address: Ipv4Addr) -> Self {
        ArpPacket {
            operation: ArpOperation::Request,
            sender_mac: our_mac,
            sender_ip: address,
            target_mac: MacAddr::ZERO,
            target_ip: address,
        }
    }

    /// Gratuitous ARP, reply form (RFC 5944 §4.6, which also puts our MAC in the target
    /// hardware field, as `arping -A` does): some stacks only update on replies.
    pub fn gratuitous_reply(our_mac: MacAddr, address: Ipv4Addr) -> Self {
        ArpPacket {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: address,
            target_mac: our_mac,
            target_ip: address,
        }
    }

    /// The reply to `request` saying `our_mac` has the requested address (RFC 826: swap sender
    /// and target, fill in our hardware address). Replies to probes go back to 0.0.0.0, as the
    /// Linux kernel does.
    pub fn reply_to(request: &ArpPacket, our_mac: MacAddr) -> Self {
        ArpPacket {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// A request whose sender IP is 0.0.0.0 (RFC 5227 §2.1.1).
    pub fn is_probe(&self) -> bool {
        self.operation == ArpOperation::Request && self.sender_ip.is_unspecified()
    }

    /// Sender and target IP are the same: an announcement / gratuitous ARP (RFC 5227 §2.3).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip && !self.sender_ip.is_unspecified()
    }

    /// The 28 bytes of the packet.
    pub fn encode(&self) -> [u8; ARP_PACKET_LEN] {
        let mut b = [0u8; ARP_PACKET_LEN];
        b[0..2].copy_from_slice(&ARP_HARDWARE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.operation.code().to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// Parses the ARP packet at the start of `bytes` (trailing Ethernet padding is ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let b = take(bytes, ARP_PACKET_LEN, "ARP packet")?;
        let hardware_type = u16::from_be_bytes([b[0], b[1]]);
        let protocol_type = u16::from_be_bytes([b[2], b[3]]);
        let (hardware_len, protocol_len) = (b[4], b[5]);
        if hardware_type != ARP_HARDWARE_ETHERNET
            || protocol_type != ETHERTYPE_IPV4
            || hardware_len != 6
            || protocol_len != 4
        {
            return Err(FrameError::UnsupportedArp {
                hardware_type,
                protocol_type,
                hardware_len,
                protocol_len,
            });
        }
        let operation = match u16::from_be_bytes([b[6], b[7]]) {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => return Err(FrameError::UnknownArpOperation(other)),
        };
        Ok(ArpPacket {
            operation,
            sender_mac: mac_at(b, 8),
            sender_ip: ipv4_at(b, 14),
            target_mac: mac_at(b, 18),
            target_ip: ipv4_at(b, 24),
        })
    }
}

/// Neighbor Solicitation (RFC 4861 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitation {
    pub target: Ipv6Addr,
    pub source_link_address: Option<MacAddr>,
}

/// Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O: the receiver should replace an existing cache entry's link-layer address.
    pub override_entry: bool,
    pub target: Ipv6Addr,
    pub target_link_address: Option<MacAddr>,
}

/// The two Neighbor Discovery messages layer-2 mode speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpMessage {
    Solicitation(NeighborSolicitation),
    Advertisement(NeighborAdvertisement),
}

/// A Neighbor Discovery message with the IPv6 header fields that matter to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpPacket {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub hop_limit: u8,
    pub message: NdpMessage,
}

impl NdpPacket {
    /// Unsolicited Neighbor Advertisement for `address` to all nodes, Override set, Solicited
    /// clear, with our link-layer address (RFC 4861 §7.2.6). The source is the address itself.
    pub fn unsolicited_advertisement(our_mac: MacAddr, address: Ipv6Addr) -> Self {
        NdpPacket {
            source: address,
            destination: ALL_NODES_MULTICAST,
            hop_limit: NDP_HOP_LIMIT,
            message: NdpMessage::Advertisement(NeighborAdvertisement {
                router: false,
                solicited: false,
                override_entry: true,
                target: address,
                target_link_address: Some(our_mac),
            }),
        }
    }

    /// The advertisement answering a solicitation for `address` that came from `solicitor`
    /// (RFC 4861 §7.2.4): unicast with S and O set to the solicitor, or, if the solicitor is the
    /// unspecified address (DAD), to all nodes with S clear.
    pub fn solicited_advertisement(
        our_mac: MacAddr,
        address: Ipv6Addr,
        solicitor: Ipv6Addr,
    ) -> Self {
        let from_dad = solicitor.is_unspecified();
        NdpPacket {
            source: address,
            destination: if from_dad {
                ALL_NODES_MULTICAST
            } else {
                solicitor
            },
            hop_limit: NDP_HOP_LIMIT,
            message: NdpMessage::Advertisement(NeighborAdvertisement {
                router: false,
                solicited: !from_dad,
                override_entry: true,
                target: address,
                target_link_address: Some(our_mac),
            }),
        }
    }

    /// Duplicate Address Detection probe for `address` (RFC 4862 §5.4.2): a solicitation from
    /// the unspecified address to the solicited-node group, without a source link-layer option.
    pub fn duplicate_address_probe(address: Ipv6Addr) -> Self {
        NdpPacket {
            source: Ipv6Addr::UNSPECIFIED,
            destination: solicited_node_multicast(address),
            hop_limit: NDP_HOP_LIMIT,
            message: NdpMessage::Solicitation(NeighborSolicitation {
                target: address,
                source_link_address: None,
            }),
        }
    }

    /// The ICMPv6 message bytes (type through options) with a correct checksum.
    pub fn encode_icmpv6(&self) -> Vec<u8> {
        let mut icmp = Vec::with_capacity(NDP_FIXED_LEN + NDP_LINK_ADDRESS_OPTION_LEN);
        let (kind, flags, target, option) = match self.message {
            NdpMessage::Solicitation(ns) => (
                ICMPV6_NEIGHBOR_SOLICITATION,
                0,
                ns.target,
                ns.source_link_address
                    .map(|mac| (NDP_OPTION_SOURCE_LINK_ADDRESS, mac)),
            ),
            NdpMessage::Advertisement(na) => {
                let mut flags = 0;
                if na.router {
                    flags |= NA_FLAG_ROUTER;
                }
                if na.solicited {
                    flags |= NA_FLAG_SOLICITED;
                }
                if na.override_entry {
                    flags |= NA_FLAG_OVERRIDE;
                }
                (
                    ICMPV6_NEIGHBOR_ADVERTISEMENT,
                    flags,
                    na.target,
                    na.target_link_address
                        .map(|mac| (NDP_OPTION_TARGET_LINK_ADDRESS, mac)),
                )
            }
        };
        icmp.extend_from_slice(&[kind, 0, 0, 0, flags, 0, 0, 0]);
        icmp.extend_from_slice(&target.octets());
        if let Some((option_type, mac)) = option {
            icmp.extend_from_slice(&[option_type, 1]);
            icmp.extend_from_slice(&mac.0);
        }
        let checksum = icmpv6_checksum(self.source, self.destination, &icmp);
        icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
        icmp
    }

    /// Parses and validates an ICMPv6 message whose IPv6 header said `source`, `destination`,
    /// `hop_limit`. `Ok(None)` for ICMPv6 types other than NS and NA.
    pub fn decode_icmpv6(
        source: Ipv6Addr,
        destination: Ipv6Addr,
        hop_limit: u8,
        icmp: &[u8],
    ) -> Result<Option<Self>, FrameError> {
        let Some(&kind) = icmp.first() else {
            return Err(FrameError::Truncated {
                what: "ICMPv6 header",
                needed: 1,
                available: 0,
            });
        };
        if kind != ICMPV6_NEIGHBOR_SOLICITATION && kind != ICMPV6_NEIGHBOR_ADVERTISEMENT {
            return Ok(None);
        }
        // Validation in the order of RFC 4861 §7.1.1 / §7.1.2.
        if hop_limit != NDP_HOP_LIMIT {
            return Err(FrameError::NdpHopLimitNot255(hop_limit));
        }
        let fixed = take(icmp, NDP_FIXED_LEN, "Neighbor Discovery message")?;
        let computed = icmpv6_checksum(source, destination, icmp);
        if computed != 0 {
            // Summing a message that contains its own correct checksum gives 0 after the final
            // complement; report what the field should have been.
            let found = u16::from_be_bytes([fixed[2], fixed[3]]);
            let mut zeroed = icmp.to_vec();
            zeroed[2] = 0;
            zeroed[3] = 0;
            return Err(FrameError::Icmpv6ChecksumMismatch {
                found,
                computed: icmpv6_checksum(source, destination, &zeroed),
            });
        }
        if fixed[1] != 0 {
            return Err(FrameError::NdpNonZeroCode(fixed[1]));
        }
        let target = ipv6_at(fixed, 8);
        if target.is_multicast() {
            return Err(FrameError::NdpMulticastTarget(target));
        }
        let options = parse_link_address_options(&icmp[NDP_FIXED_LEN..])?;
        let message = if kind == ICMPV6_NEIGHBOR_SOLICITATION {
            if source.is_unspecified() {
                if options.source.is_some() {
                    return Err(FrameError::NdpUnspecifiedSourceWithLinkAddress);
                }
                if !is_solicited_node_multicast(destination) {
                    return Err(FrameError::NdpUnspecifiedSourceNotToSolicitedNode(
                        destination,
                    ));
                }
            }
            NdpMessage::Solicitation(NeighborSolicitation {
                target,
                source_link_address: options.source,
            })
        } else {
            let flags = fixed[4];
            let solicited = flags & NA_FLAG_SOLICITED != 0;
            if solicited && destination.is_multicast() {
                return Err(FrameError::NdpSolicitedAdvertisementToMulticast(
                    destination,
                ));
            }
            NdpMessage::Advertisement(NeighborAdvertisement {
                router: flags & NA_FLAG_ROUTER != 0,
                solicited,
                override_entry: flags & NA_FLAG_OVERRIDE != 0,
                target,
                target_link_address: options.target,
            })
        };
        Ok(Some(NdpPacket {
            source,
            destination,
            hop_limit,
            message,
        }))
    }
}

#[derive(Default)]
struct LinkAddressOptions {
    source: Option<MacAddr>,
    target: Option<MacAddr>,
}

/// Walks the type-length-value options (RFC 4861 §4.6): a zero length is invalid, unknown types
/// are skipped, the link-layer address options must be 8 octets for Ethernet.
fn parse_link_address_options(mut rest: &[u8]) -> Result<LinkAddressOptions, FrameError> {
    let mut found = LinkAddressOptions::default();
    while !rest.is_empty() {
        let header = take(rest, 2, "Neighbor Discovery option")?;
        let len = usize::from(header[1]) * 8;
        if len == 0 {
            return Err(FrameError::NdpZeroLengthOption);
        }
        let option = rest.get(..len).ok_or(FrameError::NdpOptionOverrun)?;
        let slot = match header[0] {
            NDP_OPTION_SOURCE_LINK_ADDRESS => Some(&mut found.source),
            NDP_OPTION_TARGET_LINK_ADDRESS => Some(&mut found.target),
            _ => None,
        };
        if let Some(slot) = slot {
            if len != NDP_LINK_ADDRESS_OPTION_LEN {
                return Err(FrameError::NdpBadLinkAddressOptionLength(len));
            }
            slot.get_or_insert(mac_at(option, 2));
        }
        rest = &rest[len..];
    }
    Ok(found)
}

/// The Internet checksum (RFC 1071) of an ICMPv6 message over the IPv6 pseudo-header
/// (RFC 8200 §8.1: source, destination, upper-layer length, next header 58). Computed over a
/// message with a zero checksum field it gives the value to put there; over a message with a
/// correct checksum it gives 0.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    };
    add(&source.octets());
    add(&destination.octets());
    // Messages come from frames, so their length fits in 32 bits.
    add(&u32::try_from(icmp.len()).unwrap_or(u32::MAX).to_be_bytes());
    add(&[0, 0, 0, IP_PROTOCOL_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop above leaves at most 16 bits.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

/// A parsed Ethernet frame, as far as layer-2 mode is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Arp {
        ethernet: EthernetHeader,
        arp: ArpPacket,
    },
    Ndp {
        ethernet: EthernetHeader,
        ndp: NdpPacket,
    },
    /// Well-formed enough, but not ARP/NS/NA (IPv4, other ICMPv6, VLAN-tagged, IPv6 with
    /// extension headers, ...).
    Other { ethernet: EthernetHeader },
}

impl Frame {
    pub fn ethernet(&self) -> &EthernetHeader {
        match self {
            Frame::Arp { ethernet, .. }
            | Frame::Ndp { ethernet, .. }
            | Frame::Other { ethernet } => ethernet,
        }
    }
}

/// Parses an Ethernet II frame (without FCS) carrying ARP or Neighbor Discovery.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let header = take(bytes, ETHERNET_HEADER_LEN, "Ethernet header")?;
    let ethernet = EthernetHeader {
        destination: mac_at(header, 0),
        source: mac_at(header, 6),
        ethertype: u16::from_be_bytes([header[12], header[13]]),
    };
    let payload = &bytes[ETHERNET_HEADER_LEN..];
    match ethernet.ethertype {
        ETHERTYPE_ARP => Ok(Frame::Arp {
            ethernet,
            arp: ArpPacket::decode(payload)?,
        }),
        ETHERTYPE_IPV6 => {
            let ip = take(payload, IPV6_HEADER_LEN, "IPv6 header")?;
            let version = ip[0] >> 4;
            if version != 6 {
                return Err(FrameError::NotIpv6(version));
            }
            let declared = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let body = &payload[IPV6_HEADER_LEN..];
            let body = body
                .get(..declared)
                .ok_or(FrameError::Ipv6PayloadBeyondFrame {
                    declared,
                    available: body.len(),
                })?;
            if ip[6] != IP_PROTOCOL_ICMPV6 {
                return Ok(Frame::Other { ethernet });
            }
            let ndp = NdpPacket::decode_icmpv6(ipv6_at(ip, 8), ipv6_at(ip, 24), ip[7], body)?;
            Ok(match ndp {
                Some(ndp) => Frame::Ndp { ethernet, ndp },
                None => Frame::Other { ethernet },
            })
        }
        _ => Ok(Frame::Other { ethernet }),
    }
}

/// An Ethernet frame carrying `arp`, padded to the 60-byte minimum.
pub fn build_arp_frame(source: MacAddr, destination: MacAddr, arp: &ArpPacket) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_MIN_FRAME_LEN);
    EthernetHeader {
        destination,
        source,
        ethertype: ETHERTYPE_ARP,
    }
    .write(&mut frame);
    frame.extend_from_slice(&arp.encode());
    frame.resize(frame.len().max(ETHERNET_MIN_FRAME_LEN), 0);
    frame
}

/// An Ethernet frame carrying `ndp` in IPv6 (traffic class and flow label 0). Multicast
/// destinations get their 33:33 MAC (RFC 2464 §7); unicast ones go to `unicast_destination`.
pub fn build_ndp_frame(source: MacAddr, unicast_destination: MacAddr, ndp: &NdpPacket) -> Vec<u8> {
    let icmp = ndp.encode_icmpv6();
    let destination = if ndp.destination.is_multicast() {
        MacAddr::for_ipv6_multicast(ndp.destination)
    } else {
        unicast_destination
    };
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp.len());
    EthernetHeader {
        destination,
        source,
        ethertype: ETHERTYPE_IPV6,
    }
    .write(&mut frame);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    // NS/NA with one option are 32 bytes, far below u16::MAX.
    let payload_len = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    frame.extend_from_slice(&payload_len.to_be_bytes());
    frame.extend_from_slice(&[IP_PROTOCOL_ICMPV6, ndp.hop_limit]);
    frame.extend_from_slice(&ndp.source.octets());
    frame.extend_from_slice(&ndp.destination.octets());
    frame.extend_from_slice(&icmp);
    frame.resize(frame.len().max(ETHERNET_MIN_FRAME_LEN), 0);
    frame
}

/// The first `needed` bytes of `bytes`, or a [`FrameError::Truncated`] naming `what`.
fn take<'a>(bytes: &'a [u8], needed: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
    bytes.get(..needed).ok_or(FrameError::Truncated {
        what,
        needed,
        available: bytes.len(),
    })
}

// The helpers below index slices that `take` has already proven long enough.
fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[at..at + 6]);
    MacAddr(mac)
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests;

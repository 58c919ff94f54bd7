//! UPDATE encoding and packing: a set of (prefix, attributes) -> as few UPDATE messages as
//! possible, each at most 4096 bytes (RFC 4271 §4.3). Written entirely here (zettabgp's
//! encoder writes AS_SEQUENCE as AS_SET). IPv4 routes use the classic fields; IPv6 routes use
//! MP_REACH_NLRI / MP_UNREACH_NLRI only (RFC 4760). Pure functions.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{
    AFI_IPV6, AS_TRANS, EncodeError, Family, HEADER_LEN, MAX_MESSAGE_LEN, MessageType,
    SAFI_UNICAST, attr_flags, attr_type, frame,
};

/// AS_PATH segment types (RFC 4271 §4.3): AS_SET = 1, AS_SEQUENCE = 2.
pub const AS_SET: u8 = 1;
pub const AS_SEQUENCE: u8 = 2;
/// ORIGIN value IGP (RFC 4271 §5.1.1).
pub const ORIGIN_IGP: u8 = 0;
/// LOCAL_PREF sent to iBGP peers when the advertisement sets none (RFC 4271 §9.1.1 leaves it to
/// policy; 100 is the common default).
pub const DEFAULT_LOCAL_PREF: u32 = 100;
/// Extended community type: non-transitive two-octet-AS-specific (RFC 7153 §5.2.1, type 0x40).
pub const EXT_COMMUNITY_TYPE_NON_TRANSITIVE_TWO_OCTET_AS: u8 = 0x40;
/// Extended community sub-type: link bandwidth (draft-ietf-idr-link-bandwidth §2).
pub const EXT_COMMUNITY_SUBTYPE_LINK_BANDWIDTH: u8 = 0x04;

/// A large community (RFC 8092 §3): global administrator, local data 1, local data 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data_1: u32,
    pub local_data_2: u32,
}

/// Per-route attributes that come from the advertisement (everything else — ORIGIN, AS_PATH,
/// NEXT_HOP — is the session's). Routes with equal attributes share UPDATE messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteAttributes {
    /// Sent to iBGP peers only (RFC 4271 §5.1.5); [`DEFAULT_LOCAL_PREF`] when `None`.
    pub local_pref: Option<u32>,
    /// Standard communities (RFC 1997), as `(asn << 16) | value`.
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
    /// Link bandwidth in bytes per second, sent as the non-transitive link-bandwidth extended
    /// community for weighted ECMP.
    pub link_bandwidth_bytes_per_sec: Option<u64>,
}

impl RouteAttributes {
    /// Sorted, duplicate-free communities, so equal sets group together.
    pub fn normalized(&self) -> Self {
        let mut out = self.clone();
        out.communities.sort_unstable();
        out.communities.dedup();
        out.large_communities.sort_unstable();
        out.large_communities.dedup();
        out
    }
}

/// What the session contributes to every UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateContext {
    pub local_as: u32,
    /// eBGP prepends our ASN and never sends LOCAL_PREF; iBGP sends an empty AS_PATH.
    pub ebgp: bool,
    /// Both sides advertised the 4-octet AS capability (RFC 6793 §4).
    pub four_octet_as: bool,
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Global IPv6 next hop for MP_REACH_NLRI.
    pub next_hop_v6: Option<Ipv6Addr>,
}

/// The encoded messages of one packing run, for sending and for counting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedUpdates {
    pub messages: Vec<Vec<u8>>,
}

/// Appends one path attribute, using the extended-length flag when the value exceeds 255 bytes
/// (RFC 4271 §4.3).
fn push_attribute(out: &mut Vec<u8>, flags: u8, type_code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | attr_flags::EXTENDED_LENGTH);
        out.push(type_code);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(flags & !attr_flags::EXTENDED_LENGTH);
        out.push(type_code);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
}

/// AS_PATH value: one AS_SEQUENCE segment holding `path` (RFC 4271 §4.3), 4-octet ASNs when
/// negotiated, else 2-octet with AS_TRANS in place of large ASNs (RFC 6793 §4.2.2).
pub fn as_path_value(path: &[u32], four_octet: bool) -> Vec<u8> {
    if path.is_empty() {
        return Vec::new();
    }
    let mut value = vec![AS_SEQUENCE, path.len() as u8];
    for &asn in path {
        if four_octet {
            value.extend_from_slice(&asn.to_be_bytes());
        } else {
            value.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
        }
    }
    value
}

/// The attributes that sort before MP_REACH_NLRI (type 14), in type-code order; NEXT_HOP only
/// for IPv4 routes (IPv6 carries its next hop inside MP_REACH_NLRI).
fn leading_attributes(
    ctx: &UpdateContext,
    attrs: &RouteAttributes,
    next_hop_v4: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let transitive_well_known = attr_flags::TRANSITIVE;
    let optional_transitive = attr_flags::OPTIONAL | attr_flags::TRANSITIVE;
    push_attribute(
        &mut out,
        transitive_well_known,
        attr_type::ORIGIN,
        &[ORIGIN_IGP],
    );
    let path: Vec<u32> = if ctx.ebgp {
        vec![ctx.local_as]
    } else {
        Vec::new()
    };
    push_attribute(
        &mut out,
        transitive_well_known,
        attr_type::AS_PATH,
        &as_path_value(&path, ctx.four_octet_as),
    );
    if let Some(next_hop) = next_hop_v4 {
        push_attribute(
            &mut out,
            transitive_well_known,
            attr_type::NEXT_HOP,
            &next_hop.octets(),
        );
    }
    if !ctx.ebgp {
        let pref = attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
        push_attribute(
            &mut out,
            transitive_well_known,
            attr_type::LOCAL_PREF,
            &pref.to_be_bytes(),
        );
    }
    if !attrs.communities.is_empty() {
        let value: Vec<u8> = attrs
            .communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        push_attribute(
            &mut out,
            optional_transitive,
            attr_type::COMMUNITIES,
            &value,
        );
    }
    out
}

/// Attributes that sort after MP_REACH_NLRI (type 14).
fn trailing_attributes(ctx: &UpdateContext, attrs: &RouteAttributes) -> Vec<u8> {
    let mut out = Vec::new();
    let optional_transitive = attr_flags::OPTIONAL | attr_flags::TRANSITIVE;
    if let Some(bandwidth) = attrs.link_bandwidth_bytes_per_sec {
        // Type, sub-type, 2-octet AS, IEEE-754 single-precision bytes per second.
        let mut value = vec![
            EXT_COMMUNITY_TYPE_NON_TRANSITIVE_TWO_OCTET_AS,
            EXT_COMMUNITY_SUBTYPE_LINK_BANDWIDTH,
        ];
        value.extend_from_slice(&super::two_octet_as(ctx.local_as).to_be_bytes());
        value.extend_from_slice(&(bandwidth as f32).to_be_bytes());
        push_attribute(
            &mut out,
            optional_transitive,
            attr_type::EXTENDED_COMMUNITIES,
            &value,
        );
    }
    // AS4_PATH carries the real path when the peer lacks 4-octet ASNs (RFC 6793 §4.2.2).
    if ctx.ebgp && !ctx.four_octet_as && ctx.local_as > u32::from(u16::MAX) {
        push_attribute(
            &mut out,
            optional_transitive,
            attr_type::AS4_PATH,
            &as_path_value(&[ctx.local_as], true),
        );
    }
    if !attrs.large_communities.is_empty() {
        let value: Vec<u8> = attrs
            .large_communities
            .iter()
            .flat_map(|c| {
                let mut bytes = [0u8; 12];
                bytes[..4].copy_from_slice(&c.global_admin.to_be_bytes());
                bytes[4..8].copy_from_slice(&c.local_data_1.to_be_bytes());
                bytes[8..].copy_from_slice(&c.local_data_2.to_be_bytes());
                bytes
            })
            .collect();
        push_attribute(
            &mut out,
            optional_transitive,
            attr_type::LARGE_COMMUNITY,
            &value,
        );
    }
    out
}

/// Encodes a prefix as NLRI: length in bits, then the significant octets (RFC 4271 §4.3).
pub fn encode_prefix(prefix: &IpNet, out: &mut Vec<u8>) {
    let bits = prefix.prefix_len();
    let octets = usize::from(bits).div_ceil(8);
    out.push(bits);
    match prefix.trunc() {
        IpNet::V4(n) => out.extend_from_slice(&n.addr().octets()[..octets]),
        IpNet::V6(n) => out.extend_from_slice(&n.addr().octets()[..octets]),
    }
}

fn prefix_wire_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Assembles an UPDATE body: withdrawn routes, attributes, NLRI (RFC 4271 §4.3).
fn update_body(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + withdrawn.len() + attributes.len() + nlri.len());
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    body
}

/// Room for NLRI/withdrawn bytes in a message whose other parts take `fixed` bytes.
fn room(fixed: usize) -> usize {
    MAX_MESSAGE_LEN.saturating_sub(HEADER_LEN + 4 + fixed)
}

/// Greedily fills chunks of encoded prefixes no larger than `room` bytes each.
fn chunk_prefixes<'a>(prefixes: impl Iterator<Item = &'a IpNet>, room: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    for prefix in prefixes {
        if !current.is_empty() && current.len() + prefix_wire_len(prefix) > room {
            chunks.push(std::mem::take(&mut current));
        }
        encode_prefix(prefix, &mut current);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Room reserved for an MP_REACH_NLRI / MP_UNREACH_NLRI attribute header: the extended-length
/// form (4 bytes); short ones use 3 like FRR and GoBGP do, so End-of-RIB matches them byte for byte.
const MP_ATTR_HEADER: usize = 4;

fn mp_reach_attribute(next_hop: Ipv6Addr, nlri: &[u8]) -> Vec<u8> {
    // AFI(2) SAFI(1) next-hop length(1) next hop(16) reserved(1) NLRI (RFC 4760 §3).
    let mut value = Vec::with_capacity(21 + nlri.len());
    value.extend_from_slice(&AFI_IPV6.to_be_bytes());
    value.push(SAFI_UNICAST);
    value.push(16);
    value.extend_from_slice(&next_hop.octets());
    value.push(0);
    value.extend_from_slice(nlri);
    mp_attribute(attr_type::MP_REACH_NLRI, &value)
}

fn mp_unreach_attribute(family: Family, withdrawn: &[u8]) -> Vec<u8> {
    let (afi, safi) = family.afi_safi();
    let mut value = Vec::with_capacity(3 + withdrawn.len());
    value.extend_from_slice(&afi.to_be_bytes());
    value.push(safi);
    value.extend_from_slice(withdrawn);
    mp_attribute(attr_type::MP_UNREACH_NLRI, &value)
}

fn mp_attribute(type_code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MP_ATTR_HEADER + value.len());
    push_attribute(&mut out, attr_flags::OPTIONAL, type_code, value);
    out
}

/// Packs announcements and withdrawals into as few UPDATEs as possible: withdrawals first
/// (IPv4 in the withdrawn-routes field, IPv6 in MP_UNREACH_NLRI), then one run of messages per
/// distinct attribute set and family, each filled up to 4096 bytes.
pub fn pack_updates<'a>(
    ctx: &UpdateContext,
    announce: impl IntoIterator<Item = (&'a IpNet, &'a RouteAttributes)>,
    withdraw: impl IntoIterator<Item = &'a IpNet>,
) -> Result<PackedUpdates, EncodeError> {
    let mut messages = Vec::new();

    let (withdraw_v4, withdraw_v6): (Vec<&IpNet>, Vec<&IpNet>) = withdraw
        .into_iter()
        .partition(|p| Family::of(p) == Family::Ipv4Unicast);
    for chunk in chunk_prefixes(withdraw_v4.into_iter(), room(0)) {
        messages.push(frame(MessageType::Update, &update_body(&chunk, &[], &[]))?);
    }
    let unreach_fixed = MP_ATTR_HEADER + 3;
    for chunk in chunk_prefixes(withdraw_v6.into_iter(), room(unreach_fixed)) {
        let attrs = mp_unreach_attribute(Family::Ipv6Unicast, &chunk);
        messages.push(frame(MessageType::Update, &update_body(&[], &attrs, &[]))?);
    }

    let mut groups: BTreeMap<(Family, RouteAttributes), Vec<&IpNet>> = BTreeMap::new();
    for (prefix, attrs) in announce {
        groups
            .entry((Family::of(prefix), attrs.normalized()))
            .or_default()
            .push(prefix);
    }
    for ((family, attrs), prefixes) in groups {
        let trailing = trailing_attributes(ctx, &attrs);
        match family {
            Family::Ipv4Unicast => {
                let next_hop = ctx
                    .next_hop_v4
                    .ok_or(EncodeError::MissingNextHop(Family::Ipv4Unicast))?;
                let mut all = leading_attributes(ctx, &attrs, Some(next_hop));
                all.extend_from_slice(&trailing);
                for chunk in chunk_prefixes(prefixes.into_iter(), room(all.len())) {
                    messages.push(frame(MessageType::Update, &update_body(&[], &all, &chunk))?);
                }
            }
            Family::Ipv6Unicast => {
                let next_hop = ctx
                    .next_hop_v6
                    .ok_or(EncodeError::MissingNextHop(Family::Ipv6Unicast))?;
                let leading = leading_attributes(ctx, &attrs, None);
                let fixed = leading.len() + trailing.len() + MP_ATTR_HEADER + 21;
                for chunk in chunk_prefixes(prefixes.into_iter(), room(fixed)) {
                    let mut all = leading.clone();
                    all.extend_from_slice(&mp_reach_attribute(next_hop, &chunk));
                    all.extend_from_slice(&trailing);
                    messages.push(frame(MessageType::Update, &update_body(&[], &all, &[]))?);
                }
            }
        }
    }
    Ok(PackedUpdates { messages })
}

/// End-of-RIB marker (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an UPDATE with an empty
/// MP_UNREACH_NLRI for other families.
pub fn encode_end_of_rib(family: Family) -> Vec<u8> {
    let body = match family {
        Family::Ipv4Unicast => update_body(&[], &[], &[]),
        Family::Ipv6Unicast => update_body(&[], &mp_unreach_attribute(family, &[]), &[]),
    };
    // Both bodies are a few bytes; framing cannot exceed the maximum.
    frame(MessageType::Update, &body).unwrap_or_default()
}

//! Decoding: bytes from a peer -> validated [`Message`]s. The header check (RFC 4271 §4.1,
//! §6.1) runs before zettabgp sees anything; OPEN capabilities (RFC 5492) are bounded here one
//! TLV at a time; UPDATE attributes, MP_REACH / MP_UNREACH (RFC 4760) and prefixes are
//! validated without trusting zettabgp's parsers. Nothing here panics on any input.

use super::*;

/// Checks the 19-byte header at the start of `bytes` (RFC 4271 §4.1, §6.1) and returns the
/// message's total length and type. `Ok(None)` means fewer than 19 bytes are available yet.
pub fn check_header(bytes: &[u8]) -> Result<Option<(usize, MessageType)>, DecodeError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let len = usize::from(length);
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(DecodeError::BadMessageLength(length));
    }
    let message_type =
        MessageType::from_code(header[18]).ok_or(DecodeError::BadMessageType(header[18]))?;
    // Per-type lengths (RFC 4271 §6.1, RFC 2918 §3).
    let length_ok = match message_type {
        MessageType::Open => len >= MIN_OPEN_LEN,
        MessageType::Update => len >= MIN_UPDATE_LEN,
        MessageType::Notification => len >= MIN_NOTIFICATION_LEN,
        MessageType::Keepalive => len == HEADER_LEN,
        MessageType::RouteRefresh => len == ROUTE_REFRESH_LEN,
    };
    if !length_ok {
        return Err(DecodeError::BadMessageLength(length));
    }
    // Only now is the header safe for zettabgp's decoder (it underflows on lengths < 19); we
    // ask it too so that a disagreement between the two shows up in tests.
    let session = zettabgp_params();
    if session.decode_message_head(header).is_err() {
        return Err(DecodeError::BadMessageType(header[18]));
    }
    Ok(Some((len, message_type)))
}

/// Decodes exactly one whole message. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let Some((len, message_type)) = check_header(bytes)? else {
        return Err(DecodeError::Truncated(bytes.len()));
    };
    if bytes.len() < len {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    if bytes.len() > len {
        return Err(DecodeError::TrailingBytes(bytes.len() - len));
    }
    let body = &bytes[HEADER_LEN..len];
    match message_type {
        MessageType::Open => decode_open(body).map(Message::Open),
        MessageType::Update => decode_update(body).map(Message::Update),
        MessageType::Notification => decode_notification(body).map(Message::Notification),
        MessageType::Keepalive => Ok(Message::Keepalive),
        MessageType::RouteRefresh => Ok(Message::RouteRefresh(RouteRefreshMessage {
            afi: u16::from_be_bytes([body[0], body[1]]),
            safi: body[3],
        })),
    }
}

/// Session parameters for zettabgp's parsers: add-path guessing off (NOTES.md defect 4).
pub(super) fn zettabgp_params() -> BgpSessionParams {
    let mut params = BgpSessionParams::new(
        0,
        0,
        BgpTransportMode::IPv4,
        Ipv4Addr::UNSPECIFIED,
        Vec::new(),
    );
    params.fuzzy_pathid = false;
    params
}

pub(super) fn decode_open(body: &[u8]) -> Result<OpenMessage, DecodeError> {
    // Fixed part: version(1) my AS(2) hold(2) identifier(4) opt param len(1).
    let fixed = body
        .get(..10)
        .ok_or(DecodeError::MalformedOpen("short fixed part"))?;
    let version = fixed[0];
    if version != BGP_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let my_as = u16::from_be_bytes([fixed[1], fixed[2]]);
    let hold_time_secs = u16::from_be_bytes([fixed[3], fixed[4]]);
    let bgp_identifier = Ipv4Addr::new(fixed[5], fixed[6], fixed[7], fixed[8]);
    let opt_len = usize::from(fixed[9]);
    let params = &body[10..];
    if params.len() != opt_len {
        return Err(DecodeError::MalformedOpen(
            "optional parameters length disagrees with message length",
        ));
    }
    let mut capabilities = Capabilities::default();
    let mut rest = params;
    while !rest.is_empty() {
        let [param_type, param_len, tail @ ..] = rest else {
            return Err(DecodeError::MalformedOpen("truncated optional parameter"));
        };
        let param_len = usize::from(*param_len);
        let value = tail
            .get(..param_len)
            .ok_or(DecodeError::MalformedOpen("optional parameter overruns"))?;
        if *param_type != OPT_PARAM_CAPABILITIES {
            return Err(DecodeError::UnsupportedOptionalParameter(*param_type));
        }
        decode_capabilities(value, &mut capabilities)?;
        rest = &tail[param_len..];
    }
    Ok(OpenMessage {
        version,
        my_as,
        hold_time_secs,
        bgp_identifier,
        capabilities,
    })
}

/// Walks capability TLVs (RFC 5492 §4); each bounded TLV is then parsed by zettabgp.
pub(super) fn decode_capabilities(
    mut tlvs: &[u8],
    into: &mut Capabilities,
) -> Result<(), DecodeError> {
    while !tlvs.is_empty() {
        let [code, len, tail @ ..] = tlvs else {
            return Err(DecodeError::MalformedOpen("truncated capability"));
        };
        let len = usize::from(*len);
        if tail.len() < len {
            return Err(DecodeError::MalformedOpen("capability overruns"));
        }
        let tlv = &tlvs[..2 + len];
        match BgpCapability::from_buffer(tlv) {
            Ok((Ok(cap), _)) => absorb_capability(cap, into),
            // Unknown or unparseable capabilities are ignored (RFC 5492 §3).
            Ok((Err((code, _)), _)) => into.other.push(code),
            Err(_) => into.other.push(*code),
        }
        tlvs = &tail[len..];
    }
    Ok(())
}

pub(super) fn absorb_capability(cap: BgpCapability, into: &mut Capabilities) {
    match cap {
        BgpCapability::CapASN32(asn) => into.four_octet_as = Some(asn),
        BgpCapability::CapRR => into.route_refresh = true,
        BgpCapability::CapGR {
            restart_time,
            restart_state,
            afis,
        } => {
            into.graceful_restart = Some(GracefulRestartCapability {
                restart_state,
                restart_time_secs: restart_time,
                families: afis
                    .into_iter()
                    .map(|f| GracefulRestartFamily {
                        afi: f.afi,
                        safi: f.safi,
                        forwarding_preserved: f.forwarding_state,
                    })
                    .collect(),
            })
        }
        other => match other.afi_safi() {
            Some(pair) => {
                if !into.multiprotocol.contains(&pair) {
                    into.multiprotocol.push(pair)
                }
            }
            None => into.other.push(match other {
                BgpCapability::CapAddPath(_) => 69,
                BgpCapability::CapEnhancedRR => 70,
                BgpCapability::CapLLGR(_) => 71,
                BgpCapability::CapFQDN(..) => 73,
                BgpCapability::CapBFD => 74,
                _ => 0,
            }),
        },
    }
}

pub(super) fn decode_notification(body: &[u8]) -> Result<NotificationMessage, DecodeError> {
    match body {
        [code, subcode, data @ ..] => Ok(NotificationMessage::new(*code, *subcode, data.to_vec())),
        _ => Err(DecodeError::MalformedNotification),
    }
}

pub(super) fn decode_update(body: &[u8]) -> Result<UpdateMessage, DecodeError> {
    let (withdrawn_len, rest) = split_u16(body).ok_or(DecodeError::MalformedAttributeList(
        "no withdrawn routes length",
    ))?;
    let withdrawn_bytes = rest
        .get(..withdrawn_len)
        .ok_or(DecodeError::MalformedAttributeList(
            "withdrawn routes overrun",
        ))?;
    let rest = &rest[withdrawn_len..];
    let (attrs_len, rest) = split_u16(rest).ok_or(DecodeError::MalformedAttributeList(
        "no path attribute length",
    ))?;
    let attr_bytes = rest
        .get(..attrs_len)
        .ok_or(DecodeError::MalformedAttributeList(
            "path attributes overrun",
        ))?;
    let nlri_bytes = &rest[attrs_len..];

    let mut update = UpdateMessage {
        withdrawn: decode_prefixes(withdrawn_bytes, AFI_IPV4)?
            .into_iter()
            .filter_map(as_v4)
            .collect(),
        nlri: decode_prefixes(nlri_bytes, AFI_IPV4)?
            .into_iter()
            .filter_map(as_v4)
            .collect(),
        ..Default::default()
    };

    let mut rest = attr_bytes;
    while !rest.is_empty() {
        let [flags, type_code, tail @ ..] = rest else {
            return Err(DecodeError::MalformedAttributeList(
                "truncated attribute header",
            ));
        };
        let (len, tail) = if flags & attr_flags::EXTENDED_LENGTH != 0 {
            split_u16(tail).ok_or(DecodeError::AttributeLength(*type_code))?
        } else {
            let (&len, tail) = tail
                .split_first()
                .ok_or(DecodeError::AttributeLength(*type_code))?;
            (usize::from(len), tail)
        };
        let value = tail
            .get(..len)
            .ok_or(DecodeError::AttributeLength(*type_code))?;
        match *type_code {
            attr_type::MP_REACH_NLRI => {
                if update.mp_reach.is_some() {
                    return Err(DecodeError::MalformedAttributeList("MP_REACH_NLRI twice"));
                }
                update.mp_reach = Some(decode_mp_reach(value)?);
            }
            attr_type::MP_UNREACH_NLRI => {
                if update.mp_unreach.is_some() {
                    return Err(DecodeError::MalformedAttributeList("MP_UNREACH_NLRI twice"));
                }
                update.mp_unreach = Some(decode_mp_unreach(value)?);
            }
            _ => {}
        }
        update.attributes.push(PathAttribute {
            flags: *flags,
            type_code: *type_code,
            value: value.to_vec(),
        });
        rest = &tail[len..];
    }
    Ok(update)
}

pub(super) fn decode_mp_reach(value: &[u8]) -> Result<MpReach, DecodeError> {
    let [a0, a1, safi, nh_len, tail @ ..] = value else {
        return Err(DecodeError::AttributeLength(attr_type::MP_REACH_NLRI));
    };
    let afi = u16::from_be_bytes([*a0, *a1]);
    let nh_len = usize::from(*nh_len);
    let next_hop = tail
        .get(..nh_len)
        .ok_or(DecodeError::AttributeLength(attr_type::MP_REACH_NLRI))?
        .to_vec();
    // One reserved octet follows the next hop (RFC 4760 §3).
    let nlri = tail
        .get(nh_len + 1..)
        .ok_or(DecodeError::AttributeLength(attr_type::MP_REACH_NLRI))?;
    let nlri = if Family::from_afi_safi(afi, *safi).is_some() {
        decode_prefixes(nlri, afi)?
    } else {
        Vec::new()
    };
    Ok(MpReach {
        afi,
        safi: *safi,
        next_hop,
        nlri,
    })
}

pub(super) fn decode_mp_unreach(value: &[u8]) -> Result<MpUnreach, DecodeError> {
    let [a0, a1, safi, nlri @ ..] = value else {
        return Err(DecodeError::AttributeLength(attr_type::MP_UNREACH_NLRI));
    };
    let afi = u16::from_be_bytes([*a0, *a1]);
    let withdrawn = if Family::from_afi_safi(afi, *safi).is_some() {
        decode_prefixes(nlri, afi)?
    } else {
        Vec::new()
    };
    Ok(MpUnreach {
        afi,
        safi: *safi,
        withdrawn,
    })
}

pub(super) fn split_u16(bytes: &[u8]) -> Option<(usize, &[u8])> {
    match bytes {
        [hi, lo, rest @ ..] => Some((usize::from(u16::from_be_bytes([*hi, *lo])), rest)),
        _ => None,
    }
}

pub(super) fn as_v4(net: IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

/// Decodes a run of (length, prefix) NLRI entries (RFC 4271 §4.3, RFC 4760 §5). Host bits
/// beyond the prefix length are cleared.
pub fn decode_prefixes(mut bytes: &[u8], afi: u16) -> Result<Vec<IpNet>, DecodeError> {
    let max_len: u8 = if afi == AFI_IPV6 { 128 } else { 32 };
    let mut out = Vec::new();
    while let Some((&bits, tail)) = bytes.split_first() {
        if bits > max_len {
            return Err(DecodeError::InvalidNetworkField("prefix length too long"));
        }
        let octets = usize::from(bits).div_ceil(8);
        let addr_bytes = tail
            .get(..octets)
            .ok_or(DecodeError::InvalidNetworkField("prefix overruns"))?;
        let net = if afi == AFI_IPV6 {
            let mut full = [0u8; 16];
            full[..octets].copy_from_slice(addr_bytes);
            Ipv6Net::new(Ipv6Addr::from(full), bits)
                .map(|n| IpNet::V6(n.trunc()))
                .map_err(|_| DecodeError::InvalidNetworkField("prefix length"))?
        } else {
            let mut full = [0u8; 4];
            full[..octets].copy_from_slice(addr_bytes);
            Ipv4Net::new(Ipv4Addr::from(full), bits)
                .map(|n| IpNet::V4(n.trunc()))
                .map_err(|_| DecodeError::InvalidNetworkField("prefix length"))?
        };
        out.push(net);
        bytes = &tail[octets..];
    }
    Ok(out)
}

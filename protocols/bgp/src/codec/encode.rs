//! Encoders for OPEN, KEEPALIVE, NOTIFICATION and ROUTE-REFRESH, written here rather than
//! through zettabgp so that every byte we send is ours to test (NOTIFICATION data in zettabgp is
//! a fixed 2 bytes, too small for an RFC 8203 shutdown communication). Pure functions.

use super::{
    AS_TRANS, BGP_VERSION, Capabilities, HEADER_LEN, MAX_MESSAGE_LEN, MessageType,
    NotificationMessage, OPT_PARAM_CAPABILITIES, OpenMessage, RouteRefreshMessage, capability_code,
};

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message body of {0} bytes exceeds the 4096-byte BGP maximum")]
    TooLong(usize),
    #[error("optional parameters of {0} bytes exceed 255")]
    OptionalParametersTooLong(usize),
    #[error("graceful restart time {0} s does not fit in 12 bits")]
    RestartTimeTooLarge(u16),
    #[error("no next hop for {0:?} routes")]
    MissingNextHop(super::Family),
}

/// Prepends the 19-byte header (RFC 4271 §4.1) to a message body.
pub fn frame(message_type: MessageType, body: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let len = HEADER_LEN + body.len();
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong(len));
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(message_type as u8);
    out.extend_from_slice(body);
    Ok(out)
}

/// KEEPALIVE: a bare header (RFC 4271 §4.4).
pub fn encode_keepalive() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&(HEADER_LEN as u16).to_be_bytes());
    out.push(MessageType::Keepalive as u8);
    out
}

/// The 2-octet My AS field for an ASN: AS_TRANS when it needs 4 octets (RFC 6793 §4.1).
pub fn two_octet_as(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}

/// OPEN (RFC 4271 §4.2) with all capabilities in one Capabilities optional parameter (RFC 5492).
pub fn encode_open(open: &OpenMessage) -> Result<Vec<u8>, EncodeError> {
    let caps = encode_capabilities(&open.capabilities)?;
    let mut params = Vec::new();
    if !caps.is_empty() {
        if caps.len() > 255 {
            return Err(EncodeError::OptionalParametersTooLong(caps.len() + 2));
        }
        params.push(OPT_PARAM_CAPABILITIES);
        params.push(caps.len() as u8);
        params.extend_from_slice(&caps);
    }
    if params.len() > 255 {
        return Err(EncodeError::OptionalParametersTooLong(params.len()));
    }
    let mut body = Vec::with_capacity(10 + params.len());
    body.push(open.version);
    body.extend_from_slice(&open.my_as.to_be_bytes());
    body.extend_from_slice(&open.hold_time_secs.to_be_bytes());
    body.extend_from_slice(&open.bgp_identifier.octets());
    body.push(params.len() as u8);
    body.extend_from_slice(&params);
    frame(MessageType::Open, &body)
}

fn encode_capabilities(caps: &Capabilities) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    // Multiprotocol: AFI(2) reserved(1) SAFI(1) (RFC 4760 §8).
    for &(afi, safi) in &caps.multiprotocol {
        out.extend_from_slice(&[capability_code::MULTIPROTOCOL, 4]);
        out.extend_from_slice(&afi.to_be_bytes());
        out.extend_from_slice(&[0, safi]);
    }
    if caps.route_refresh {
        out.extend_from_slice(&[capability_code::ROUTE_REFRESH, 0]);
    }
    if let Some(asn) = caps.four_octet_as {
        out.extend_from_slice(&[capability_code::FOUR_OCTET_AS, 4]);
        out.extend_from_slice(&asn.to_be_bytes());
    }
    if let Some(gr) = &caps.graceful_restart {
        // Restart flags(4 bits) + restart time(12 bits), then AFI(2) SAFI(1) flags(1) per
        // family (RFC 4724 §3).
        if gr.restart_time_secs > 0x0fff {
            return Err(EncodeError::RestartTimeTooLarge(gr.restart_time_secs));
        }
        let len = 2 + 4 * gr.families.len();
        if len > 255 {
            return Err(EncodeError::OptionalParametersTooLong(len));
        }
        out.extend_from_slice(&[capability_code::GRACEFUL_RESTART, len as u8]);
        let flags_and_time = gr.restart_time_secs | if gr.restart_state { 0x8000 } else { 0 };
        out.extend_from_slice(&flags_and_time.to_be_bytes());
        for family in &gr.families {
            out.extend_from_slice(&family.afi.to_be_bytes());
            out.push(family.safi);
            out.push(if family.forwarding_preserved { 0x80 } else { 0 });
        }
    }
    Ok(out)
}

/// Builds our OPEN's fixed fields for an ASN.
pub fn open_message(
    asn: u32,
    hold_time_secs: u16,
    bgp_identifier: std::net::Ipv4Addr,
    capabilities: Capabilities,
) -> OpenMessage {
    OpenMessage {
        version: BGP_VERSION,
        my_as: two_octet_as(asn),
        hold_time_secs,
        bgp_identifier,
        capabilities,
    }
}

/// NOTIFICATION (RFC 4271 §4.5); data longer than the message allows is cut.
pub fn encode_notification(notification: &NotificationMessage) -> Vec<u8> {
    let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
    let data = &notification.data[..notification.data.len().min(room)];
    let mut body = Vec::with_capacity(2 + data.len());
    body.push(notification.code);
    body.push(notification.subcode);
    body.extend_from_slice(data);
    let len = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(MessageType::Notification as u8);
    out.extend_from_slice(&body);
    out
}

/// ROUTE-REFRESH (RFC 2918 §3).
pub fn encode_route_refresh(refresh: &RouteRefreshMessage) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&23u16.to_be_bytes());
    out.push(MessageType::RouteRefresh as u8);
    out.extend_from_slice(&refresh.afi.to_be_bytes());
    out.push(0);
    out.push(refresh.safi);
    out
}

//! BGP message codec: bytes from a peer -> validated [`Message`]s, and our messages -> bytes.
//!
//! Owns: the 19-byte header check (RFC 4271 §4.1), per-type length checks (§6.1), structural
//! validation of OPEN / UPDATE / NOTIFICATION / ROUTE-REFRESH bodies, the TCP stream
//! [`Framer`], and the encoders (in [`encode`] and [`update`]).
//!
//! zettabgp 0.6 is used only behind this wall: the header is checked (marker, length 19..=4096,
//! type 1..=5) before `decode_message_head` runs, and OPEN capabilities are handed to
//! `BgpCapability::from_buffer` one TLV at a time after their lengths were bounded here. Its
//! known defects (swapped AS_PATH segment types on encode, panic on a length below 19, a 2-byte
//! NOTIFICATION data field) are avoided by encoding UPDATE and NOTIFICATION ourselves.
//!
//! No I/O happens here. Nothing in this module panics on any input.

pub mod encode;
pub mod update;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use zettabgp::prelude::{
    BgpCapability, BgpNotificationMessage, BgpSessionParams, BgpTransportMode,
};

pub use encode::*;
pub use update::*;

/// Length of the fixed message header: 16-byte marker, 2-byte length, 1-byte type (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// Largest message a BGP speaker may send without the extended-message capability (RFC 4271 §4).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The only BGP version we speak (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;
/// The 2-octet stand-in for a 4-octet ASN (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;
/// Smallest OPEN: header + version, my AS, hold time, BGP identifier, opt param len (RFC 4271 §4.2).
pub const MIN_OPEN_LEN: usize = 29;
/// Smallest UPDATE: header + withdrawn length + attribute length (RFC 4271 §4.3).
pub const MIN_UPDATE_LEN: usize = 23;
/// Smallest NOTIFICATION: header + code + subcode (RFC 4271 §4.5).
pub const MIN_NOTIFICATION_LEN: usize = 21;
/// ROUTE-REFRESH is exactly header + AFI + reserved + SAFI (RFC 2918 §3).
pub const ROUTE_REFRESH_LEN: usize = 23;

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

impl MessageType {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Open,
            2 => Self::Update,
            3 => Self::Notification,
            4 => Self::Keepalive,
            5 => Self::RouteRefresh,
            _ => return None,
        })
    }
}

/// Address families Herald announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

/// AFI values (IANA "Address Family Numbers").
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
/// SAFI for unicast forwarding (RFC 4760 §6).
pub const SAFI_UNICAST: u8 = 1;

impl Family {
    pub fn afi_safi(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (AFI_IPV4, SAFI_UNICAST),
            Family::Ipv6Unicast => (AFI_IPV6, SAFI_UNICAST),
        }
    }

    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Self> {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Some(Family::Ipv4Unicast),
            (AFI_IPV6, SAFI_UNICAST) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    pub fn of(prefix: &IpNet) -> Self {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
}

/// One address family in a graceful-restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartFamily {
    pub afi: u16,
    pub safi: u8,
    /// The F bit: forwarding state for this family survived the restart.
    pub forwarding_preserved: bool,
}

/// The graceful-restart capability, code 64 (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartCapability {
    /// The R bit: the sender has restarted.
    pub restart_state: bool,
    /// Seconds the peer should keep our routes while we come back (12 bits).
    pub restart_time_secs: u16,
    pub families: Vec<GracefulRestartFamily>,
}

/// What an OPEN advertises, reduced to what the session acts on (RFC 5492).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// 4-octet AS number capability, code 65 (RFC 6793).
    pub four_octet_as: Option<u32>,
    /// Multiprotocol capabilities, code 1, as raw (AFI, SAFI) pairs (RFC 4760 §8).
    pub multiprotocol: Vec<(u16, u8)>,
    /// Route refresh, code 2 (RFC 2918).
    pub route_refresh: bool,
    /// Graceful restart, code 64 (RFC 4724).
    pub graceful_restart: Option<GracefulRestartCapability>,
    /// Codes of capabilities we received but do not act on (or could not parse).
    pub other: Vec<u8>,
}

impl Capabilities {
    /// Families named by multiprotocol capabilities that Herald knows.
    pub fn families(&self) -> Vec<Family> {
        self.multiprotocol
            .iter()
            .filter_map(|&(afi, safi)| Family::from_afi_safi(afi, safi))
            .collect()
    }
}

/// An OPEN message (RFC 4271 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMessage {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the real ASN needs 4 octets).
    pub my_as: u16,
    pub hold_time_secs: u16,
    pub bgp_identifier: Ipv4Addr,
    pub capabilities: Capabilities,
}

impl OpenMessage {
    /// The sender's ASN: the 4-octet capability when present, else the 2-octet field (RFC 6793 §4.1).
    pub fn asn(&self) -> u32 {
        self.capabilities
            .four_octet_as
            .unwrap_or(u32::from(self.my_as))
    }

    /// Address families the peer can exchange. Without any multiprotocol capability a peer
    /// speaks IPv4 unicast only (RFC 4760 §1).
    pub fn families(&self) -> Vec<Family> {
        if self.capabilities.multiprotocol.is_empty() {
            vec![Family::Ipv4Unicast]
        } else {
            self.capabilities.families()
        }
    }
}

/// NOTIFICATION error codes (RFC 4271 §4.5).
pub mod error_code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
}

/// NOTIFICATION error subcodes (RFC 4271 §6, RFC 6608, RFC 4486, RFC 5492).
pub mod subcode {
    // Message Header Error (RFC 4271 §6.1)
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN Message Error (RFC 4271 §6.2, RFC 5492 §5)
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    // UPDATE Message Error (RFC 4271 §6.3)
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    // FSM Error (RFC 6608 §4)
    pub const UNEXPECTED_MESSAGE_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_MESSAGE_IN_ESTABLISHED: u8 = 3;
    // Cease (RFC 4486 §4)
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    // Cease (RFC 9384 §2)
    pub const BFD_DOWN: u8 = 10;
}

/// Longest shutdown communication a NOTIFICATION carries (RFC 9003 §2 raised RFC 8203's 128 to 255).
pub const MAX_SHUTDOWN_COMMUNICATION_LEN: usize = 255;

/// A NOTIFICATION message (RFC 4271 §4.5) with its full data field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationMessage {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl NotificationMessage {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Self {
            code,
            subcode,
            data,
        }
    }

    /// Cease with a shutdown communication (RFC 8203 §2, RFC 9003): a length octet then UTF-8,
    /// cut at a character boundary to fit 255 octets.
    pub fn cease_with_communication(subcode: u8, communication: &str) -> Self {
        let mut end = communication.len().min(MAX_SHUTDOWN_COMMUNICATION_LEN);
        while !communication.is_char_boundary(end) {
            end -= 1;
        }
        let text = &communication.as_bytes()[..end];
        let mut data = Vec::with_capacity(1 + text.len());
        if !text.is_empty() {
            data.push(text.len() as u8);
            data.extend_from_slice(text);
        }
        Self::new(error_code::CEASE, subcode, data)
    }

    /// The shutdown communication of a Cease / Administrative Shutdown or Reset, if it carries a
    /// well-formed one (RFC 8203 §2).
    pub fn shutdown_communication(&self) -> Option<String> {
        if self.code != error_code::CEASE
            || !matches!(
                self.subcode,
                subcode::ADMINISTRATIVE_SHUTDOWN | subcode::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        String::from_utf8(text.to_vec()).ok()
    }

    /// Human-readable code/subcode, as zettabgp names them, plus any shutdown communication.
    pub fn describe(&self) -> String {
        let named = BgpNotificationMessage {
            error_code: self.code,
            error_subcode: self.subcode,
            data: 0,
        }
        .error_text();
        match self.shutdown_communication() {
            Some(text) => format!("{named} ({}/{}): \"{text}\"", self.code, self.subcode),
            None => format!("{named} ({}/{})", self.code, self.subcode),
        }
    }
}

/// One path attribute as received: flags, type code, value (RFC 4271 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// Path attribute flag bits (RFC 4271 §4.3).
pub mod attr_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Path attribute type codes.
pub mod attr_type {
    /// RFC 4271 §5.1.1
    pub const ORIGIN: u8 = 1;
    /// RFC 4271 §5.1.2
    pub const AS_PATH: u8 = 2;
    /// RFC 4271 §5.1.3
    pub const NEXT_HOP: u8 = 3;
    /// RFC 4271 §5.1.4
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// RFC 4271 §5.1.5
    pub const LOCAL_PREF: u8 = 5;
    /// RFC 1997
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4760 §3
    pub const MP_REACH_NLRI: u8 = 14;
    /// RFC 4760 §4
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 4360
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// RFC 6793 §3
    pub const AS4_PATH: u8 = 17;
    /// RFC 8092
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// MP_REACH_NLRI contents (RFC 4760 §3). Prefixes are decoded for the unicast families we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub afi: u16,
    pub safi: u8,
    pub next_hop: Vec<u8>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI contents (RFC 4760 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub afi: u16,
    pub safi: u8,
    pub withdrawn: Vec<IpNet>,
}

/// An UPDATE message (RFC 4271 §4.3), structurally validated. Attribute values other than
/// MP_REACH/MP_UNREACH are kept raw: Herald ignores learned routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateMessage {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Vec<PathAttribute>,
    pub nlri: Vec<Ipv4Net>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
}

impl UpdateMessage {
    /// The family this UPDATE ends the initial table of, if it is an End-of-RIB marker
    /// (RFC 4724 §2): an empty UPDATE for IPv4 unicast, or one holding only an empty
    /// MP_UNREACH_NLRI for another family.
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || self.mp_reach.is_some() {
            return None;
        }
        match (&self.mp_unreach, self.attributes.len()) {
            (None, 0) => Some(Family::Ipv4Unicast),
            (Some(unreach), 1) if unreach.withdrawn.is_empty() => {
                Family::from_afi_safi(unreach.afi, unreach.safi)
            }
            _ => None,
        }
    }

    /// The attribute with this type code, if present.
    pub fn attribute(&self, type_code: u8) -> Option<&PathAttribute> {
        self.attributes.iter().find(|a| a.type_code == type_code)
    }
}

/// A ROUTE-REFRESH message (RFC 2918 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefreshMessage {
    pub afi: u16,
    pub safi: u8,
}

/// Any BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(OpenMessage),
    Update(UpdateMessage),
    Notification(NotificationMessage),
    Keepalive,
    RouteRefresh(RouteRefreshMessage),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }
}

/// Why bytes from a peer are not a valid message. [`DecodeError::notification`] gives the
/// NOTIFICATION that RFC 4271 §6 prescribes for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than the message it claims to be")]
    Truncated(usize),
    #[error("{0} bytes follow the message")]
    TrailingBytes(usize),
    #[error("header marker is not all ones")]
    ConnectionNotSynchronized,
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    #[error("bad message type {0}")]
    BadMessageType(u8),
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("attribute length error (type {0})")]
    AttributeLength(u8),
    #[error("invalid network field: {0}")]
    InvalidNetworkField(&'static str),
    #[error("malformed NOTIFICATION")]
    MalformedNotification,
    #[error("receive buffer would exceed {0} bytes")]
    BufferOverflow(usize),
}

impl DecodeError {
    /// The NOTIFICATION to send for this error (RFC 4271 §6.1–6.3), if one should be sent.
    /// A malformed NOTIFICATION is never answered with another one (RFC 4271 §6.4).
    pub fn notification(&self) -> Option<NotificationMessage> {
        use error_code::*;
        use subcode::*;
        Some(match self {
            DecodeError::Truncated(_) | DecodeError::TrailingBytes(_) => {
                NotificationMessage::new(MESSAGE_HEADER, BAD_MESSAGE_LENGTH, vec![])
            }
            DecodeError::ConnectionNotSynchronized => {
                NotificationMessage::new(MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED, vec![])
            }
            DecodeError::BadMessageLength(len) => NotificationMessage::new(
                MESSAGE_HEADER,
                BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec(),
            ),
            DecodeError::BadMessageType(t) => {
                NotificationMessage::new(MESSAGE_HEADER, BAD_MESSAGE_TYPE, vec![*t])
            }
            // Data: the largest locally supported version, 2 octets (RFC 4271 §6.2).
            DecodeError::UnsupportedVersion(_) => NotificationMessage::new(
                OPEN_MESSAGE,
                UNSUPPORTED_VERSION_NUMBER,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            DecodeError::UnsupportedOptionalParameter(_) => {
                NotificationMessage::new(OPEN_MESSAGE, UNSUPPORTED_OPTIONAL_PARAMETER, vec![])
            }
            // No subcode fits a garbled OPEN body; 0 is "unspecific" (RFC 4271 §6.2).
            DecodeError::MalformedOpen(_) => NotificationMessage::new(OPEN_MESSAGE, 0, vec![]),
            DecodeError::MalformedAttributeList(_) => {
                NotificationMessage::new(UPDATE_MESSAGE, MALFORMED_ATTRIBUTE_LIST, vec![])
            }
            DecodeError::AttributeLength(_) => {
                NotificationMessage::new(UPDATE_MESSAGE, ATTRIBUTE_LENGTH_ERROR, vec![])
            }
            DecodeError::InvalidNetworkField(_) => {
                NotificationMessage::new(UPDATE_MESSAGE, INVALID_NETWORK_FIELD, vec![])
            }
            DecodeError::MalformedNotification => return None,
            DecodeError::BufferOverflow(_) => {
                NotificationMessage::new(CEASE, OUT_OF_RESOURCES, vec![])
            }
        })
    }
}

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
fn zettabgp_params() -> BgpSessionParams {
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

/// Optional parameter type for capabilities (RFC 5492 §4).
const OPT_PARAM_CAPABILITIES: u8 = 2;
/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
}

fn decode_open(body: &[u8]) -> Result<OpenMessage, DecodeError> {
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
fn decode_capabilities(mut tlvs: &[u8], into: &mut Capabilities) -> Result<(), DecodeError> {
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

fn absorb_capability(cap: BgpCapability, into: &mut Capabilities) {
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

fn decode_notification(body: &[u8]) -> Result<NotificationMessage, DecodeError> {
    match body {
        [code, subcode, data @ ..] => Ok(NotificationMessage::new(*code, *subcode, data.to_vec())),
        _ => Err(DecodeError::MalformedNotification),
    }
}

fn decode_update(body: &[u8]) -> Result<UpdateMessage, DecodeError> {
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

fn decode_mp_reach(value: &[u8]) -> Result<MpReach, DecodeError> {
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

fn decode_mp_unreach(value: &[u8]) -> Result<MpUnreach, DecodeError> {
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

fn split_u16(bytes: &[u8]) -> Option<(usize, &[u8])> {
    match bytes {
        [hi, lo, rest @ ..] => Some((usize::from(u16::from_be_bytes([*hi, *lo])), rest)),
        _ => None,
    }
}

fn as_v4(net: IpNet) -> Option<Ipv4Net> {
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

/// Largest number of bytes a [`Framer`] buffers: one maximal message still arriving plus one
/// maximal read. A peer that overruns this is sending faster than we decode.
pub const FRAMER_CAPACITY: usize = 4 * MAX_MESSAGE_LEN;

/// Cuts a TCP byte stream into whole messages. Bounded: it holds at most [`FRAMER_CAPACITY`]
/// bytes. After an error the stream has lost framing and the framer keeps failing.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    failed: Option<DecodeError>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Fails (and keeps nothing) when the buffer would overflow.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.buffer.len() + bytes.len() > FRAMER_CAPACITY {
            let error = DecodeError::BufferOverflow(FRAMER_CAPACITY);
            self.failed = Some(error.clone());
            self.buffer.clear();
            return Err(error);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// The next whole message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Message, DecodeError>> {
        if let Some(error) = &self.failed {
            return Some(Err(error.clone()));
        }
        let len = match check_header(&self.buffer) {
            Ok(None) => return None,
            Ok(Some((len, _))) => len,
            Err(error) => {
                self.failed = Some(error.clone());
                self.buffer.clear();
                return Some(Err(error));
            }
        };
        if self.buffer.len() < len {
            return None;
        }
        let result = decode(&self.buffer[..len]);
        self.buffer.drain(..len);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buffer.clear();
        }
        Some(result)
    }

    /// Bytes held that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

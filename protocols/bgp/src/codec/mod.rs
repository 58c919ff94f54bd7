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

mod decode;
pub mod encode;
pub mod update;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use zettabgp::prelude::{
    BgpCapability, BgpNotificationMessage, BgpSessionParams, BgpTransportMode,
};

pub use decode::*;
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

/// Optional parameter type for capabilities (RFC 5492 §4).
const OPT_PARAM_CAPABILITIES: u8 = 2;
/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
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

//! BFD control packet encode/decode (RFC 5880 §4.1) and the packet-level reception checks of
//! §6.8.6 that need no session.
//!
//! Owns: the 24-byte mandatory section, the diagnostic and state codes, and the rules that make
//! a packet malformed. It does not own authentication (Herald sends none and drops packets that
//! carry it, §6.8.6) nor any I/O: bytes in, [`ControlPacket`] out, and back.

use std::fmt;

use thiserror::Error;

/// Protocol version (RFC 5880 §4.1, "Vers").
pub const VERSION: u8 = 1;
/// Length of the mandatory section (RFC 5880 §4.1).
pub const MANDATORY_LEN: usize = 24;
/// Smallest length when the A bit is set: mandatory section plus a minimal authentication
/// section header (RFC 5880 §6.8.6, "less than the minimum correct value (24 if the A bit is
/// clear, or 26 if the A bit is set)").
pub const MIN_AUTH_LEN: usize = 26;

/// Session state codes (RFC 5880 §4.1, "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// Lower-case name used in logs, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "adminDown",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Diagnostic codes (RFC 5880 §4.1, "Diag"). Values 9..=31 are reserved and kept as
/// [`Diagnostic::Reserved`] so that a packet re-encodes to the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Reserved(u8),
}

impl Diagnostic {
    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Reserved(code) => code & 0x1f,
        }
    }

    pub fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Reserved(other),
        }
    }

    /// Short name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnostic::None => "none",
            Diagnostic::ControlDetectionTimeExpired => "controlDetectionTimeExpired",
            Diagnostic::EchoFunctionFailed => "echoFunctionFailed",
            Diagnostic::NeighborSignaledSessionDown => "neighborSignaledSessionDown",
            Diagnostic::ForwardingPlaneReset => "forwardingPlaneReset",
            Diagnostic::PathDown => "pathDown",
            Diagnostic::ConcatenatedPathDown => "concatenatedPathDown",
            Diagnostic::AdministrativelyDown => "administrativelyDown",
            Diagnostic::ReverseConcatenatedPathDown => "reverseConcatenatedPathDown",
            Diagnostic::Reserved(_) => "reserved",
        }
    }
}

/// One BFD control packet (the mandatory section; RFC 5880 §4.1). Intervals are in
/// microseconds, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diagnostic,
    pub state: State,
    /// P: the sender asks for a Final (RFC 5880 §6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane (RFC 5880 §4.1).
    pub control_plane_independent: bool,
    /// A: an authentication section follows. Herald never sets it.
    pub authentication_present: bool,
    /// D: the sender wants demand mode (RFC 5880 §6.6).
    pub demand: bool,
    /// M: reserved for point-to-multipoint; must be zero.
    pub multipoint: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a datagram is not a valid BFD control packet (RFC 5880 §6.8.6, checks that need no
/// session). Each maps to a drop-reason label in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than a BFD control packet")]
    TooShort(usize),
    #[error("BFD version {0} (only version 1 is supported)")]
    BadVersion(u8),
    #[error("length field {length} is below the minimum {minimum}")]
    LengthTooSmall { length: u8, minimum: u8 },
    #[error("length field {length} exceeds the {payload} bytes received")]
    LengthExceedsPayload { length: u8, payload: usize },
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("multipoint bit is set")]
    Multipoint,
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("poll and final bits are both set")]
    PollAndFinal,
}

impl DecodeError {
    /// Label for the dropped-packets metric.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort(_) => "too_short",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::LengthTooSmall { .. } => "bad_length",
            DecodeError::LengthExceedsPayload { .. } => "bad_length",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscriminator => "zero_my_discriminator",
            DecodeError::PollAndFinal => "poll_and_final",
        }
    }
}

impl ControlPacket {
    /// Decodes and checks one datagram (RFC 5880 §6.8.6, the checks before session lookup).
    /// Bytes after the length field's end are ignored; an authentication section is accepted
    /// here (its A bit is reported) and refused by the session, which has no authentication.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
        if bytes.len() < MANDATORY_LEN {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let flags = bytes[1];
        let authentication_present = flags & 0x04 != 0;
        let length = bytes[3];
        let minimum = if authentication_present {
            MIN_AUTH_LEN
        } else {
            MANDATORY_LEN
        };
        if usize::from(length) < minimum {
            return Err(DecodeError::LengthTooSmall {
                length,
                minimum: minimum as u8,
            });
        }
        if usize::from(length) > bytes.len() {
            return Err(DecodeError::LengthExceedsPayload {
                length,
                payload: bytes.len(),
            });
        }
        let detect_mult = bytes[2];
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        let multipoint = flags & 0x01 != 0;
        if multipoint {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let my_discriminator = word(4);
        if my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        let poll = flags & 0x20 != 0;
        let final_ = flags & 0x10 != 0;
        if poll && final_ {
            return Err(DecodeError::PollAndFinal);
        }
        Ok(ControlPacket {
            diag: Diagnostic::from_code(bytes[0]),
            state: State::from_bits(flags >> 6),
            poll,
            final_,
            control_plane_independent: flags & 0x08 != 0,
            authentication_present,
            demand: flags & 0x02 != 0,
            multipoint,
            detect_mult,
            my_discriminator,
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        })
    }

    /// Encodes the mandatory section (24 bytes, length field 24). An `authentication_present`
    /// packet is encoded with its A bit but without an authentication section; Herald never
    /// builds one.
    pub fn encode(&self) -> [u8; MANDATORY_LEN] {
        let mut out = [0u8; MANDATORY_LEN];
        out[0] = (VERSION << 5) | self.diag.code();
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.authentication_present) << 2)
            | (u8::from(self.demand) << 1)
            | u8::from(self.multipoint);
        out[2] = self.detect_mult;
        out[3] = MANDATORY_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> [u8; 24] {
        ControlPacket {
            diag: Diagnostic::None,
            state: State::Up,
            poll: false,
            final_: false,
            control_plane_independent: false,
            authentication_present: false,
            demand: false,
            multipoint: false,
            detect_mult: 3,
            my_discriminator: 1,
            your_discriminator: 2,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        }
        .encode()
    }

    #[test]
    fn a_datagram_shorter_than_24_bytes_is_refused() {
        assert_eq!(
            ControlPacket::decode(&valid()[..23]),
            Err(DecodeError::TooShort(23))
        );
    }

    #[test]
    fn a_version_other_than_1_is_refused() {
        let mut b = valid();
        b[0] = (2 << 5) | (b[0] & 0x1f);
        assert_eq!(ControlPacket::decode(&b), Err(DecodeError::BadVersion(2)));
    }

    #[test]
    fn a_length_field_below_24_or_above_the_datagram_is_refused() {
        let mut b = valid();
        b[3] = 23;
        assert!(matches!(
            ControlPacket::decode(&b),
            Err(DecodeError::LengthTooSmall { .. })
        ));
        b[3] = 25;
        assert!(matches!(
            ControlPacket::decode(&b),
            Err(DecodeError::LengthExceedsPayload { .. })
        ));
    }

    #[test]
    fn with_the_a_bit_a_length_below_26_is_refused() {
        let mut b = valid();
        b[1] |= 0x04;
        assert_eq!(
            ControlPacket::decode(&b),
            Err(DecodeError::LengthTooSmall {
                length: 24,
                minimum: 26
            })
        );
    }

    #[test]
    fn a_zero_multiplier_a_multipoint_bit_a_zero_discriminator_and_poll_with_final_are_refused() {
        let mut b = valid();
        b[2] = 0;
        assert_eq!(ControlPacket::decode(&b), Err(DecodeError::ZeroDetectMult));
        let mut b = valid();
        b[1] |= 0x01;
        assert_eq!(ControlPacket::decode(&b), Err(DecodeError::Multipoint));
        let mut b = valid();
        b[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(
            ControlPacket::decode(&b),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        let mut b = valid();
        b[1] |= 0x30;
        assert_eq!(ControlPacket::decode(&b), Err(DecodeError::PollAndFinal));
    }

    #[test]
    fn bytes_beyond_the_length_field_are_ignored() {
        let mut b = valid().to_vec();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&b).map(|p| p.encode()), Ok(valid()));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking_and_valid_ones_reencode(
            bytes in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            if let Ok(packet) = ControlPacket::decode(&bytes) {
                let again = packet.encode();
                // Everything but the length field (we never send an auth section) survives.
                prop_assert_eq!(&again[..3], &bytes[..3]);
                prop_assert_eq!(&again[4..], &bytes[4..24]);
            }
        }

        #[test]
        fn every_encodable_packet_decodes_to_itself(
            diag in 0u8..32, state in 0u8..4, p in any::<bool>(), c in any::<bool>(),
            d in any::<bool>(), mult in 1u8.., my in 1u32.., your in any::<u32>(),
            tx in any::<u32>(), rx in any::<u32>(), echo in any::<u32>(),
        ) {
            let packet = ControlPacket {
                diag: Diagnostic::from_code(diag),
                state: State::from_bits(state),
                poll: p,
                final_: !p && c,
                control_plane_independent: c,
                authentication_present: false,
                demand: d,
                multipoint: false,
                detect_mult: mult,
                my_discriminator: my,
                your_discriminator: your,
                desired_min_tx_us: tx,
                required_min_rx_us: rx,
                required_min_echo_rx_us: echo,
            };
            prop_assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
        }
    }
}

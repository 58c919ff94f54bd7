//! The membership datagram frame and its authentication.
//!
//! Pure functions over byte slices; the key comes in as bytes (from a Kubernetes Secret, read
//! by the caller). Frame layout, all of it covered by the tag:
//!
//! ```text
//! +------+------+---------+----------------------+----------------------------+
//! | 'H'  | 'M'  | version | foca message         | HMAC-SHA256 tag (32 bytes) |
//! +------+------+---------+----------------------+----------------------------+
//! ```
//!
//! The tag is HMAC-SHA256 (RFC 2104, FIPS 180-4) over magic, version and message, compared in
//! constant time. Several keys may be accepted at once so a Secret can be rotated without a
//! flag day: sign with the new key, keep accepting the old one until every speaker has it.
//!
//! Replays of captured frames are not detected. SWIM tolerates them: a Down verdict is final
//! for an identity, so a replayed "alive" cannot resurrect a dead member, and probe numbers
//! change every cycle, so a replayed Ack does not answer a current probe.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::MembershipError;

/// First two bytes of every membership datagram.
pub const FRAME_MAGIC: [u8; 2] = *b"HM";
/// Frame version this code speaks.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the foca message.
pub const FRAME_HEADER_LEN: usize = 3;
/// Length of the HMAC-SHA256 tag (RFC 2104 with SHA-256: 32 bytes, not truncated).
pub const TAG_LEN: usize = 32;
/// Shortest key accepted. RFC 2104 §3 recommends at least the hash output length (32 bytes);
/// 16 is the floor below which a key is refused outright.
pub const MIN_KEY_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Why a datagram was dropped before reaching the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameRejection {
    /// Shorter than header plus tag.
    TooShort,
    /// Longer than the configured datagram budget.
    TooLong,
    /// Does not start with the membership magic: not ours.
    NotMembership,
    /// A frame version this code does not speak.
    UnsupportedVersion,
    /// The tag does not match under any accepted key: forged, corrupted, or another cluster.
    BadAuthentication,
}

/// The shared cluster keys: one signs, all of them verify.
#[derive(Clone)]
pub struct ClusterKeys {
    signing: HmacSha256,
    accepted: Vec<HmacSha256>,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClusterKeys")
            .field("accepted_keys", &self.accepted.len())
            .finish_non_exhaustive()
    }
}

impl ClusterKeys {
    /// Keys that sign and verify with `key` only.
    pub fn new(key: &[u8]) -> Result<Self, MembershipError> {
        let signing = keyed(key)?;
        Ok(Self {
            accepted: vec![signing.clone()],
            signing,
        })
    }

    /// Also accept frames signed with `previous_key` (during a key rotation).
    pub fn also_accepting(mut self, previous_key: &[u8]) -> Result<Self, MembershipError> {
        self.accepted.push(keyed(previous_key)?);
        Ok(self)
    }

    /// Frames `message` and appends its tag.
    pub fn seal(&self, message: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + message.len() + TAG_LEN);
        frame.extend_from_slice(&FRAME_MAGIC);
        frame.push(FRAME_VERSION);
        frame.extend_from_slice(message);
        let mut mac = self.signing.clone();
        mac.update(&frame);
        frame.extend_from_slice(&mac.finalize().into_bytes());
        frame
    }

    /// Checks a received frame of at most `max_len` bytes and returns the message inside.
    pub fn open<'frame>(
        &self,
        frame: &'frame [u8],
        max_len: usize,
    ) -> Result<&'frame [u8], FrameRejection> {
        if frame.len() > max_len {
            return Err(FrameRejection::TooLong);
        }
        let Some(signed_len) = frame.len().checked_sub(TAG_LEN) else {
            return Err(FrameRejection::TooShort);
        };
        if signed_len < FRAME_HEADER_LEN {
            return Err(FrameRejection::TooShort);
        }
        let (signed, tag) = frame.split_at(signed_len);
        if signed[..2] != FRAME_MAGIC {
            return Err(FrameRejection::NotMembership);
        }
        if signed[2] != FRAME_VERSION {
            return Err(FrameRejection::UnsupportedVersion);
        }
        let authentic = self.accepted.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(signed);
            mac.verify_slice(tag).is_ok()
        });
        if !authentic {
            return Err(FrameRejection::BadAuthentication);
        }
        Ok(&signed[FRAME_HEADER_LEN..])
    }
}

fn keyed(key: &[u8]) -> Result<HmacSha256, MembershipError> {
    if key.len() < MIN_KEY_LEN {
        return Err(MembershipError::KeyTooShort {
            len: key.len(),
            min: MIN_KEY_LEN,
        });
    }
    HmacSha256::new_from_slice(key).map_err(|_| MembershipError::KeyTooShort {
        len: key.len(),
        min: MIN_KEY_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn a_sealed_frame_opens_to_the_same_message() {
        let keys = ClusterKeys::new(KEY).expect("key");
        let frame = keys.seal(b"ping");
        assert_eq!(frame.len(), FRAME_HEADER_LEN + 4 + TAG_LEN);
        assert_eq!(keys.open(&frame, 1400), Ok(&b"ping"[..]));
    }

    #[test]
    fn a_frame_signed_with_another_key_is_rejected() {
        let ours = ClusterKeys::new(KEY).expect("key");
        let theirs = ClusterKeys::new(OTHER_KEY).expect("key");
        let frame = theirs.seal(b"ping");
        assert_eq!(
            ours.open(&frame, 1400),
            Err(FrameRejection::BadAuthentication)
        );
    }

    #[test]
    fn any_flipped_bit_breaks_authentication() {
        let keys = ClusterKeys::new(KEY).expect("key");
        let frame = keys.seal(b"some membership message");
        for index in FRAME_HEADER_LEN..frame.len() {
            let mut tampered = frame.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                keys.open(&tampered, 1400),
                Err(FrameRejection::BadAuthentication),
                "flip at byte {index} accepted"
            );
        }
    }

    #[test]
    fn frames_that_are_short_long_foreign_or_from_the_future_are_classified() {
        let keys = ClusterKeys::new(KEY).expect("key");
        let frame = keys.seal(b"x");
        assert_eq!(keys.open(&frame[..10], 1400), Err(FrameRejection::TooShort));
        assert_eq!(
            keys.open(&frame, frame.len() - 1),
            Err(FrameRejection::TooLong)
        );
        let mut foreign = frame.clone();
        foreign[0] = b'X';
        assert_eq!(
            keys.open(&foreign, 1400),
            Err(FrameRejection::NotMembership)
        );
        let mut future = frame;
        future[2] = FRAME_VERSION + 1;
        assert_eq!(
            keys.open(&future, 1400),
            Err(FrameRejection::UnsupportedVersion)
        );
    }

    #[test]
    fn during_rotation_frames_under_the_previous_key_are_accepted() {
        let rotated = ClusterKeys::new(KEY)
            .and_then(|keys| keys.also_accepting(OTHER_KEY))
            .expect("keys");
        let old_signer = ClusterKeys::new(OTHER_KEY).expect("key");
        assert_eq!(rotated.open(&old_signer.seal(b"m"), 1400), Ok(&b"m"[..]));
        let new_only = ClusterKeys::new(KEY).expect("key");
        assert!(new_only.open(&rotated.seal(b"m"), 1400).is_ok());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ClusterKeys::new(b"short").is_err());
    }
}

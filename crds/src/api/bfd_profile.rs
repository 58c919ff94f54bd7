//! `BFDProfile`: the timing of BFD sessions (RFC 5880) that speakers run beside their BGP
//! sessions, referenced by name from `BGPPeer.spec.bfdProfile`. Field names and ranges follow
//! MetalLB's BFDProfile (echo mode is not offered). Pure data: no I/O.

use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Default and range of `receiveInterval` and `transmitInterval`, in milliseconds.
pub const DEFAULT_INTERVAL_MS: u32 = 300;
pub const MIN_INTERVAL_MS: u32 = 10;
pub const MAX_INTERVAL_MS: u32 = 60_000;
/// Default and range of `detectMultiplier`.
pub const DEFAULT_DETECT_MULTIPLIER: u32 = 3;
pub const MIN_DETECT_MULTIPLIER: u32 = 2;
pub const MAX_DETECT_MULTIPLIER: u32 = 255;
/// Default and range of `minimumTtl` (multihop sessions only).
pub const DEFAULT_MINIMUM_TTL: u32 = 254;
pub const MIN_MINIMUM_TTL: u32 = 1;
pub const MAX_MINIMUM_TTL: u32 = 254;
/// Defaults and ranges of the damping fields, in milliseconds.
pub const DEFAULT_DAMPING_INITIAL_WAIT_MS: u32 = 2_000;
pub const DEFAULT_DAMPING_MAXIMUM_WAIT_MS: u32 = 60_000;
pub const DEFAULT_DAMPING_STABLE_TIME_MS: u32 = 60_000;
pub const MAX_DAMPING_MS: u32 = 3_600_000;
pub const MIN_DAMPING_STABLE_TIME_MS: u32 = 1_000;

/// Timing of the BFD sessions of the BGPPeers that name this profile.
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BFDProfile",
    namespaced,
    derive = "PartialEq",
    shortname = "bfdp",
    category = "herald",
    doc = "BFDProfile sets the timing of the BFD sessions (RFC 5880) that speakers run with the BGPPeers naming it, so that a dead link or node takes the BGP session down in a fraction of a second instead of a hold time.",
    printcolumn(
        name = "Receive",
        type_ = "integer",
        json_path = ".spec.receiveInterval"
    ),
    printcolumn(
        name = "Transmit",
        type_ = "integer",
        json_path = ".spec.transmitInterval"
    ),
    printcolumn(
        name = "Multiplier",
        type_ = "integer",
        json_path = ".spec.detectMultiplier"
    ),
    printcolumn(
        name = "Passive",
        type_ = "boolean",
        json_path = ".spec.passiveMode",
        priority = 1
    ),
    printcolumn(
        name = "Strict",
        type_ = "boolean",
        json_path = ".spec.strictMode",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = schema::bfd_profile_spec_rules()))]
pub struct BFDProfileSpec {
    /// Shortest interval, in milliseconds, between received control packets that this side
    /// can handle (bfd.RequiredMinRxInterval), 10..60000. Unset: 300. The peer sends no
    /// faster than this; with the peer's detect multiplier it sets how soon a silent peer is
    /// declared down here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_interval")]
    pub receive_interval: Option<u32>,

    /// Interval, in milliseconds, at which this side wants to send control packets
    /// (bfd.DesiredMinTxInterval), 10..60000. Unset: 300. The interval used is the larger of
    /// this and the peer's receive interval; while the session is not up, packets go out once
    /// a second (RFC 5880 §6.8.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_interval")]
    pub transmit_interval: Option<u32>,

    /// How many packets in a row may be lost before the peer declares the session down
    /// (bfd.DetectMult), 2..255. Unset: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_detect_multiplier")]
    pub detect_multiplier: Option<u32>,

    /// Wait for the peer to speak first instead of sending control packets at once (the
    /// passive role of RFC 5880 §6.1).
    #[serde(default)]
    pub passive_mode: bool,

    /// Multihop sessions (`ebgpMultiHop` peers) only: the smallest TTL / hop limit accepted on
    /// incoming packets, 1..254 (RFC 5883 §5). Unset: 254, i.e. at most one router between.
    /// Single-hop sessions always require 255 (RFC 5881 §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_minimum_ttl")]
    pub minimum_ttl: Option<u32>,

    /// Keep the BGP session down while its BFD session is not Up: BGP is not brought up
    /// before BFD is (RFC 5882 §10.2), and after a BFD failure it waits for BFD to come back
    /// (and for damping to release it) instead of reconnecting over a path BFD calls dead.
    /// FRR calls this `bfd strict`. Off: BGP runs whatever BFD says, and only a BFD Up → Down
    /// tears it down. A remote AdminDown never holds BGP (RFC 5882 §3.2).
    #[serde(default)]
    pub strict_mode: bool,

    /// Damping of BFD flaps before they reach BGP: after the second Up → Down within
    /// `dampingStableTime`, the next Up is passed on only after this many milliseconds,
    /// doubling with each further flap up to `dampingMaximumWait`. Down always passes at once.
    /// 0..3600000; 0 turns damping off. Unset: 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_damping_wait")]
    pub damping_initial_wait: Option<u32>,

    /// Longest hold-back of an Up by damping, in milliseconds, 0..3600000, not below
    /// `dampingInitialWait`. Unset: 60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_damping_wait")]
    pub damping_maximum_wait: Option<u32>,

    /// How long, in milliseconds, a session must stay Up for its past flaps to be forgotten,
    /// 1000..3600000. Unset: 60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bfd_damping_stable_time")]
    pub damping_stable_time: Option<u32>,
}

impl BFDProfileSpec {
    /// bfd.RequiredMinRxInterval: `receiveInterval` or 300 ms.
    pub fn receive_interval(&self) -> Duration {
        interval(self.receive_interval)
    }

    /// bfd.DesiredMinTxInterval: `transmitInterval` or 300 ms.
    pub fn transmit_interval(&self) -> Duration {
        interval(self.transmit_interval)
    }

    /// bfd.DetectMult: `detectMultiplier` or 3.
    pub fn detect_multiplier(&self) -> u8 {
        let value = self
            .detect_multiplier
            .unwrap_or(DEFAULT_DETECT_MULTIPLIER)
            .clamp(MIN_DETECT_MULTIPLIER, MAX_DETECT_MULTIPLIER);
        u8::try_from(value).unwrap_or(u8::MAX)
    }

    /// Smallest TTL accepted on multihop sessions: `minimumTtl` or 254.
    pub fn minimum_ttl(&self) -> u8 {
        let value = self
            .minimum_ttl
            .unwrap_or(DEFAULT_MINIMUM_TTL)
            .clamp(MIN_MINIMUM_TTL, MAX_MINIMUM_TTL);
        u8::try_from(value).unwrap_or(u8::MAX)
    }

    /// `dampingInitialWait` or 2 s (0: no damping).
    pub fn damping_initial_wait(&self) -> Duration {
        millis_in(
            self.damping_initial_wait,
            DEFAULT_DAMPING_INITIAL_WAIT_MS,
            0,
            MAX_DAMPING_MS,
        )
    }

    /// `dampingMaximumWait` or 60 s, never below the initial wait.
    pub fn damping_maximum_wait(&self) -> Duration {
        millis_in(
            self.damping_maximum_wait,
            DEFAULT_DAMPING_MAXIMUM_WAIT_MS,
            0,
            MAX_DAMPING_MS,
        )
        .max(self.damping_initial_wait())
    }

    /// `dampingStableTime` or 60 s.
    pub fn damping_stable_time(&self) -> Duration {
        millis_in(
            self.damping_stable_time,
            DEFAULT_DAMPING_STABLE_TIME_MS,
            MIN_DAMPING_STABLE_TIME_MS,
            MAX_DAMPING_MS,
        )
    }
}

/// A millisecond field with its default, clamped to its range.
fn millis_in(ms: Option<u32>, default: u32, min: u32, max: u32) -> Duration {
    Duration::from_millis(ms.unwrap_or(default).clamp(min, max).into())
}

/// An interval field, clamped to its range (the apiserver enforces the range; the clamp
/// protects against objects written before a CRD update).
fn interval(ms: Option<u32>) -> Duration {
    millis_in(ms, DEFAULT_INTERVAL_MS, MIN_INTERVAL_MS, MAX_INTERVAL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_profile_means_300_ms_times_3_active() {
        let spec = BFDProfileSpec::default();
        assert_eq!(spec.receive_interval(), Duration::from_millis(300));
        assert_eq!(spec.transmit_interval(), Duration::from_millis(300));
        assert_eq!(spec.detect_multiplier(), 3);
        assert_eq!(spec.minimum_ttl(), 254);
        assert!(!spec.passive_mode);
        assert!(!spec.strict_mode);
        assert_eq!(spec.damping_initial_wait(), Duration::from_secs(2));
        assert_eq!(spec.damping_maximum_wait(), Duration::from_secs(60));
        assert_eq!(spec.damping_stable_time(), Duration::from_secs(60));
    }

    #[test]
    fn a_maximum_wait_below_the_initial_one_is_raised_to_it() {
        let spec = BFDProfileSpec {
            damping_initial_wait: Some(5_000),
            damping_maximum_wait: Some(1_000),
            ..BFDProfileSpec::default()
        };
        assert_eq!(spec.damping_maximum_wait(), Duration::from_secs(5));
        let off = BFDProfileSpec {
            damping_initial_wait: Some(0),
            ..BFDProfileSpec::default()
        };
        assert_eq!(off.damping_initial_wait(), Duration::ZERO);
    }

    #[test]
    fn values_outside_the_ranges_are_clamped() {
        let spec = BFDProfileSpec {
            receive_interval: Some(1),
            transmit_interval: Some(1_000_000),
            detect_multiplier: Some(1000),
            passive_mode: true,
            minimum_ttl: Some(0),
            damping_stable_time: Some(0),
            ..BFDProfileSpec::default()
        };
        assert_eq!(spec.receive_interval(), Duration::from_millis(10));
        assert_eq!(spec.transmit_interval(), Duration::from_millis(60_000));
        assert_eq!(spec.detect_multiplier(), 255);
        assert_eq!(spec.minimum_ttl(), 1);
        assert_eq!(spec.damping_stable_time(), Duration::from_secs(1));
    }
}

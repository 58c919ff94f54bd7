//! Membership tuning knobs, their defaults, and how they map onto `foca::Config`.
//!
//! Pure data and arithmetic; no I/O. The defaults aim at the layer-2 failover goal of issue 5
//! (owner death → traffic through the new owner in under one second): on a LAN a dead speaker
//! is declared down by every survivor within roughly 300–600 ms in a small cluster, while a
//! node that is merely slow gets a suspicion window in which it can refute (SWIM §4.2,
//! Lifeguard §IV-B), and a node that keeps coming and going is held out of the live set for a
//! while after each return (`rejoin_hold_down`).
//!
//! Expected detection time of a crashed member, by construction:
//! `wait for a probe of it (≈ probe_period / survivors … probe_period)` + `probe_period`
//! (the failed probe cycle, direct then indirect) + `suspicion timeout` + `gossip_interval`
//! (dissemination of the Down verdict).

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use super::MembershipError;

/// Smallest datagram budget accepted: room for the frame header, the HMAC tag, and a foca
/// header carrying two identities with long node names.
pub const MIN_DATAGRAM_SIZE: usize = 512;
/// Largest datagram budget accepted: the IPv4 UDP payload limit (RFC 768 length field minus
/// the IPv4 and UDP headers). Anything near it fragments; keep the default under the MTU.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;

/// Every knob of the membership protocol. All durations are on the caller's clock (virtual
/// in tests). Start from [`MembershipConfig::default`] (LAN, sub-second detection) and change
/// what you need; [`MembershipConfig::validate`] says what does not fit together.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipConfig {
    /// How often this node probes one member (round robin over a shuffled list, SWIM §4.3).
    /// A member that answered neither directly nor indirectly by the end of the period becomes
    /// Suspect. Default 100 ms.
    pub probe_period: Duration,
    /// How long to wait for a direct Ack before asking `indirect_probes` other members to
    /// probe on our behalf (SWIM §3.1 ping-req). Must be below `probe_period`; the rest of
    /// the period is the indirect window. Default 50 ms: a LAN round trip is well under 1 ms,
    /// the margin absorbs scheduling delays on a busy node.
    pub probe_timeout: Duration,
    /// How many members relay an indirect probe (SWIM §3.1, `k`). Default 3.
    pub indirect_probes: NonZeroUsize,
    /// Suspicion timeout = `suspicion_multiplier × max(1, log10(cluster size)) ×
    /// probe_period`, clamped to `[suspicion_min, suspicion_max]` (the scaling memberlist
    /// uses; Lifeguard §IV-B: larger clusters need longer to disseminate a refutation).
    /// Recomputed whenever the cluster size changes. Default 3: 300 ms up to 10 members,
    /// 510 ms at 50, 900 ms at 1000.
    pub suspicion_multiplier: u32,
    /// Lower bound of the suspicion timeout. Default 200 ms.
    pub suspicion_min: Duration,
    /// Upper bound of the suspicion timeout. Default 3 s.
    pub suspicion_max: Duration,
    /// How often pending updates (joins, suspicions, refutations, deaths) are pushed to
    /// `gossip_fanout` random members besides riding on probes. Only sends when something is
    /// pending. Default 50 ms.
    pub gossip_interval: Duration,
    /// Members per periodic gossip round. Default 3.
    pub gossip_fanout: NonZeroUsize,
    /// How many times each update is piggybacked before it is dropped from the queue (SWIM
    /// §4.1, `λ log n`). Default 8, enough for clusters of a few hundred nodes.
    pub gossip_retransmissions: NonZeroU8,
    /// How often a random member is asked for its member list (foca's periodic announce),
    /// so a node that missed a join learns of it. Default 5 s.
    pub sync_interval: Duration,
    /// How often members that are believed Down are contacted, so a healed partition
    /// reconnects without outside help. Default 2 s.
    pub down_member_retry_interval: Duration,
    /// How often seed addresses that are not live members are announced to (join, and
    /// rejoin after a partition). Default 2 s.
    pub seed_retry_interval: Duration,
    /// A node that was declared Down must stay continuously up this long before it is
    /// live again. Bounds oscillation of a flapping node to one down/up pair per
    /// `rejoin_hold_down` + outage, and keeps a returning node from taking addresses back
    /// at once. Nodes never seen down join at once. Zero disables. Default 3 s.
    pub rejoin_hold_down: Duration,
    /// How long a Down identity is remembered (a forgotten identity could be resurrected by
    /// stale gossip). Default 24 h.
    pub forget_down_after: Duration,
    /// Largest datagram sent or accepted, frame header and HMAC tag included. Default 1400
    /// bytes, under a 1500-byte Ethernet MTU with room for IPv6 and UDP headers (RFC 8085
    /// §3.2).
    pub max_datagram_size: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            indirect_probes: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            suspicion_multiplier: 3,
            suspicion_min: Duration::from_millis(200),
            suspicion_max: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(50),
            gossip_fanout: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            gossip_retransmissions: NonZeroU8::new(8).unwrap_or(NonZeroU8::MIN),
            sync_interval: Duration::from_secs(5),
            down_member_retry_interval: Duration::from_secs(2),
            seed_retry_interval: Duration::from_secs(2),
            rejoin_hold_down: Duration::from_secs(3),
            forget_down_after: Duration::from_secs(24 * 60 * 60),
            max_datagram_size: 1400,
        }
    }
}

impl MembershipConfig {
    /// hashicorp/memberlist's `DefaultLANConfig` timings in these knobs (probe every 1 s,
    /// 500 ms probe timeout, suspicion ×4, gossip every 200 ms) — what MetalLB ships. The
    /// reference the benchmarks measure Herald's defaults against.
    pub fn memberlist_lan() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            suspicion_multiplier: 4,
            suspicion_min: Duration::from_millis(1),
            suspicion_max: Duration::from_secs(60),
            gossip_interval: Duration::from_millis(200),
            ..Self::default()
        }
    }

    /// Checks that the knobs fit together; every constructor of the protocol calls this.
    pub fn validate(&self) -> Result<(), MembershipError> {
        let invalid = |reason: &str| Err(MembershipError::InvalidConfig(reason.to_owned()));
        if self.probe_period.is_zero() || self.probe_timeout.is_zero() {
            return invalid("probe_period and probe_timeout must be above zero");
        }
        if self.probe_timeout >= self.probe_period {
            return invalid("probe_timeout must be below probe_period");
        }
        if self.suspicion_multiplier == 0 || self.suspicion_min.is_zero() {
            return invalid("suspicion_multiplier and suspicion_min must be above zero");
        }
        if self.suspicion_min > self.suspicion_max {
            return invalid("suspicion_min must not exceed suspicion_max");
        }
        if self.gossip_interval.is_zero()
            || self.sync_interval.is_zero()
            || self.down_member_retry_interval.is_zero()
            || self.seed_retry_interval.is_zero()
            || self.forget_down_after.is_zero()
        {
            return invalid("periodic intervals must be above zero");
        }
        if !(MIN_DATAGRAM_SIZE..=MAX_DATAGRAM_SIZE).contains(&self.max_datagram_size) {
            return invalid("max_datagram_size must be within 512..=65507 bytes");
        }
        Ok(())
    }

    /// The suspicion timeout for a cluster of `cluster_size` members (this node included).
    pub fn suspicion_timeout(&self, cluster_size: usize) -> Duration {
        let size = cluster_size.max(1) as f64;
        let scale = size.log10().max(1.0) * f64::from(self.suspicion_multiplier);
        let timeout = self.probe_period.mul_f64(scale);
        timeout.clamp(self.suspicion_min, self.suspicion_max)
    }

    /// The foca configuration for a cluster of `cluster_size` members, with `foca_packet_size`
    /// bytes left for foca once the frame header and tag are taken off.
    pub(crate) fn to_foca(&self, cluster_size: usize, foca_packet_size: usize) -> foca::Config {
        let mut config = foca::Config::simple();
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_timeout;
        config.num_indirect_probes = self.indirect_probes;
        config.max_transmissions = self.gossip_retransmissions;
        config.suspect_to_down_after = self.suspicion_timeout(cluster_size);
        config.remove_down_after = Some(self.forget_down_after);
        config.max_packet_size = NonZeroUsize::new(foca_packet_size).unwrap_or(NonZeroUsize::MIN);
        // Tell a member we consider Down that its messages are being ignored, so it renews
        // its identity and rejoins instead of talking into the void.
        config.notify_down_members = true;
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.sync_interval,
            num_members: NonZeroUsize::MIN,
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.down_member_retry_interval,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: self.gossip_fanout,
        });
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert!(MembershipConfig::default().validate().is_ok());
        assert!(MembershipConfig::memberlist_lan().validate().is_ok());
    }

    #[test]
    fn suspicion_timeout_is_flat_for_small_clusters_and_grows_with_log_of_size() {
        let config = MembershipConfig::default();
        assert_eq!(config.suspicion_timeout(1), Duration::from_millis(300));
        assert_eq!(config.suspicion_timeout(3), Duration::from_millis(300));
        assert_eq!(config.suspicion_timeout(10), Duration::from_millis(300));
        let at_fifty = config.suspicion_timeout(50);
        assert!(at_fifty > Duration::from_millis(505) && at_fifty < Duration::from_millis(515));
        assert_eq!(
            config.suspicion_timeout(1_000_000_000_000),
            config.suspicion_max
        );
    }

    #[test]
    fn suspicion_timeout_never_drops_below_the_minimum() {
        let config = MembershipConfig {
            probe_period: Duration::from_millis(10),
            probe_timeout: Duration::from_millis(5),
            suspicion_multiplier: 1,
            ..MembershipConfig::default()
        };
        assert_eq!(config.suspicion_timeout(3), config.suspicion_min);
    }

    #[test]
    fn a_probe_timeout_not_below_the_period_is_rejected() {
        let config = MembershipConfig {
            probe_timeout: Duration::from_millis(100),
            ..MembershipConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_datagram_budget_outside_udp_limits_is_rejected() {
        for size in [100, 70_000] {
            let config = MembershipConfig {
                max_datagram_size: size,
                ..MembershipConfig::default()
            };
            assert!(config.validate().is_err(), "size {size} accepted");
        }
    }
}

//! What to tell people about address conflicts, and how often. Pure: time is a parameter.
//!
//! An announcer reports every frame in which another MAC claims one of our addresses; a
//! misbehaving host can send many per second. [`ConflictTracker`] turns that stream into at
//! most one Kubernetes Event per (address, other MAC) per [`EVENT_INTERVAL`], a condition on
//! the Service that goes `True` on the first report and back to `False` once no report has
//! come for [`QUIET_BEFORE_CLEAR`], the address is no longer ours, or — after a conflict
//! found while probing or giving way — this node announces the address after all (a later
//! probe found it free), and per-kind counts
//! for metrics. The log line is written by the announcer's thread itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::l2::frames::MacAddr;

/// At most one Event per address and claimant in this interval.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(60);
/// A conflict condition is cleared after this long without a new report.
pub const QUIET_BEFORE_CLEAR: Duration = Duration::from_secs(60);

/// Condition type set on a Service while another MAC claims one of its addresses.
pub const CONDITION_L2_CONFLICT: &str = "herald.dev/L2Conflict";

/// What this node did about a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictStance {
    /// We were probing for the address: we do not take it, and probe again later.
    Probing,
    /// We announce the address: we keep it and defend it (RFC 5227 §2.4 (b)).
    Defending,
    /// We announced the address although the record names another node: we gave it up
    /// (RFC 5227 §2.4 (a)) and probe again later.
    GivingWay,
}

impl ConflictStance {
    /// The `phase` label of the conflicts metric.
    pub fn label(self) -> &'static str {
        match self {
            ConflictStance::Probing => "probing",
            ConflictStance::Defending => "owning",
            ConflictStance::GivingWay => "giving_way",
        }
    }
}

/// One report from an announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictReport {
    pub address: IpAddr,
    pub other_mac: MacAddr,
    pub stance: ConflictStance,
}

/// What to publish after a report or an expiry check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictNotice {
    /// Publish an Event (and set the condition `True`) for this address.
    Raise {
        address: IpAddr,
        other_mac: MacAddr,
        stance: ConflictStance,
        /// Reports for this address and claimant held back since the last Event.
        suppressed: u64,
    },
    /// Set the condition back to `False` for this address.
    Clear { address: IpAddr },
}

#[derive(Debug, Clone)]
struct Claim {
    last_event: Instant,
    suppressed: u64,
}

#[derive(Debug, Clone)]
struct Active {
    last_report: Instant,
    /// What this node did at the last report.
    last_stance: ConflictStance,
    claims: BTreeMap<MacAddr, Claim>,
}

/// Conflicts per address, for Events and conditions.
#[derive(Debug, Clone, Default)]
pub struct ConflictTracker {
    active: BTreeMap<IpAddr, Active>,
}

impl ConflictTracker {
    /// Records a report; returns a notice when an Event is due.
    pub fn report(&mut self, now: Instant, report: ConflictReport) -> Option<ConflictNotice> {
        let active = self.active.entry(report.address).or_insert(Active {
            last_report: now,
            last_stance: report.stance,
            claims: BTreeMap::new(),
        });
        active.last_report = now;
        active.last_stance = report.stance;
        match active.claims.get_mut(&report.other_mac) {
            Some(claim) if now.saturating_duration_since(claim.last_event) < EVENT_INTERVAL => {
                claim.suppressed += 1;
                None
            }
            Some(claim) => {
                let suppressed = std::mem::take(&mut claim.suppressed);
                claim.last_event = now;
                Some(Self::raise(report, suppressed))
            }
            None => {
                active.claims.insert(
                    report.other_mac,
                    Claim {
                        last_event: now,
                        suppressed: 0,
                    },
                );
                Some(Self::raise(report, 0))
            }
        }
    }

    fn raise(report: ConflictReport, suppressed: u64) -> ConflictNotice {
        ConflictNotice::Raise {
            address: report.address,
            other_mac: report.other_mac,
            stance: report.stance,
            suppressed,
        }
    }

    /// Clears conflicts that have been quiet long enough, whose address this node is no
    /// longer elected for (`owned`), or that kept this node from announcing (probing, giving
    /// way) while it now announces the address (`announced`: a later probe found it free).
    pub fn expire(
        &mut self,
        now: Instant,
        owned: &BTreeSet<IpAddr>,
        announced: &BTreeSet<IpAddr>,
    ) -> Vec<ConflictNotice> {
        let cleared: Vec<IpAddr> = self
            .active
            .iter()
            .filter(|(address, active)| {
                let kept_out = active.last_stance != ConflictStance::Defending;
                !owned.contains(address)
                    || (kept_out && announced.contains(address))
                    || now.saturating_duration_since(active.last_report) >= QUIET_BEFORE_CLEAR
            })
            .map(|(address, _)| *address)
            .collect();
        for address in &cleared {
            self.active.remove(address);
        }
        cleared
            .into_iter()
            .map(|address| ConflictNotice::Clear { address })
            .collect()
    }

    /// Addresses with a conflict reported and not yet cleared.
    pub fn active(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.active.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 130));
    const INTRUDER: MacAddr = MacAddr([2, 0, 0x5e, 0, 0x53, 0x66]);
    const OTHER: MacAddr = MacAddr([2, 0, 0x5e, 0, 0x53, 0x67]);

    fn claim(mac: MacAddr) -> ConflictReport {
        ConflictReport {
            address: VIP,
            other_mac: mac,
            stance: ConflictStance::Defending,
        }
    }

    #[test]
    fn a_storm_of_reports_gives_one_event_per_claimant_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut tracker = ConflictTracker::default();
        assert!(matches!(
            tracker.report(t0, claim(INTRUDER)),
            Some(ConflictNotice::Raise { suppressed: 0, .. })
        ));
        for i in 1..=100 {
            assert_eq!(
                tracker.report(t0 + Duration::from_millis(i * 10), claim(INTRUDER)),
                None
            );
        }
        // A second claimant is news.
        assert!(
            tracker
                .report(t0 + Duration::from_secs(2), claim(OTHER))
                .is_some()
        );
        assert_eq!(
            tracker.report(t0 + EVENT_INTERVAL, claim(INTRUDER)),
            Some(ConflictNotice::Raise {
                address: VIP,
                other_mac: INTRUDER,
                stance: ConflictStance::Defending,
                suppressed: 100,
            })
        );
    }

    #[test]
    fn the_condition_clears_after_a_quiet_minute_or_when_the_address_is_released() {
        let t0 = Instant::now();
        let owned: BTreeSet<IpAddr> = [VIP].into();
        let mut tracker = ConflictTracker::default();
        tracker.report(t0, claim(INTRUDER));
        // Defending: announcing the address says nothing about the claimant being gone.
        assert!(
            tracker
                .expire(
                    t0 + QUIET_BEFORE_CLEAR - Duration::from_secs(1),
                    &owned,
                    &owned
                )
                .is_empty()
        );
        assert_eq!(
            tracker.expire(t0 + QUIET_BEFORE_CLEAR, &owned, &owned),
            vec![ConflictNotice::Clear { address: VIP }]
        );
        assert_eq!(tracker.active().count(), 0);
        tracker.report(t0, claim(INTRUDER));
        assert_eq!(
            tracker.expire(t0, &BTreeSet::new(), &BTreeSet::new()),
            vec![ConflictNotice::Clear { address: VIP }]
        );
    }

    #[test]
    fn a_conflict_found_while_probing_clears_once_a_later_probe_succeeds() {
        let t0 = Instant::now();
        let owned: BTreeSet<IpAddr> = [VIP].into();
        let mut tracker = ConflictTracker::default();
        let in_use = ConflictReport {
            stance: ConflictStance::Probing,
            ..claim(INTRUDER)
        };
        tracker.report(t0, in_use);
        // Still probing (not announced): the condition stays.
        assert!(tracker.expire(t0, &owned, &BTreeSet::new()).is_empty());
        // The retry found the address free and it is announced now.
        assert_eq!(
            tracker.expire(t0 + Duration::from_secs(5), &owned, &owned),
            vec![ConflictNotice::Clear { address: VIP }]
        );
    }
}

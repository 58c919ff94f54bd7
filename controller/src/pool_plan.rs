//! Pool status and the `herald.dev/pool-in-use` finalizer as a pure function: an
//! `IPAddressPool` snapshot and the allocator in; the status to write (assigned/available per
//! family, conditions Ready / Overlapping / InvalidAddresses / InUse, and NodeAddresses while
//! the range contains nodes' own addresses, observedGeneration), the finalizer change and
//! Events out.
//!
//! The finalizer is present exactly while Services hold addresses booked against the pool, so
//! a pool nobody uses can always be deleted, and one in use waits (its status says for whom).
//! No I/O; the clock is a parameter.

use herald_crds::address::Family;
use herald_crds::api::IPAddressPool;
use herald_crds::api::IPAddressPoolStatus;
use herald_crds::api::pool::{
    CONDITION_IN_USE, CONDITION_INVALID_ADDRESSES, CONDITION_OVERLAPPING, CONDITION_READY,
};
use herald_crds::names;
use k8s_openapi::jiff::Timestamp;

use crate::allocator::{Allocator, FamilyStats, ServiceKey};
use crate::conditions::{self, DesiredCondition};
use crate::convert::ConvertedPool;
use crate::service_plan::PlannedEvent;

/// Pool condition, present only while it is true: the pool's range contains nodes' own
/// addresses (reserved: never given to a Service).
pub const CONDITION_NODE_ADDRESSES: &str = "NodeAddresses";
/// How many node addresses a condition message lists before "and N more".
const LISTED_NODE_ADDRESSES: usize = 10;

/// How many Service names a condition message lists before "and N more".
const LISTED_SERVICES: usize = 10;

/// What to do with the pool's finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerChange {
    /// Add `herald.dev/pool-in-use`.
    Add,
    /// Remove it.
    Remove,
}

/// Everything one pool pass decided for one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
    /// The pool's name.
    pub name: String,
    /// The status to write, when it differs from the snapshot.
    pub status: Option<IPAddressPoolStatus>,
    /// The finalizer change, if any.
    pub finalizer: Option<FinalizerChange>,
    /// Events about the pool (rate-limited at the edge).
    pub events: Vec<PlannedEvent>,
    /// The counts, for metrics.
    pub ipv4: FamilyStats,
    /// The counts, for metrics.
    pub ipv6: FamilyStats,
}

/// Whether the pool carries Herald's finalizer.
pub fn has_finalizer(pool: &IPAddressPool) -> bool {
    pool.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == names::FINALIZER_POOL_IN_USE)
}

/// Decides one pool's status and finalizer from the allocator's bookings.
pub fn plan_pool(
    pool: &IPAddressPool,
    converted: &ConvertedPool,
    allocator: &Allocator,
    now: Timestamp,
) -> PoolPlan {
    let name = converted.spec.name.clone();
    let stats = allocator.pool_stats(&name).unwrap_or_default();
    let users = allocator.services_using_pool(&name);
    let deleting = pool.metadata.deletion_timestamp.is_some();
    let generation = pool.metadata.generation;
    let observed = pool.status.clone().unwrap_or_default();
    let mut events = Vec::new();

    let invalid: Vec<String> = converted.errors.iter().map(ToString::to_string).collect();
    let invalid_condition = if invalid.is_empty() {
        DesiredCondition::new(
            CONDITION_INVALID_ADDRESSES,
            false,
            "AllValid",
            "every entry of spec.addresses is valid",
        )
    } else {
        let message = format!(
            "ignored (the valid entries still serve): {}",
            invalid.join("; ")
        );
        events.push(PlannedEvent::warning("InvalidAddresses", message.clone()));
        DesiredCondition::new(CONDITION_INVALID_ADDRESSES, true, "InvalidEntries", message)
    };

    let overlaps: Vec<String> = allocator
        .overlaps()
        .iter()
        .filter(|o| o.involves(&name))
        .map(|o| {
            if o.within_one_pool() {
                format!(
                    "entries {} and {} of this pool overlap at {}",
                    o.first.index, o.second.index, o.common
                )
            } else {
                let (mine, other) = if o.first.pool == name {
                    (&o.first, &o.second)
                } else {
                    (&o.second, &o.first)
                };
                format!(
                    "entry {} overlaps pool {:?} (entry {}) at {}",
                    mine.index, other.pool, other.index, o.common
                )
            }
        })
        .collect();
    let overlap_condition = if overlaps.is_empty() {
        DesiredCondition::new(
            CONDITION_OVERLAPPING,
            false,
            "NoOverlap",
            "no address is in another pool",
        )
    } else {
        let message = format!(
            "{} (an address in use is never given twice)",
            overlaps.join("; ")
        );
        events.push(PlannedEvent::warning("Overlapping", message.clone()));
        DesiredCondition::new(CONDITION_OVERLAPPING, true, "OverlapsPool", message)
    };

    let in_use_condition = if users.is_empty() {
        DesiredCondition::new(
            CONDITION_IN_USE,
            false,
            "NotInUse",
            "no Service holds an address of this pool",
        )
    } else if deleting {
        let message = format!(
            "deletion waits until {} release their addresses (finalizer {})",
            list_services(&users),
            names::FINALIZER_POOL_IN_USE
        );
        events.push(PlannedEvent::warning("DeletionBlocked", message.clone()));
        DesiredCondition::new(CONDITION_IN_USE, true, "DeletionWaitsForServices", message)
    } else {
        DesiredCondition::new(
            CONDITION_IN_USE,
            true,
            "AddressesInUse",
            format!("held by {}", list_services(&users)),
        )
    };

    let ready_condition = if deleting {
        DesiredCondition::new(
            CONDITION_READY,
            false,
            "Deleting",
            "the pool is being deleted and gives out no new address",
        )
    } else if !invalid.is_empty() {
        DesiredCondition::new(
            CONDITION_READY,
            false,
            "InvalidAddresses",
            "some entries of spec.addresses are invalid; see InvalidAddresses",
        )
    } else if converted.spec.addresses.is_empty() {
        DesiredCondition::new(CONDITION_READY, false, "NoAddresses", "the pool is empty")
    } else {
        DesiredCondition::new(
            CONDITION_READY,
            true,
            "Serving",
            format!(
                "{} of {} IPv4 and {} of {} IPv6 addresses free",
                stats.ipv4.available, stats.ipv4.size, stats.ipv6.available, stats.ipv6.size
            ),
        )
    };

    let node_addresses = allocator.node_addresses_in_pool(&name);

    let mut conds = observed.conditions.clone();
    for desired in [
        &ready_condition,
        &overlap_condition,
        &invalid_condition,
        &in_use_condition,
    ] {
        conds = conditions::upsert(&conds, desired, generation, now);
    }
    if node_addresses.is_empty() {
        conds = conditions::remove(&conds, CONDITION_NODE_ADDRESSES);
    } else {
        let message = node_addresses_message(&node_addresses);
        events.push(PlannedEvent::warning(
            "PoolContainsNodeAddresses",
            message.clone(),
        ));
        let desired = DesiredCondition::new(
            CONDITION_NODE_ADDRESSES,
            true,
            "ContainsNodeAddresses",
            message,
        );
        conds = conditions::upsert(&conds, &desired, generation, now);
    }
    let mut status = IPAddressPoolStatus {
        assigned_ipv4: saturating_i64(stats.family(Family::V4).assigned),
        assigned_ipv6: saturating_i64(stats.family(Family::V6).assigned),
        available_ipv4: saturating_i64(stats.family(Family::V4).available),
        conditions: conds,
        observed_generation: generation,
        ..IPAddressPoolStatus::default()
    };
    status.set_available_ipv6_count(stats.family(Family::V6).available);

    let finalizer = match (users.is_empty(), has_finalizer(pool)) {
        (false, false) => Some(FinalizerChange::Add),
        (true, true) => Some(FinalizerChange::Remove),
        _ => None,
    };
    PoolPlan {
        name,
        status: (pool.status.as_ref() != Some(&status)).then_some(status),
        finalizer,
        events,
        ipv4: stats.ipv4,
        ipv6: stats.ipv6,
    }
}

/// `192.0.2.11 (node a), 192.0.2.12 (node b); never given to a Service ...`.
fn node_addresses_message(found: &[(std::net::IpAddr, Vec<String>)]) -> String {
    let shown: Vec<String> = found
        .iter()
        .take(LISTED_NODE_ADDRESSES)
        .map(|(address, nodes)| format!("{address} (node {})", nodes.join(", ")))
        .collect();
    let more = found.len().saturating_sub(LISTED_NODE_ADDRESSES);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "the pool contains node addresses {}{more}: they are reserved and never given to a Service (speakers do not announce a node's own address)",
        shown.join(", ")
    )
}

fn saturating_i64(value: u128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn list_services(users: &[ServiceKey]) -> String {
    let shown: Vec<String> = users
        .iter()
        .take(LISTED_SERVICES)
        .map(ToString::to_string)
        .collect();
    let noun = if users.len() == 1 {
        "Service"
    } else {
        "Services"
    };
    let more = users.len().saturating_sub(LISTED_SERVICES);
    if more > 0 {
        format!(
            "{} {noun} ({} and {more} more)",
            users.len(),
            shown.join(", ")
        )
    } else {
        format!("{} {noun} ({})", users.len(), shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use herald_crds::api::IPAddressPoolSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::allocator::{PoolSpec, ServiceRequest};
    use crate::convert::pool_spec;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn api_pool(name: &str, addresses: &[&str]) -> IPAddressPool {
        let mut pool = IPAddressPool::new(
            name,
            IPAddressPoolSpec {
                addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                ..IPAddressPoolSpec::default()
            },
        );
        pool.metadata.generation = Some(2);
        pool
    }

    fn allocator_for(pools: &[&IPAddressPool]) -> Allocator {
        Allocator::new(
            pools
                .iter()
                .map(|p| pool_spec(p).spec)
                .collect::<Vec<PoolSpec>>(),
        )
    }

    fn condition<'a>(
        plan: &'a PoolPlan,
        type_: &str,
    ) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        plan.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }

    #[test]
    fn a_pool_containing_node_addresses_names_them_in_a_condition_and_a_warning() {
        let pool = api_pool("lan", &["192.0.2.0/28"]);
        let mut allocator = allocator_for(&[&pool]);
        let plain = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        assert!(condition(&plain, CONDITION_NODE_ADDRESSES).is_none());
        assert!(plain.events.is_empty());
        allocator.set_node_addresses([
            ("node-1".to_owned(), "192.0.2.11".parse().expect("ip")),
            ("node-2".to_owned(), "192.0.2.12".parse().expect("ip")),
            ("node-3".to_owned(), "198.51.100.1".parse().expect("ip")),
        ]);
        let plan = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        let found = condition(&plan, CONDITION_NODE_ADDRESSES);
        assert_eq!(found.map(|c| c.status.as_str()), Some("True"));
        let message = found.map(|c| c.message.clone()).unwrap_or_default();
        assert!(message.contains("192.0.2.11 (node node-1), 192.0.2.12 (node node-2)"));
        assert!(!message.contains("198.51.100.1"));
        let reasons: Vec<&str> = plan.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["PoolContainsNodeAddresses"]);
        // Node addresses count as assigned: never available.
        assert_eq!((plan.ipv4.assigned, plan.ipv4.available), (2, 14));
        // The nodes go: the condition goes.
        allocator.set_node_addresses(Vec::new());
        let mut written = pool.clone();
        written.status = plan.status.clone();
        let after = plan_pool(&written, &pool_spec(&written), &allocator, now());
        let conditions = after.status.map(|s| s.conditions).unwrap_or_default();
        assert!(
            !conditions
                .iter()
                .any(|c| c.type_ == CONDITION_NODE_ADDRESSES)
        );
    }

    #[test]
    fn status_counts_assigned_and_available_addresses_per_family() {
        let pool = api_pool("a", &["192.0.2.128/30", "2001:db8:1::100/120"]);
        let mut allocator = allocator_for(&[&pool]);
        assert!(allocator.assign(&ServiceRequest::new("ns", "s")).is_ok());
        let plan = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        let status = plan.status.clone().unwrap_or_default();
        assert_eq!(status.assigned_ipv4, 1);
        assert_eq!(status.available_ipv4, 3);
        assert_eq!(status.assigned_ipv6, 0);
        assert_eq!(status.available_ipv6, "256");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(
            condition(&plan, CONDITION_READY).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            condition(&plan, CONDITION_IN_USE).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(plan.finalizer, Some(FinalizerChange::Add));
    }

    #[test]
    fn a_pool_nobody_uses_has_no_finalizer() {
        let mut pool = api_pool("a", &["192.0.2.128/30"]);
        pool.metadata.finalizers = Some(vec![names::FINALIZER_POOL_IN_USE.into()]);
        let allocator = allocator_for(&[&pool]);
        let plan = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        assert_eq!(plan.finalizer, Some(FinalizerChange::Remove));
        assert_eq!(
            condition(&plan, CONDITION_IN_USE).map(|c| c.reason.as_str()),
            Some("NotInUse")
        );
    }

    #[test]
    fn a_pool_deleted_while_in_use_keeps_its_finalizer_and_says_who_holds_it() {
        let mut pool = api_pool("a", &["192.0.2.128/30"]);
        pool.metadata.finalizers = Some(vec![names::FINALIZER_POOL_IN_USE.into()]);
        let mut allocator = allocator_for(&[&pool]);
        assert!(allocator.assign(&ServiceRequest::new("ns", "web")).is_ok());
        pool.metadata.deletion_timestamp = Some(Time(now()));
        let plan = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        assert_eq!(plan.finalizer, None);
        let in_use = condition(&plan, CONDITION_IN_USE);
        assert_eq!(
            in_use.map(|c| c.reason.as_str()),
            Some("DeletionWaitsForServices")
        );
        assert!(
            in_use.is_some_and(|c| c.message.contains("ns/web")),
            "{in_use:?}"
        );
        assert_eq!(
            condition(&plan, CONDITION_READY).map(|c| c.reason.as_str()),
            Some("Deleting")
        );
        assert_eq!(plan.events[0].reason, "DeletionBlocked");
        // Once the Service is gone the finalizer goes.
        allocator.release(&ServiceKey::new("ns", "web"));
        let after = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        assert_eq!(after.finalizer, Some(FinalizerChange::Remove));
    }

    #[test]
    fn overlapping_pools_are_reported_on_both() {
        let a = api_pool("a", &["192.0.2.128/25"]);
        let b = api_pool("b", &["192.0.2.200-192.0.2.210"]);
        let allocator = allocator_for(&[&a, &b]);
        for pool in [&a, &b] {
            let plan = plan_pool(pool, &pool_spec(pool), &allocator, now());
            let overlapping = condition(&plan, CONDITION_OVERLAPPING);
            assert_eq!(overlapping.map(|c| c.status.as_str()), Some("True"));
            assert!(overlapping.is_some_and(|c| c.message.contains("192.0.2.200")));
        }
    }

    #[test]
    fn invalid_entries_make_the_pool_not_ready_and_are_named() {
        let pool = api_pool("a", &["192.0.2.128/30", "192.0.2.5/24"]);
        let allocator = allocator_for(&[&pool]);
        let plan = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        let invalid = condition(&plan, CONDITION_INVALID_ADDRESSES);
        assert_eq!(invalid.map(|c| c.status.as_str()), Some("True"));
        assert!(invalid.is_some_and(|c| c.message.contains("192.0.2.5/24")));
        assert_eq!(
            condition(&plan, CONDITION_READY).map(|c| c.status.as_str()),
            Some("False")
        );
    }

    #[test]
    fn an_unchanged_pool_needs_no_status_write() {
        let mut pool = api_pool("a", &["192.0.2.128/30"]);
        let allocator = allocator_for(&[&pool]);
        let first = plan_pool(&pool, &pool_spec(&pool), &allocator, now());
        pool.status = first.status.clone();
        let later = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let second = plan_pool(&pool, &pool_spec(&pool), &allocator, later);
        assert_eq!(second.status, None);
    }

    #[test]
    fn long_lists_of_services_are_shortened() {
        let users: Vec<ServiceKey> = (0..25)
            .map(|i| ServiceKey::new("ns", format!("s{i}")))
            .collect();
        let text = list_services(&users);
        assert!(text.starts_with("25 Services (ns/s0,"), "{text}");
        assert!(text.ends_with("and 15 more)"), "{text}");
    }
}

//! Property tests: random sequences of Service creates/updates/deletes, pool changes and
//! controller restarts, checked after every step against invariants computed independently
//! of the allocator's own bookkeeping:
//!
//! - an address is held by two Services only if they may share it;
//! - an address booked against a pool lies in that pool; one booked against no pool lies in
//!   no pool;
//! - each pool's assigned/available counts match the addresses in use inside it;
//! - assigning again changes nothing;
//! - a restart (a fresh allocator rebuilt by `restore` from the current assignments) gives
//!   identical assignments and counts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_crds::address::{AddressRange, Family, is_buggy_ipv4, pool_size};
use proptest::prelude::*;

use super::*;

/// The pools a test can switch on: small, overlapping, with every flag in play.
fn pool_universe() -> Vec<PoolSpec> {
    let parse = |entries: &[&str]| -> Vec<AddressRange> {
        entries
            .iter()
            .map(|e| e.parse().expect("test range"))
            .collect()
    };
    let mut p0 = PoolSpec::new("p0", parse(&["192.0.2.0/29", "2001:db8:1::/126"]));
    p0.priority = Some(10);
    let mut p1 = PoolSpec::new(
        "p1",
        parse(&["192.0.2.4-192.0.2.11", "192.0.2.254-192.0.3.1"]),
    );
    p1.avoid_buggy_ips = true;
    let mut p2 = PoolSpec::new("p2", parse(&["198.51.100.0/30"]));
    p2.auto_assign = false;
    p2.allow_external_ips = true;
    let mut p3 = PoolSpec::new("p3", parse(&["2001:db8:2::/126", "203.0.113.0/31"]));
    p3.namespaces = vec!["ns-a".into()];
    let mut p4 = PoolSpec::new("p4", parse(&["203.0.113.1-203.0.113.3"]));
    p4.service_selectors = vec![LabelSelector::with_labels([("app", "web")])];
    p4.priority = Some(1);
    vec![p0, p1, p2, p3, p4]
}

/// Addresses a Service may request: inside pools, on pool edges, buggy, outside everything.
const REQUESTABLE: [&str; 8] = [
    "192.0.2.5",
    "192.0.2.255",
    "192.0.3.1",
    "198.51.100.2",
    "203.0.113.1",
    "2001:db8:1::2",
    "2001:db8:2::1",
    "192.0.2.200",
];

#[derive(Debug, Clone)]
struct PoolChoice {
    index: usize,
    priority: Option<i32>,
    deleting: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Apply(Box<ServiceRequest>),
    Delete(ServiceKey),
    SetPools(Vec<PoolChoice>),
    Restart,
}

fn service_key() -> impl Strategy<Value = ServiceKey> {
    (0usize..2, 0usize..6)
        .prop_map(|(ns, name)| ServiceKey::new(["ns-a", "ns-b"][ns], format!("svc-{name}")))
}

fn request() -> impl Strategy<Value = ServiceRequest> {
    (
        service_key(),
        0usize..5,
        proptest::option::weighted(0.3, 0usize..REQUESTABLE.len()),
        proptest::option::weighted(0.2, 0usize..6),
        proptest::option::weighted(0.5, 0usize..2),
        proptest::collection::btree_set(0usize..3, 0..3),
        any::<bool>(),
        0usize..2,
        any::<bool>(),
    )
        .prop_map(
            |(key, families, requested, pinned, sharing, ports, local, pods, web)| {
                let (ip_families, ip_family_policy) = match families {
                    0 => (vec![Family::V4], IpFamilyPolicy::SingleStack),
                    1 => (vec![Family::V6], IpFamilyPolicy::SingleStack),
                    2 => (
                        vec![Family::V4, Family::V6],
                        IpFamilyPolicy::PreferDualStack,
                    ),
                    3 => (
                        vec![Family::V6, Family::V4],
                        IpFamilyPolicy::RequireDualStack,
                    ),
                    _ => (vec![], IpFamilyPolicy::SingleStack),
                };
                let mut request = ServiceRequest::new(key.namespace, key.name);
                request.ip_families = ip_families;
                request.ip_family_policy = ip_family_policy;
                request.requested_addresses = requested
                    .map(|i| REQUESTABLE[i].parse().expect("address"))
                    .into_iter()
                    .collect();
                request.pool = pinned.map(|i| format!("p{i}"));
                request.sharing_key = sharing.map(|i| ["blue", "green"][i].to_owned());
                request.ports = ports
                    .into_iter()
                    .map(|p| ServicePort {
                        protocol: Protocol::Tcp,
                        port: [80, 443, 8080][p],
                    })
                    .collect();
                request.traffic_policy = if local {
                    TrafficPolicy::Local
                } else {
                    TrafficPolicy::Cluster
                };
                request.pod_selector = [("app".to_owned(), ["web", "db"][pods].to_owned())]
                    .into_iter()
                    .collect();
                if web {
                    request.service_labels = request.pod_selector.clone();
                }
                request
            },
        )
}

fn pool_choices() -> impl Strategy<Value = Vec<PoolChoice>> {
    proptest::collection::vec(
        (
            0usize..5,
            proptest::option::of(0i32..3),
            proptest::bool::weighted(0.15),
        ),
        0..5,
    )
    .prop_map(|choices| {
        choices
            .into_iter()
            .map(|(index, priority, deleting)| PoolChoice {
                index,
                priority,
                deleting,
            })
            .collect()
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => request().prop_map(|r| Step::Apply(Box::new(r))),
        2 => service_key().prop_map(Step::Delete),
        1 => pool_choices().prop_map(Step::SetPools),
        1 => Just(Step::Restart),
    ]
}

fn pools_from(choices: &[PoolChoice]) -> Vec<PoolSpec> {
    let universe = pool_universe();
    choices
        .iter()
        .map(|choice| {
            let mut spec = universe[choice.index].clone();
            if choice.priority.is_some() {
                spec.priority = choice.priority;
            }
            spec.deleting = choice.deleting;
            spec
        })
        .collect()
}

/// The pools as the allocator sees them: first of each name wins.
fn effective_pools(pools: &[PoolSpec]) -> BTreeMap<String, PoolSpec> {
    let mut effective = BTreeMap::new();
    for pool in pools {
        effective
            .entry(pool.name.clone())
            .or_insert_with(|| pool.clone());
    }
    effective
}

/// Independent membership: in an entry, and not avoided as buggy.
fn pool_contains(pool: &PoolSpec, address: IpAddr) -> bool {
    pool.addresses.iter().any(|r| r.contains(address))
        && !(pool.avoid_buggy_ips && is_buggy_ipv4(address))
}

/// Whether two Services (by the requests that made their assignments) may share.
fn may_share(a: &ServiceRequest, b: &ServiceRequest) -> bool {
    let key_a = a.sharing_key.as_deref().filter(|k| !k.is_empty());
    let key_b = b.sharing_key.as_deref().filter(|k| !k.is_empty());
    let ports_a: BTreeSet<_> = a.ports.iter().collect();
    key_a.is_some()
        && key_a == key_b
        && a.traffic_policy == b.traffic_policy
        && (a.traffic_policy == TrafficPolicy::Cluster || a.pod_selector == b.pod_selector)
        && b.ports.iter().all(|p| !ports_a.contains(p))
}

/// Everything observable about the allocator, for comparing a restart with the original.
fn snapshot(
    allocator: &Allocator,
    pools: &[PoolSpec],
) -> (Vec<(ServiceKey, Assignment)>, Vec<Option<PoolStats>>) {
    (
        allocator
            .assignments()
            .map(|(k, a)| (k.clone(), a))
            .collect(),
        pools
            .iter()
            .map(|p| allocator.pool_stats(&p.name))
            .collect(),
    )
}

fn check_invariants(
    allocator: &Allocator,
    pools: &[PoolSpec],
    made_by: &BTreeMap<ServiceKey, ServiceRequest>,
) -> Result<(), TestCaseError> {
    let effective = effective_pools(pools);
    let mut holders: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    for (key, assignment) in allocator.assignments() {
        prop_assert!(
            made_by.contains_key(key),
            "{key} holds addresses nobody asked for"
        );
        let mut families = BTreeSet::new();
        for assigned in &assignment.addresses {
            prop_assert!(
                families.insert(Family::of(assigned.address)),
                "{key} holds two addresses of one family"
            );
            match &assigned.pool {
                Some(name) => {
                    let pool = effective.get(name);
                    prop_assert!(
                        pool.is_some_and(|p| pool_contains(p, assigned.address)),
                        "{key}: {} booked against {name}, which does not contain it",
                        assigned.address
                    );
                }
                None => prop_assert!(
                    !effective
                        .values()
                        .any(|p| pool_contains(p, assigned.address)),
                    "{key}: {} booked against no pool but a pool contains it",
                    assigned.address
                ),
            }
            holders.entry(assigned.address).or_default().push(key);
        }
    }
    for (address, keys) in &holders {
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                prop_assert!(
                    may_share(&made_by[*a], &made_by[*b]),
                    "{address} held by {a} and {b}, which may not share"
                );
            }
        }
    }
    for pool in effective.values() {
        let stats = allocator.pool_stats(&pool.name);
        prop_assert!(stats.is_some(), "pool {} missing", pool.name);
        let stats = stats.unwrap_or_default();
        for family in Family::ALL {
            let in_use = holders
                .keys()
                .filter(|&&a| Family::of(a) == family && pool_contains(pool, a))
                .count() as u128;
            let size = pool_size(&pool.addresses, family, pool.avoid_buggy_ips);
            let counts = stats.family(family);
            prop_assert_eq!(counts.size, size, "size of {} {}", pool.name, family);
            prop_assert_eq!(
                counts.assigned,
                in_use,
                "assigned in {} {}",
                pool.name,
                family
            );
            prop_assert_eq!(
                counts.available,
                size - in_use,
                "available in {} {}",
                pool.name,
                family
            );
        }
    }
    Ok(())
}

/// A new allocator rebuilt as a restarted controller would: pools, then restore everything.
fn restart(
    allocator: &Allocator,
    pools: &[PoolSpec],
    made_by: &BTreeMap<ServiceKey, ServiceRequest>,
) -> Result<Allocator, TestCaseError> {
    let mut fresh = Allocator::new(pools.to_vec());
    for (key, assignment) in allocator.assignments() {
        let outcome = fresh.restore(
            &made_by[key],
            &assignment.ips(),
            &assignment.allocated_from(),
        );
        prop_assert!(
            outcome
                .problems
                .iter()
                .all(|p| matches!(p, RestoreProblem::OutsideEveryPool { .. })),
            "restoring {key}: {:?}",
            outcome.problems
        );
    }
    prop_assert_eq!(
        snapshot(&fresh, pools),
        snapshot(allocator, pools),
        "restart changed something"
    );
    Ok(fresh)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(
        initial in pool_choices(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut pools = pools_from(&initial);
        let mut allocator = Allocator::new(pools.clone());
        // The request that made each Service's current assignment.
        let mut made_by: BTreeMap<ServiceKey, ServiceRequest> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Apply(request) => {
                    let before = allocator.assignment(&request.key);
                    match allocator.assign(&request) {
                        Ok(assignment) => {
                            prop_assert!(!assignment.is_empty());
                            made_by.insert(request.key.clone(), (*request).clone());
                            let again = allocator.assign(&request);
                            prop_assert_eq!(again, Ok(assignment), "assign is not idempotent");
                        }
                        Err(_) => prop_assert_eq!(
                            allocator.assignment(&request.key), before,
                            "a failed assign changed the Service"
                        ),
                    }
                }
                Step::Delete(key) => {
                    let released = allocator.release(&key);
                    prop_assert_eq!(released.is_some(), made_by.remove(&key).is_some());
                }
                Step::SetPools(choices) => {
                    let before: Vec<(ServiceKey, Vec<IpAddr>)> =
                        allocator.assignments().map(|(k, a)| (k.clone(), a.ips())).collect();
                    pools = pools_from(&choices);
                    allocator.set_pools(pools.clone());
                    let after: Vec<(ServiceKey, Vec<IpAddr>)> =
                        allocator.assignments().map(|(k, a)| (k.clone(), a.ips())).collect();
                    prop_assert_eq!(before, after, "a pool change moved an address");
                }
                Step::Restart => {
                    allocator = restart(&allocator, &pools, &made_by)?;
                }
            }
            check_invariants(&allocator, &pools, &made_by)?;
        }
        restart(&allocator, &pools, &made_by)?;
    }
}

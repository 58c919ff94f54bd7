//! Property tests: random sequences of Service creates/updates/deletes (load balancers and
//! plain Services, both with `spec.externalIPs`), pool changes (also of `allowExternalIPs`)
//! and controller restarts, checked after every step against invariants computed
//! independently of the allocator's own bookkeeping:
//!
//! - an address is held by two Services only if they may share it, whether each holds it as
//!   a load-balancer address or as a booked externalIP;
//! - an address booked against a pool lies in that pool; one booked against no pool lies in
//!   no pool; a booked externalIP lies in a pool that allows external IPs and serves the
//!   Service;
//! - exactly the accepted externalIPs are booked;
//! - each pool's assigned/available counts match the addresses in use inside it;
//! - assigning or booking again changes nothing; a pool change books no new externalIP and
//!   reports each one it released;
//! - a restart (a fresh allocator rebuilt by `restore` from the current assignments and
//!   `restore_external_ips` from the current bookings, in a random order, interleaved)
//!   gives identical assignments, bookings and counts.
//!
//! A second property feeds conflicting records (status addresses and externalIP records
//! that collide) in random interleavings: the load-balancer addresses restored never depend
//! on the interleaving, and no address ends up held by two Services that may not share it.

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
    p0.allow_external_ips = true;
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

/// Addresses a Service may list in `spec.externalIPs`: in allowing pools (also the lowest
/// ones a load balancer would get), in pools that do not allow them, outside every pool.
const EXTERNAL: [&str; 9] = [
    "192.0.2.0",
    "192.0.2.1",
    "192.0.2.6",
    "2001:db8:1::1",
    "198.51.100.1",
    "198.51.100.2",
    "192.0.2.9",
    "203.0.113.1",
    "192.0.2.200",
];

#[derive(Debug, Clone)]
struct PoolChoice {
    index: usize,
    priority: Option<i32>,
    deleting: bool,
    allow_external_ips: Option<bool>,
}

#[derive(Debug, Clone)]
enum Step {
    /// A LoadBalancer Service reconciled: externalIPs booked, then addresses assigned.
    Apply(Box<ServiceRequest>),
    /// A Service that is not a load balancer (any more): released, externalIPs booked.
    ApplyPlain(Box<ServiceRequest>),
    Delete(ServiceKey),
    SetPools(Vec<PoolChoice>),
    /// Sort keys that shuffle the rebuild's restores.
    Restart(Vec<u32>),
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
        proptest::collection::vec(0usize..EXTERNAL.len(), 0..3),
    )
        .prop_map(
            |(key, families, requested, pinned, sharing, ports, local, pods, web, external)| {
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
                request.external_ips = external
                    .into_iter()
                    .map(|i| EXTERNAL[i].parse().expect("address"))
                    .collect();
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
            proptest::option::weighted(0.3, any::<bool>()),
        ),
        0..5,
    )
    .prop_map(|choices| {
        choices
            .into_iter()
            .map(
                |(index, priority, deleting, allow_external_ips)| PoolChoice {
                    index,
                    priority,
                    deleting,
                    allow_external_ips,
                },
            )
            .collect()
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => request().prop_map(|r| Step::Apply(Box::new(r))),
        2 => request().prop_map(|r| Step::ApplyPlain(Box::new(r))),
        2 => service_key().prop_map(Step::Delete),
        1 => pool_choices().prop_map(Step::SetPools),
        1 => proptest::collection::vec(any::<u32>(), 1..16).prop_map(Step::Restart),
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
            if let Some(allow) = choice.allow_external_ips {
                spec.allow_external_ips = allow;
            }
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

/// The requests that made each Service's current bookings.
#[derive(Debug, Default)]
struct Model {
    /// The request that made each Service's current load-balancer assignment.
    assigned_by: BTreeMap<ServiceKey, ServiceRequest>,
    /// The request that made each Service's current externalIP bookings.
    booked_by: BTreeMap<ServiceKey, ServiceRequest>,
}

/// Assignments, externalIP bookings and pool counts.
type Snapshot = (
    Vec<(ServiceKey, Assignment)>,
    Vec<(ServiceKey, Vec<AssignedAddress>)>,
    Vec<Option<PoolStats>>,
);

/// Everything observable about the allocator, for comparing a restart with the original.
fn snapshot(allocator: &Allocator, pools: &[PoolSpec]) -> Snapshot {
    (
        allocator
            .assignments()
            .map(|(k, a)| (k.clone(), a))
            .collect(),
        allocator
            .external_bookings()
            .map(|(k, b)| (k.clone(), b))
            .collect(),
        pools
            .iter()
            .map(|p| allocator.pool_stats(&p.name))
            .collect(),
    )
}

/// Every address in use, with each (Service, request) holding it.
fn holders<'a>(
    allocator: &Allocator,
    model: &'a Model,
) -> BTreeMap<IpAddr, Vec<(ServiceKey, &'a ServiceRequest)>> {
    let mut holders: BTreeMap<IpAddr, Vec<(ServiceKey, &ServiceRequest)>> = BTreeMap::new();
    for (key, assignment) in allocator.assignments() {
        if let Some(request) = model.assigned_by.get(key) {
            for address in assignment.ips() {
                holders
                    .entry(address)
                    .or_default()
                    .push((key.clone(), request));
            }
        }
    }
    for (key, booked) in allocator.external_bookings() {
        if let Some(request) = model.booked_by.get(key) {
            for assigned in booked {
                holders
                    .entry(assigned.address)
                    .or_default()
                    .push((key.clone(), request));
            }
        }
    }
    holders
}

/// No address is held by two Services that may not share it, however each holds it.
fn check_no_forbidden_sharing(allocator: &Allocator, model: &Model) -> Result<(), TestCaseError> {
    for (address, holding) in &holders(allocator, model) {
        for (i, (a, request_a)) in holding.iter().enumerate() {
            for (b, request_b) in &holding[i + 1..] {
                prop_assert!(
                    a == b || may_share(request_a, request_b),
                    "{address} held by {a} and {b}, which may not share"
                );
            }
        }
    }
    Ok(())
}

fn check_invariants(
    allocator: &Allocator,
    pools: &[PoolSpec],
    model: &Model,
) -> Result<(), TestCaseError> {
    let effective = effective_pools(pools);
    for (key, assignment) in allocator.assignments() {
        prop_assert!(
            model.assigned_by.contains_key(key),
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
        }
    }
    for (key, booked) in allocator.external_bookings() {
        let request = model.booked_by.get(key);
        prop_assert!(request.is_some(), "{key} booked externalIPs nobody listed");
        let Some(request) = request else {
            continue;
        };
        prop_assert!(!booked.is_empty(), "{key}: an empty booking is kept");
        for assigned in booked {
            prop_assert!(
                request.external_ips.contains(&assigned.address),
                "{key}: {} booked but not listed",
                assigned.address
            );
            let pool = assigned.pool.as_ref().and_then(|name| effective.get(name));
            prop_assert!(
                pool.is_some_and(|p| pool_contains(p, assigned.address)
                    && p.allow_external_ips
                    && p.serves(request, true).is_ok()),
                "{key}: externalIP {} booked against {:?}, which does not accept it",
                assigned.address,
                assigned.pool
            );
        }
    }
    check_no_forbidden_sharing(allocator, model)?;
    let in_use = holders(allocator, model);
    for pool in effective.values() {
        let stats = allocator.pool_stats(&pool.name);
        prop_assert!(stats.is_some(), "pool {} missing", pool.name);
        let stats = stats.unwrap_or_default();
        for family in Family::ALL {
            let in_use = in_use
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

/// One restore of a rebuild.
enum Rebuild<'a> {
    /// `restore` from status: (request, addresses, allocated-from annotation).
    Status(&'a ServiceRequest, Vec<IpAddr>, Vec<String>),
    /// `restore_external_ips` from the record: (request, recorded addresses).
    Record(&'a ServiceRequest, Vec<IpAddr>),
}

/// Shuffles `items` by the sort keys `order` (cycled), stably.
fn shuffled<T>(items: Vec<T>, order: &[u32]) -> Vec<T> {
    let mut keyed: Vec<(u32, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            (
                order.get(i % order.len().max(1)).copied().unwrap_or(0),
                i,
                item,
            )
        })
        .collect();
    keyed.sort_by_key(|(k, i, _)| (*k, *i));
    keyed.into_iter().map(|(_, _, item)| item).collect()
}

/// A new allocator rebuilt as a restarted controller would: pools, then every status
/// address and every recorded externalIP, in the order `order` shuffles them into (the
/// controller restores status first; any order must give the same result).
fn restart(
    allocator: &Allocator,
    pools: &[PoolSpec],
    model: &Model,
    order: &[u32],
) -> Result<Allocator, TestCaseError> {
    let mut rebuild = Vec::new();
    for (key, assignment) in allocator.assignments() {
        rebuild.push(Rebuild::Status(
            &model.assigned_by[key],
            assignment.ips(),
            assignment.allocated_from(),
        ));
    }
    for (key, booked) in allocator.external_bookings() {
        rebuild.push(Rebuild::Record(
            &model.booked_by[key],
            booked.iter().map(|a| a.address).collect(),
        ));
    }
    let mut fresh = Allocator::new(pools.to_vec());
    for step in shuffled(rebuild, order) {
        match step {
            Rebuild::Status(request, addresses, allocated_from) => {
                let outcome = fresh.restore(request, &addresses, &allocated_from);
                prop_assert!(
                    outcome
                        .problems
                        .iter()
                        .all(|p| matches!(p, RestoreProblem::OutsideEveryPool { .. })),
                    "restoring {}: {:?}",
                    request.key,
                    outcome.problems
                );
                prop_assert!(
                    outcome.displaced.is_empty(),
                    "restoring {} displaced {:?}",
                    request.key,
                    outcome.displaced
                );
            }
            Rebuild::Record(request, recorded) => {
                let verdicts = fresh.restore_external_ips(request, &recorded);
                prop_assert!(
                    verdicts.iter().all(|v| v.result.is_ok()),
                    "re-booking {}: {:?}",
                    request.key,
                    verdicts
                );
            }
        }
    }
    prop_assert_eq!(
        snapshot(&fresh, pools),
        snapshot(allocator, pools),
        "restart changed something"
    );
    Ok(fresh)
}

/// Books the request's externalIPs and checks exactly the accepted ones are booked, and that
/// booking again changes nothing.
fn book(
    allocator: &mut Allocator,
    model: &mut Model,
    request: &ServiceRequest,
) -> Result<(), TestCaseError> {
    let verdicts = allocator.book_external_ips(request);
    prop_assert_eq!(verdicts.len(), request.external_ips.len());
    let accepted: BTreeMap<IpAddr, String> = verdicts
        .iter()
        .filter_map(|v| v.result.clone().ok().map(|pool| (v.address, pool)))
        .collect();
    let booked: BTreeMap<IpAddr, String> = allocator
        .external_ips(&request.key)
        .into_iter()
        .map(|a| (a.address, a.pool.unwrap_or_default()))
        .collect();
    prop_assert_eq!(&booked, &accepted, "booked is not what was accepted");
    if booked.is_empty() {
        model.booked_by.remove(&request.key);
    } else {
        model.booked_by.insert(request.key.clone(), request.clone());
    }
    let again = allocator.book_external_ips(request);
    prop_assert_eq!(again, verdicts, "booking is not idempotent");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(
        initial in pool_choices(),
        steps in proptest::collection::vec(step(), 1..60),
        last_order in proptest::collection::vec(any::<u32>(), 1..16),
    ) {
        let mut pools = pools_from(&initial);
        let mut allocator = Allocator::new(pools.clone());
        let mut model = Model::default();
        for step in steps {
            match step {
                Step::Apply(request) => {
                    // As the service plan does: externalIPs first, then the addresses.
                    book(&mut allocator, &mut model, &request)?;
                    let before = allocator.assignment(&request.key);
                    match allocator.assign(&request) {
                        Ok(assignment) => {
                            prop_assert!(!assignment.is_empty());
                            model.assigned_by.insert(request.key.clone(), (*request).clone());
                            let again = allocator.assign(&request);
                            prop_assert_eq!(again, Ok(assignment), "assign is not idempotent");
                        }
                        Err(_) => prop_assert_eq!(
                            allocator.assignment(&request.key), before,
                            "a failed assign changed the Service"
                        ),
                    }
                }
                Step::ApplyPlain(request) => {
                    allocator.release(&request.key);
                    model.assigned_by.remove(&request.key);
                    book(&mut allocator, &mut model, &request)?;
                }
                Step::Delete(key) => {
                    let released = allocator.release(&key);
                    prop_assert_eq!(released.is_some(), model.assigned_by.remove(&key).is_some());
                    model.booked_by.remove(&key);
                    prop_assert!(allocator.external_ips(&key).is_empty());
                }
                Step::SetPools(choices) => {
                    let before: Vec<(ServiceKey, Vec<IpAddr>)> =
                        allocator.assignments().map(|(k, a)| (k.clone(), a.ips())).collect();
                    let booked_before: BTreeSet<(ServiceKey, IpAddr)> = allocator
                        .external_bookings()
                        .flat_map(|(k, b)| b.into_iter().map(move |a| (k.clone(), a.address)))
                        .collect();
                    pools = pools_from(&choices);
                    let reports = allocator.set_pools(pools.clone());
                    let after: Vec<(ServiceKey, Vec<IpAddr>)> =
                        allocator.assignments().map(|(k, a)| (k.clone(), a.ips())).collect();
                    prop_assert_eq!(before, after, "a pool change moved an address");
                    let booked_after: BTreeSet<(ServiceKey, IpAddr)> = allocator
                        .external_bookings()
                        .flat_map(|(k, b)| b.into_iter().map(move |a| (k.clone(), a.address)))
                        .collect();
                    prop_assert!(
                        booked_after.is_subset(&booked_before),
                        "a pool change booked an externalIP"
                    );
                    let reported: BTreeSet<(ServiceKey, IpAddr)> = reports
                        .into_iter()
                        .filter_map(|r| match r {
                            PoolChangeReport::ExternalIpReleased { service, address, .. } => {
                                Some((service, address))
                            }
                            _ => None,
                        })
                        .collect();
                    let released: BTreeSet<(ServiceKey, IpAddr)> =
                        booked_before.difference(&booked_after).cloned().collect();
                    prop_assert_eq!(reported, released, "released externalIPs not reported");
                    model
                        .booked_by
                        .retain(|k, _| !allocator.external_ips(k).is_empty());
                }
                Step::Restart(order) => {
                    allocator = restart(&allocator, &pools, &model, &order)?;
                }
            }
            check_invariants(&allocator, &pools, &model)?;
        }
        restart(&allocator, &pools, &model, &last_order)?;
    }

    #[test]
    fn restored_status_addresses_win_over_colliding_external_ip_records_in_any_interleaving(
        pools in pool_choices(),
        status in proptest::collection::vec(
            (request(), proptest::collection::vec(0usize..EXTERNAL.len(), 1..3)),
            0..6,
        ),
        records in proptest::collection::vec(request(), 0..6),
        interleaving in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let pools = pools_from(&pools);
        // Status addresses drawn from the externalIP candidates, so that they collide.
        let status: Vec<(ServiceRequest, Vec<IpAddr>)> = status
            .into_iter()
            .map(|(request, picks)| {
                let addresses = picks
                    .into_iter()
                    .map(|i| EXTERNAL[i].parse().expect("address"))
                    .collect();
                (request, addresses)
            })
            .collect();
        // Each Service restores once: status first wins, one record per key.
        let mut seen = BTreeSet::new();
        let status: Vec<_> = status.into_iter().filter(|(r, _)| seen.insert(r.key.clone())).collect();
        let mut seen = BTreeSet::new();
        let records: Vec<_> = records.into_iter().filter(|r| seen.insert(r.key.clone())).collect();

        let rebuild = |mixed: bool| -> (Allocator, Model) {
            let mut allocator = Allocator::new(pools.clone());
            let mut model = Model::default();
            let (mut s, mut r) = (status.iter(), records.iter());
            let mut choices = interleaving.iter().copied().cycle();
            loop {
                let take_record = mixed && choices.next().unwrap_or(false);
                let next = if take_record {
                    r.next().map(Err).or_else(|| s.next().map(Ok))
                } else {
                    s.next().map(Ok).or_else(|| r.next().map(Err))
                };
                match next {
                    Some(Ok((request, addresses))) => {
                        let outcome = allocator.restore(request, addresses, &[]);
                        model.assigned_by.insert(request.key.clone(), request.clone());
                        for (displaced, _) in outcome.displaced {
                            if allocator.external_ips(&displaced).is_empty() {
                                model.booked_by.remove(&displaced);
                            }
                        }
                    }
                    Some(Err(request)) => {
                        allocator.restore_external_ips(request, &request.external_ips);
                        if !allocator.external_ips(&request.key).is_empty() {
                            model.booked_by.insert(request.key.clone(), request.clone());
                        }
                    }
                    None => break,
                }
            }
            (allocator, model)
        };
        let (status_first, status_first_model) = rebuild(false);
        let (mixed, mixed_model) = rebuild(true);
        let assignments = |a: &Allocator| -> Vec<(ServiceKey, Assignment)> {
            a.assignments().map(|(k, a)| (k.clone(), a)).collect()
        };
        prop_assert_eq!(
            assignments(&mixed),
            assignments(&status_first),
            "externalIP records changed what was restored from status"
        );
        check_no_forbidden_sharing(&status_first, &status_first_model)?;
        check_no_forbidden_sharing(&mixed, &mixed_model)?;
        check_invariants(&status_first, &pools, &status_first_model)?;
        check_invariants(&mixed, &pools, &mixed_model)?;
    }
}

/// One step of the node-address property.
#[derive(Debug, Clone)]
enum NodeStep {
    /// Service `svc-{0}` reconciled (requesting `192.0.2.{1}` if set).
    Assign(usize, Option<u8>),
    Release(usize),
    /// The nodes now have these last octets of `192.0.2.0/29`.
    Nodes(BTreeSet<u8>),
}

fn node_step() -> impl Strategy<Value = NodeStep> {
    prop_oneof![
        3 => (0usize..6, proptest::option::weighted(0.3, 0u8..8))
            .prop_map(|(s, r)| NodeStep::Assign(s, r)),
        1 => (0usize..6).prop_map(NodeStep::Release),
        1 => proptest::collection::btree_set(0u8..8, 0..4).prop_map(NodeStep::Nodes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Node addresses: a Service is never newly given one (allocated or requested), one it
    /// already holds is never moved, and the pool counts every address that is held or a
    /// node's as assigned; once no node has an address and nobody holds it, it is free.
    #[test]
    fn node_addresses_are_never_handed_out_and_held_ones_never_move(
        steps in proptest::collection::vec(node_step(), 1..40)
    ) {
        let octet = |o: u8| IpAddr::from([192, 0, 2, o]);
        let pools = vec![PoolSpec::new("p", vec!["192.0.2.0/29".parse().expect("range")])];
        let mut allocator = Allocator::new(pools);
        let mut node_set: BTreeSet<IpAddr> = BTreeSet::new();
        for step in steps {
            match step {
                NodeStep::Assign(s, requested) => {
                    let mut request = ServiceRequest::new("ns", format!("svc-{s}"));
                    request.requested_addresses = requested.map(octet).into_iter().collect();
                    let before = allocator.assignment(&request.key);
                    let result = allocator.assign(&request);
                    let after = allocator.assignment(&request.key);
                    for address in after.iter().flat_map(Assignment::ips) {
                        let held_before =
                            before.as_ref().is_some_and(|b| b.ips().contains(&address));
                        prop_assert!(
                            held_before || !node_set.contains(&address),
                            "{address} newly given although a node has it"
                        );
                    }
                    if let (Some(before), Err(_)) = (&before, &result) {
                        prop_assert_eq!(Some(before), after.as_ref());
                    }
                    if let Some(address) = requested.map(octet)
                        && node_set.contains(&address)
                        && !before.as_ref().is_some_and(|b| b.ips().contains(&address))
                    {
                        let is_node_address_error =
                            matches!(result, Err(AllocationError::NodeAddress { .. }));
                        prop_assert!(is_node_address_error);
                    }
                }
                NodeStep::Release(s) => {
                    allocator.release(&ServiceKey::new("ns", format!("svc-{s}")));
                }
                NodeStep::Nodes(octets) => {
                    let held: Vec<(ServiceKey, Assignment)> = allocator
                        .assignments()
                        .map(|(k, a)| (k.clone(), a))
                        .collect();
                    node_set = octets.iter().map(|&o| octet(o)).collect();
                    allocator.set_node_addresses(
                        octets.iter().map(|&o| (format!("node-{}", o % 3), octet(o))),
                    );
                    for (key, assignment) in held {
                        prop_assert_eq!(allocator.assignment(&key), Some(assignment));
                    }
                }
            }
            let in_use: BTreeSet<IpAddr> = allocator
                .assignments()
                .flat_map(|(_, a)| a.ips())
                .chain(node_set.iter().copied())
                .collect();
            let stats = allocator.pool_stats("p").expect("pool");
            prop_assert_eq!(stats.ipv4.assigned, in_use.len() as u128);
            prop_assert_eq!(stats.ipv4.available, 8 - in_use.len() as u128);
        }
    }
}

//! The pure allocator: which Service holds which address (its load-balancer addresses and its
//! booked `spec.externalIPs`), from which pool.
//!
//! It owns the bookkeeping of pools and assignments and nothing else: no kube types, no I/O,
//! no clock. The reconciler converts `IPAddressPool`s into [`PoolSpec`]s and `Service`s into
//! [`ServiceRequest`]s at its edge, calls the methods below, and turns the results into status
//! patches, annotations and Events.
//!
//! # Public API
//!
//! - [`Allocator::new`]`(pools)`, [`Allocator::set_pools`]`(pools) -> Vec<`[`PoolChangeReport`]`>`:
//!   install the current pools. Existing addresses never move; an address that no pool
//!   contains any more is kept and reported ([`PoolChangeReport::AddressOutsideEveryPool`]).
//! - [`Allocator::restore`]`(&request, &status_addresses, &allocated_from) -> `[`RestoreOutcome`]:
//!   on start, take over what `status.loadBalancer.ingress` (and the
//!   `herald.dev/ip-allocated-from-pool` annotation) say, for every Service, **before** any
//!   `assign`.
//!   Never moves an address; conflicts between load-balancer addresses are reported, not
//!   resolved. Restore older Services first: on a conflict the first one restored keeps the
//!   address.
//! - [`Allocator::assign`]`(&request) -> Result<`[`Assignment`]`, `[`AllocationError`]`>`:
//!   idempotent; call on every reconcile. An existing assignment changes only when the
//!   Service's own request changed (requested address, pinned pool, families, or sharing that
//!   now clashes). On error the Service keeps what it had.
//! - [`Allocator::release`]`(&key)`: the Service was deleted, changed type or class (gives
//!   back its load-balancer addresses and its booked externalIPs).
//! - [`Allocator::book_external_ips`]`(&request) -> Vec<`[`ExternalIpVerdict`]`>`: judges each
//!   `spec.externalIPs` entry and books the accepted ones for the Service; idempotent, call on
//!   every reconcile of a Service whose externalIPs Herald judges.
//!   [`Allocator::restore_external_ips`]`(&request, &recorded)`: on start, after every
//!   `restore`, re-books the entries recorded as booked (see below).
//! - [`Allocator::set_node_addresses`]`((node, address) pairs) -> Vec<`[`ServiceKey`]`>`:
//!   install the nodes' own addresses (InternalIP / ExternalIP; the whole set); returns the
//!   Services holding an address whose nodes changed. [`Allocator::node_addresses_held`]`(&key)`
//!   and [`Allocator::node_addresses_in_pool`]`(name)` say which held or pooled addresses
//!   are also nodes' (for the Service's and the pool's conditions).
//! - [`Allocator::assignment`]`(&key)`, [`Allocator::external_ips`]`(&key)`,
//!   [`Allocator::pool_stats`]`(name)`, [`Allocator::services_using_pool`]`(name)` (for the
//!   pool finalizer), [`Allocator::addresses_outside_every_pool`], [`Allocator::overlaps`],
//!   [`Allocator::check_external_ips`]`(&request)` (the verdicts without booking).
//!
//! # Rules
//!
//! - A requested address (`spec.loadBalancerIP` / `herald.dev/loadBalancerIPs`, one per family)
//!   must lie in a pool that serves the Service, and be free or shareable.
//! - `herald.dev/address-pool` restricts allocation to that pool (even an `autoAssign: false`
//!   one; its namespace and Service selectors still apply).
//! - Otherwise pools are tried by `priority` (**lower number first**, pools without one last,
//!   ties by name), skipping pools that do not serve the Service and `autoAssign: false` pools.
//!   Within a pool the lowest address that is free or shareable wins. A dual-stack Service
//!   takes all its families from one pool when one pool can give them all, else per family.
//! - Two Services share an address only with equal non-empty `herald.dev/allow-shared-ip`
//!   keys, no common (protocol, port), the same `externalTrafficPolicy`, and for `Local` the
//!   same pod selector. This holds for every way of holding an address: load-balancer
//!   address or booked externalIP, in any combination.
//! - `spec.externalIPs` are never allocated; each is accepted only inside a pool with
//!   `allowExternalIPs` that serves the Service (the first such pool in allocation order is
//!   the one named), and only if no other Service that may not share it holds it. An
//!   accepted entry is **booked** like an assignment: it leaves the free set of every pool
//!   containing it, so no later Service is given it (unless it may share). Bookings follow the
//!   Service: `book_external_ips` keeps entries still listed and accepted, releases removed or
//!   now refused ones, books added ones; `release` gives them all back; `set_pools` releases
//!   (and reports, [`PoolChangeReport::ExternalIpReleased`]) those whose pool no longer
//!   contains them, no longer allows external IPs or no longer serves the Service. An entry
//!   refused because the address is taken is not queued: it is judged again at the Service's
//!   next `book_external_ips`. Booked externalIPs do not hold a pool's finalizer (they are
//!   released instead when the pool goes) but count as assigned in [`PoolStats`].
//! - **A node's own address is never handed out.** Every node InternalIP / ExternalIP is
//!   reserved: out of the free set of every pool containing it (like a booking held by no
//!   Service, so it counts as assigned in [`PoolStats`]), whether or not a Service holds it;
//!   a Service releasing it does not free it, only the node giving it up does (then it goes
//!   back unless a Service holds it). A requested node address is refused
//!   ([`AllocationError::NodeAddress`], naming the nodes); a shared address that became a
//!   node address is not given to new sharers. A Service that already holds a node address
//!   (restored from status, or a node took the address later) keeps it — addresses never
//!   move — and is reported by [`Allocator::node_addresses_held`] (speakers will not announce
//!   it). Restore refuses nothing because of node addresses.
//! - Restart: a rebuilt allocator first restores every load-balancer address from status,
//!   then re-books the externalIPs recorded as booked, then books new claims. **A
//!   load-balancer address recorded in status wins over an externalIP claim** in either
//!   order: `restore` refuses nothing because of externalIP bookings, it displaces those it
//!   may not share with (listed in [`RestoreOutcome::displaced`]); an externalIP claim on a
//!   restored address is refused ([`ExternalIpRefusal::InUse`]). Between externalIP claims
//!   the first booked wins and keeps the address; the record makes a rebuild book the same.
//!
//! Costs: allocation, release, booking and membership are O(log n) in the number of addresses
//! handed out (pools are never enumerated), times the number of pools for overlap bookkeeping
//! (per externalIPs entry for `book_external_ips`). `set_pools` re-judges every booked
//! externalIP against the new pools (O(bookings × pools)). `set_node_addresses` is
//! O(changed addresses × (pools + log n)); a new or changed pool's free set also takes out
//! the node addresses in its range (O(those × log n)).

mod error;
mod model;
mod selector;

pub use error::{
    AllocationError, ExternalIpRefusal, ExternalIpVerdict, InvalidRequest, PoolChangeReport,
    RestoreProblem, SharingConflictReason,
};
pub use model::{
    AssignedAddress, Assignment, FamilyStats, IpFamilyPolicy, PoolRefusal, PoolSpec, PoolStats,
    Protocol, ServiceKey, ServicePort, ServiceRequest, TrafficPolicy, UnknownValue,
};
pub use selector::{LabelSelector, Labels, SelectorOperator, SelectorRequirement, UnknownOperator};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_crds::address::{Family, FreeAddresses, Overlap, find_overlaps};

use model::SharingProfile;

/// What [`Allocator::restore`] took over, and what it could not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreOutcome {
    /// The Service's assignment now (possibly fewer addresses than its status listed).
    pub assignment: Assignment,
    /// Addresses kept outside every pool, or not taken over.
    pub problems: Vec<RestoreProblem>,
    /// ExternalIP bookings of other Services given up for the restored addresses (a
    /// load-balancer address recorded in status wins): (Service, address). Those Services'
    /// verdicts changed; reconcile them.
    pub displaced: Vec<(ServiceKey, IpAddr)>,
}

/// One pool and its free addresses.
#[derive(Debug, Clone)]
struct PoolState {
    spec: PoolSpec,
    free: FreeAddresses,
}

/// One Service's addresses and the request they were made for.
#[derive(Debug, Clone)]
struct ServiceState {
    addresses: Vec<AssignedAddress>,
    profile: SharingProfile,
    /// `herald.dev/address-pool` when the addresses were last decided.
    pinned_pool: Option<String>,
}

/// One Service's booked `spec.externalIPs` and the request they were judged for.
#[derive(Debug, Clone)]
struct ExternalState {
    /// The request last judged (its labels decide whether a pool still serves it).
    request: ServiceRequest,
    /// Each booked address and the pool that accepted it.
    booked: BTreeMap<IpAddr, String>,
}

/// How a Service holds an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Use {
    /// As one of its load-balancer addresses.
    LoadBalancer,
    /// As a booked `spec.externalIPs` entry.
    External,
}

/// The Services holding one address (several only when they share). A Service may hold an
/// address both ways (its own load-balancer address listed in its externalIPs); each way
/// keeps the sharing profile of the request that made it.
#[derive(Debug, Clone, Default)]
struct Holding {
    holders: BTreeMap<(ServiceKey, Use), SharingProfile>,
}

/// Which Service holds which address from which pool. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pools: BTreeMap<String, PoolState>,
    /// Pool names in allocation order: priority (lower first, none last), then name.
    order: Vec<String>,
    services: BTreeMap<ServiceKey, ServiceState>,
    /// Booked externalIPs, by Service (only Services with at least one booking).
    external: BTreeMap<ServiceKey, ExternalState>,
    holdings: BTreeMap<IpAddr, Holding>,
    /// Addresses held by Services with each sharing key.
    shared_by_key: BTreeMap<String, BTreeSet<IpAddr>>,
    overlaps: Vec<Overlap>,
    /// Nodes' own addresses (InternalIP / ExternalIP), with the nodes having each: reserved,
    /// out of every pool's free set whether or not a Service holds them.
    node_addresses: BTreeMap<IpAddr, BTreeSet<String>>,
}

/// The families a request gets, and its requested address per family.
struct Wanted {
    families: Vec<Family>,
    requested: [Option<IpAddr>; 2],
}

impl Allocator {
    /// An allocator over `pools`, holding no addresses yet.
    pub fn new(pools: Vec<PoolSpec>) -> Self {
        let mut allocator = Allocator::default();
        allocator.set_pools(pools);
        allocator
    }

    /// Installs the current pools (the whole set). Addresses already handed out never move:
    /// one still inside its pool stays booked there; one its pool no longer contains is booked
    /// against the first pool (in allocation order) that does, or kept outside every pool and
    /// reported. Pools whose addresses did not change keep their free sets; new or changed
    /// ones are rebuilt from the addresses in use (O(in-use addresses in range × log n)).
    pub fn set_pools(&mut self, pools: Vec<PoolSpec>) -> Vec<PoolChangeReport> {
        let mut reports = Vec::new();
        let mut old = std::mem::take(&mut self.pools);
        for spec in pools {
            if self.pools.contains_key(&spec.name) {
                reports.push(PoolChangeReport::DuplicatePoolName { name: spec.name });
                continue;
            }
            let reusable = old.remove(&spec.name).filter(|state| {
                state.spec.addresses == spec.addresses
                    && state.spec.avoid_buggy_ips == spec.avoid_buggy_ips
            });
            let free = match reusable {
                Some(state) => state.free,
                None => self.fresh_free_set(&spec),
            };
            self.pools
                .insert(spec.name.clone(), PoolState { spec, free });
        }

        let mut order: Vec<&PoolSpec> = self.pools.values().map(|p| &p.spec).collect();
        order.sort_by(|a, b| {
            (a.priority.is_none(), a.priority, &a.name).cmp(&(
                b.priority.is_none(),
                b.priority,
                &b.name,
            ))
        });
        self.order = order.into_iter().map(|p| p.name.clone()).collect();
        self.overlaps = find_overlaps(
            self.pools
                .values()
                .map(|p| (p.spec.name.as_str(), p.spec.addresses.iter())),
        );

        // Re-book addresses whose pool no longer contains them.
        let mut rebookings = Vec::new();
        for (key, state) in &self.services {
            for (index, assigned) in state.addresses.iter().enumerate() {
                let still_inside = assigned
                    .pool
                    .as_ref()
                    .and_then(|name| self.pools.get(name))
                    .is_some_and(|pool| pool.free.contains(assigned.address));
                if still_inside {
                    continue;
                }
                let new_pool = self.first_pool_containing(assigned.address, None);
                if new_pool.is_none() && assigned.pool.is_none() {
                    continue; // Already outside every pool, already reported.
                }
                rebookings.push((key.clone(), index, new_pool));
            }
        }
        for (key, index, new_pool) in rebookings {
            let Some(assigned) = self
                .services
                .get_mut(&key)
                .and_then(|s| s.addresses.get_mut(index))
            else {
                continue;
            };
            let former_pool = assigned.pool.take();
            let address = assigned.address;
            reports.push(match new_pool {
                Some(pool) => {
                    assigned.pool = Some(pool.clone());
                    PoolChangeReport::AddressRebooked {
                        service: key,
                        address,
                        pool,
                        former_pool,
                    }
                }
                None => PoolChangeReport::AddressOutsideEveryPool {
                    service: key,
                    address,
                    former_pool,
                },
            });
        }
        reports.extend(self.rejudge_external_ips());
        reports
    }

    /// After a pool change: every booked externalIP is judged again against the pools (not
    /// against other holders: those did not change). One no longer accepted is released and
    /// reported; one now accepted by another pool is booked against it.
    fn rejudge_external_ips(&mut self) -> Vec<PoolChangeReport> {
        let mut released = Vec::new();
        let mut rebooked = Vec::new();
        for (key, state) in &self.external {
            for (&address, pool) in &state.booked {
                match self.external_pool(&state.request, address) {
                    Ok(now) if now == *pool => {}
                    Ok(now) => rebooked.push((key.clone(), address, now)),
                    Err(refusal) => released.push((key.clone(), address, refusal)),
                }
            }
        }
        for (key, address, pool) in rebooked {
            if let Some(booked) = self
                .external
                .get_mut(&key)
                .and_then(|s| s.booked.get_mut(&address))
            {
                *booked = pool;
            }
        }
        let mut reports = Vec::new();
        for (service, address, refusal) in released {
            self.unbook_external(&service, address);
            reports.push(PoolChangeReport::ExternalIpReleased {
                service,
                address,
                refusal,
            });
        }
        reports
    }

    /// A free set for `spec` with every address currently in use, and every node address,
    /// taken out.
    fn fresh_free_set(&self, spec: &PoolSpec) -> FreeAddresses {
        let mut free = FreeAddresses::new(&spec.addresses, spec.avoid_buggy_ips);
        for range in &spec.addresses {
            let held = self
                .holdings
                .range(range.first()..=range.last())
                .map(|(a, _)| *a);
            let nodes = self
                .node_addresses
                .range(range.first()..=range.last())
                .map(|(a, _)| *a);
            for address in held.chain(nodes) {
                // Overlapping entries visit an address twice; buggy ones are not in the pool.
                let _already_taken_or_avoided = free.take(address);
            }
        }
        free
    }

    /// Takes over the addresses a Service's status lists, as they are. Call for every Service
    /// before the first [`Allocator::assign`]. An address held by another Service that may not
    /// share it is not taken over (reported as a conflict); an address outside every pool is
    /// kept and reported. Calling it again with the same addresses changes nothing.
    ///
    /// `allocated_from` lists the pools named by the Service's
    /// `herald.dev/ip-allocated-from-pool` annotation (split at `,`; empty when absent), as
    /// [`Assignment::allocated_from`] wrote them: the address at position `i` is booked against
    /// entry `i` if that pool contains it, else the first listed pool that does, else the pinned
    /// pool, else the first pool in allocation order, so a rebuilt allocator books exactly as
    /// the old one did.
    pub fn restore(
        &mut self,
        request: &ServiceRequest,
        addresses: &[IpAddr],
        allocated_from: &[String],
    ) -> RestoreOutcome {
        let key = &request.key;
        if let Some(existing) = self.services.get(key) {
            let held: Vec<IpAddr> = existing.addresses.iter().map(|a| a.address).collect();
            if held == addresses {
                return RestoreOutcome {
                    assignment: Assignment {
                        addresses: existing.addresses.clone(),
                    },
                    ..RestoreOutcome::default()
                };
            }
            self.release_load_balancer(key);
        }
        let profile = request.sharing_profile();
        let mut problems = Vec::new();
        let mut displaced = Vec::new();
        let mut kept: Vec<AssignedAddress> = Vec::new();
        for (position, &address) in addresses.iter().enumerate() {
            let family = Family::of(address);
            if kept.iter().any(|a| Family::of(a.address) == family) {
                if !kept.iter().any(|a| a.address == address) {
                    problems.push(RestoreProblem::ExtraAddressOfFamily { address, family });
                }
                continue;
            }
            // Only other load-balancer addresses can keep a recorded one out.
            if let Err(error) =
                self.check_sharing_with(address, key, &profile, |u| u == Use::LoadBalancer)
            {
                problems.push(RestoreProblem::Conflict { address, error });
                continue;
            }
            // It wins over the externalIP bookings it may not share with.
            for other in self.external_holders_refusing(address, key, &profile) {
                self.unbook_external(&other, address);
                displaced.push((other, address));
            }
            let pool = allocated_from
                .get(position)
                .into_iter()
                .chain(allocated_from.iter())
                .find(|name| {
                    self.pools
                        .get(name.as_str())
                        .is_some_and(|p| p.free.contains(address))
                })
                .cloned()
                .or_else(|| self.first_pool_containing(address, request.pool.as_deref()));
            if pool.is_none() {
                problems.push(RestoreProblem::OutsideEveryPool { address });
            }
            kept.push(AssignedAddress { address, pool });
        }
        for assigned in &kept {
            self.hold(assigned.address, key, Use::LoadBalancer, &profile);
        }
        self.services.insert(
            key.clone(),
            ServiceState {
                addresses: kept.clone(),
                profile,
                pinned_pool: request.pool.clone(),
            },
        );
        RestoreOutcome {
            assignment: Assignment { addresses: kept },
            problems,
            displaced,
        }
    }

    /// Other Services holding `address` as a booked externalIP that `key` may not share with.
    fn external_holders_refusing(
        &self,
        address: IpAddr,
        key: &ServiceKey,
        profile: &SharingProfile,
    ) -> Vec<ServiceKey> {
        self.holdings
            .get(&address)
            .into_iter()
            .flat_map(|h| h.holders.iter())
            .filter(|((other, way), theirs)| {
                *way == Use::External
                    && other != key
                    && sharing_conflict(address, profile, other, theirs).is_some()
            })
            .map(|((other, _), _)| other.clone())
            .collect()
    }

    /// Gives the Service its addresses, or says why not. Idempotent: a Service that already
    /// holds addresses keeps each one unless its own request no longer fits it (a different
    /// requested address, a newly pinned pool that does not contain it, a family it no longer
    /// uses, or sharing settings that now clash). Changes are all-or-nothing: on error the
    /// Service keeps exactly what it held.
    pub fn assign(&mut self, request: &ServiceRequest) -> Result<Assignment, AllocationError> {
        let wanted = wanted_families(request)?;
        let key = &request.key;
        let previous = self.services.remove(key);
        if let Some(previous) = &previous {
            for assigned in &previous.addresses {
                self.unhold(assigned.address, key, Use::LoadBalancer);
            }
        }
        let profile = request.sharing_profile();
        match self.plan(request, &wanted, &profile, previous.as_ref()) {
            Ok(addresses) => {
                for assigned in &addresses {
                    self.hold(assigned.address, key, Use::LoadBalancer, &profile);
                }
                self.services.insert(
                    key.clone(),
                    ServiceState {
                        addresses: addresses.clone(),
                        profile,
                        pinned_pool: request.pool.clone(),
                    },
                );
                Ok(Assignment { addresses })
            }
            Err(error) => {
                if let Some(previous) = previous {
                    for assigned in &previous.addresses {
                        self.hold(assigned.address, key, Use::LoadBalancer, &previous.profile);
                    }
                    self.services.insert(key.clone(), previous);
                }
                Err(error)
            }
        }
    }

    /// Decides the Service's addresses with its own previous holdings already released.
    fn plan(
        &self,
        request: &ServiceRequest,
        wanted: &Wanted,
        profile: &SharingProfile,
        previous: Option<&ServiceState>,
    ) -> Result<Vec<AssignedAddress>, AllocationError> {
        let key = &request.key;
        let mut chosen: Vec<Option<AssignedAddress>> = vec![None; wanted.families.len()];
        let mut missing: Vec<usize> = Vec::new();
        for (slot, &family) in wanted.families.iter().enumerate() {
            let requested = wanted.requested[family.index()];
            let kept = previous
                .and_then(|p| {
                    p.addresses
                        .iter()
                        .find(|a| Family::of(a.address) == family)
                        .map(|a| (p, a))
                })
                .filter(|(p, a)| {
                    still_fits(
                        a,
                        requested,
                        request.pool.as_deref(),
                        p.pinned_pool.as_deref(),
                    ) && self.check_sharing(a.address, key, profile).is_ok()
                })
                .map(|(_, a)| a.clone());
            chosen[slot] = match (kept, requested) {
                (Some(kept), _) => Some(kept),
                (None, Some(address)) => Some(self.plan_requested(request, address, profile)?),
                (None, None) => {
                    missing.push(slot);
                    None
                }
            };
        }
        let optional_missing = request.ip_family_policy == IpFamilyPolicy::PreferDualStack
            && chosen.iter().any(Option::is_some);
        if !missing.is_empty() {
            let candidates = match self.candidate_pools(request) {
                Ok(candidates) => candidates,
                // Dual-stack is only preferred and something is already assigned.
                Err(_) if optional_missing => Vec::new(),
                Err(error) => return Err(error),
            };
            // Prefer pools this Service already uses, so a dual-stack pair stays together.
            let (mut ordered, rest): (Vec<&PoolState>, Vec<&PoolState>) =
                candidates.into_iter().partition(|p| {
                    chosen
                        .iter()
                        .flatten()
                        .any(|a| a.pool.as_deref() == Some(p.spec.name.as_str()))
                });
            ordered.extend(rest);
            let families: Vec<Family> = missing.iter().map(|&s| wanted.families[s]).collect();
            let one_pool = ordered.iter().find_map(|pool| {
                families
                    .iter()
                    .map(|&f| self.lowest_candidate(pool, f, key, profile))
                    .collect::<Option<Vec<IpAddr>>>()
                    .map(|addresses| (pool, addresses))
            });
            match one_pool {
                Some((pool, addresses)) => {
                    for (&slot, address) in missing.iter().zip(addresses) {
                        chosen[slot] = Some(AssignedAddress {
                            address,
                            pool: Some(pool.spec.name.clone()),
                        });
                    }
                }
                None => {
                    for &slot in &missing {
                        let family = wanted.families[slot];
                        let found = ordered.iter().find_map(|pool| {
                            self.lowest_candidate(pool, family, key, profile)
                                .map(|address| AssignedAddress {
                                    address,
                                    pool: Some(pool.spec.name.clone()),
                                })
                        });
                        match found {
                            Some(assigned) => chosen[slot] = Some(assigned),
                            None if request.ip_family_policy == IpFamilyPolicy::PreferDualStack => {
                                // Optional family: skipped unless nothing at all is assigned.
                            }
                            None => return Err(family_error(&ordered, family)),
                        }
                    }
                }
            }
            if chosen.iter().all(Option::is_none) {
                let family = wanted.families.first().copied().unwrap_or(Family::V4);
                return Err(family_error(&ordered, family));
            }
        }
        Ok(chosen.into_iter().flatten().collect())
    }

    /// Checks a requested address and finds the pool it is booked against.
    fn plan_requested(
        &self,
        request: &ServiceRequest,
        address: IpAddr,
        profile: &SharingProfile,
    ) -> Result<AssignedAddress, AllocationError> {
        if let Some(nodes) = self.node_addresses.get(&address) {
            return Err(AllocationError::NodeAddress {
                address,
                nodes: nodes.iter().cloned().collect(),
            });
        }
        let pool = match &request.pool {
            Some(name) => {
                let pool = self.usable_pinned_pool(request, name)?;
                if !pool.free.contains(address) {
                    return Err(AllocationError::NotInPool {
                        address,
                        pool: name.clone(),
                    });
                }
                name.clone()
            }
            None => {
                let mut first_refusal = None;
                let mut serving = None;
                for pool in self.pools_in_order().filter(|p| p.free.contains(address)) {
                    match pool.spec.serves(request, true) {
                        Ok(()) => {
                            serving = Some(pool.spec.name.clone());
                            break;
                        }
                        Err(reason) => {
                            first_refusal.get_or_insert((pool.spec.name.clone(), reason));
                        }
                    }
                }
                match (serving, first_refusal) {
                    (Some(pool), _) => pool,
                    (None, Some((pool, reason))) => {
                        return Err(AllocationError::PoolNotUsable { pool, reason });
                    }
                    (None, None) => return Err(AllocationError::NotInAnyPool { address }),
                }
            }
        };
        self.check_sharing(address, &request.key, profile)?;
        Ok(AssignedAddress {
            address,
            pool: Some(pool),
        })
    }

    /// The pinned pool, if it exists and serves the request.
    fn usable_pinned_pool(
        &self,
        request: &ServiceRequest,
        name: &str,
    ) -> Result<&PoolState, AllocationError> {
        let pool = self
            .pools
            .get(name)
            .ok_or_else(|| AllocationError::UnknownPool {
                pool: name.to_owned(),
            })?;
        pool.spec
            .serves(request, true)
            .map_err(|reason| AllocationError::PoolNotUsable {
                pool: name.to_owned(),
                reason,
            })?;
        Ok(pool)
    }

    /// Pools to auto-allocate from, in order: the pinned one, or every serving pool.
    fn candidate_pools(
        &self,
        request: &ServiceRequest,
    ) -> Result<Vec<&PoolState>, AllocationError> {
        if let Some(name) = &request.pool {
            return Ok(vec![self.usable_pinned_pool(request, name)?]);
        }
        let mut refusals = Vec::new();
        let mut serving = Vec::new();
        for pool in self.pools_in_order() {
            match pool.spec.serves(request, false) {
                Ok(()) => serving.push(pool),
                Err(reason) => refusals.push((pool.spec.name.clone(), reason)),
            }
        }
        if serving.is_empty() {
            return Err(AllocationError::NoEligiblePool { refusals });
        }
        Ok(serving)
    }

    /// The lowest address of `family` in `pool` that is free, or held by Services this one
    /// may share with.
    fn lowest_candidate(
        &self,
        pool: &PoolState,
        family: Family,
        key: &ServiceKey,
        profile: &SharingProfile,
    ) -> Option<IpAddr> {
        let free = pool.free.lowest_free(family);
        let shared = profile
            .key
            .as_ref()
            .and_then(|k| self.shared_by_key.get(k))
            .and_then(|addresses| {
                addresses.iter().copied().find(|&a| {
                    Family::of(a) == family
                        && pool.free.contains(a)
                        && !self.node_addresses.contains_key(&a)
                        && self.check_sharing(a, key, profile).is_ok()
                })
            });
        match (free, shared) {
            (Some(f), Some(s)) => Some(f.min(s)),
            (f, s) => f.or(s),
        }
    }

    /// Whether `key` (with `profile`) may hold `address` next to its current holders.
    fn check_sharing(
        &self,
        address: IpAddr,
        key: &ServiceKey,
        profile: &SharingProfile,
    ) -> Result<(), AllocationError> {
        self.check_sharing_with(address, key, profile, |_| true)
    }

    /// [`Allocator::check_sharing`] against the holders that hold it a way `counts`.
    fn check_sharing_with(
        &self,
        address: IpAddr,
        key: &ServiceKey,
        profile: &SharingProfile,
        counts: impl Fn(Use) -> bool,
    ) -> Result<(), AllocationError> {
        let Some(holding) = self.holdings.get(&address) else {
            return Ok(());
        };
        holding
            .holders
            .iter()
            .filter(|((other, way), _)| other != key && counts(*way))
            .find_map(|((other, _), theirs)| sharing_conflict(address, profile, other, theirs))
            .map_or(Ok(()), Err)
    }

    /// Records `key` as a holder of `address` (the way `way`), taking it out of every pool
    /// that contains it.
    fn hold(&mut self, address: IpAddr, key: &ServiceKey, way: Use, profile: &SharingProfile) {
        let holding = self.holdings.entry(address).or_default();
        if holding.holders.is_empty() {
            for pool in self.pools.values_mut() {
                // Err only for addresses outside the pool: nothing to take there.
                let _outside_this_pool = pool.free.take(address);
            }
        }
        holding.holders.insert((key.clone(), way), profile.clone());
        if let Some(sharing_key) = &profile.key {
            self.shared_by_key
                .entry(sharing_key.clone())
                .or_default()
                .insert(address);
        }
    }

    /// Removes `key` as a holder of `address` (the way `way`); the last holder gives it back
    /// to its pools.
    fn unhold(&mut self, address: IpAddr, key: &ServiceKey, way: Use) {
        let Some(holding) = self.holdings.get_mut(&address) else {
            return;
        };
        let Some(profile) = holding.holders.remove(&(key.clone(), way)) else {
            return;
        };
        let still_held_by_key = profile
            .key
            .as_ref()
            .is_some_and(|k| holding.holders.values().any(|p| p.key.as_ref() == Some(k)));
        if holding.holders.is_empty() {
            self.holdings.remove(&address);
            // A node address stays reserved.
            if !self.node_addresses.contains_key(&address) {
                for pool in self.pools.values_mut() {
                    pool.free.release(address);
                }
            }
        }
        if let Some(sharing_key) = profile.key
            && !still_held_by_key
            && let Some(addresses) = self.shared_by_key.get_mut(&sharing_key)
        {
            addresses.remove(&address);
            if addresses.is_empty() {
                self.shared_by_key.remove(&sharing_key);
            }
        }
    }

    /// Gives back every address of the Service: its load-balancer addresses and its booked
    /// externalIPs. Returns the load-balancer addresses it held (see
    /// [`Allocator::external_ips`] for the others).
    pub fn release(&mut self, key: &ServiceKey) -> Option<Assignment> {
        if let Some(state) = self.external.remove(key) {
            for address in state.booked.keys() {
                self.unhold(*address, key, Use::External);
            }
        }
        self.release_load_balancer(key)
    }

    /// Gives back the Service's load-balancer addresses only.
    fn release_load_balancer(&mut self, key: &ServiceKey) -> Option<Assignment> {
        let state = self.services.remove(key)?;
        for assigned in &state.addresses {
            self.unhold(assigned.address, key, Use::LoadBalancer);
        }
        Some(Assignment {
            addresses: state.addresses,
        })
    }

    /// Gives back one booked externalIP of the Service.
    fn unbook_external(&mut self, key: &ServiceKey, address: IpAddr) {
        let Some(state) = self.external.get_mut(key) else {
            return;
        };
        if state.booked.remove(&address).is_none() {
            return;
        }
        if state.booked.is_empty() {
            self.external.remove(key);
        }
        self.unhold(address, key, Use::External);
    }

    /// The Service's current addresses.
    pub fn assignment(&self, key: &ServiceKey) -> Option<Assignment> {
        self.services.get(key).map(|s| Assignment {
            addresses: s.addresses.clone(),
        })
    }

    /// Every Service's addresses, by key.
    pub fn assignments(&self) -> impl Iterator<Item = (&ServiceKey, Assignment)> {
        self.services.iter().map(|(k, s)| {
            (
                k,
                Assignment {
                    addresses: s.addresses.clone(),
                },
            )
        })
    }

    /// Address counts of pool `name` per family (an address in use by anyone counts, also
    /// one booked against an overlapping pool). `None` for an unknown pool.
    pub fn pool_stats(&self, name: &str) -> Option<PoolStats> {
        let pool = self.pools.get(name)?;
        let family = |family| FamilyStats {
            size: pool.free.usable_count(family),
            assigned: pool.free.allocated_count(family),
            available: pool.free.free_count(family),
        };
        Some(PoolStats {
            ipv4: family(Family::V4),
            ipv6: family(Family::V6),
        })
    }

    /// Services holding an address booked against pool `name` (the pool's finalizer stays
    /// while this is non-empty). O(Services).
    pub fn services_using_pool(&self, name: &str) -> Vec<ServiceKey> {
        self.services
            .iter()
            .filter(|(_, s)| s.addresses.iter().any(|a| a.pool.as_deref() == Some(name)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Addresses kept outside every pool, with their Service.
    pub fn addresses_outside_every_pool(&self) -> Vec<(ServiceKey, IpAddr)> {
        self.services
            .iter()
            .flat_map(|(k, s)| {
                s.addresses
                    .iter()
                    .filter(|a| a.pool.is_none())
                    .map(move |a| (k.clone(), a.address))
            })
            .collect()
    }

    /// Installs the nodes' own addresses (the whole set, as (node, address) pairs): each is
    /// reserved, out of every pool's free set like an address held by no Service, so it is
    /// never allocated and a request for it is refused ([`AllocationError::NodeAddress`]).
    /// Nothing is moved: a Service already holding one keeps it (see
    /// [`Allocator::node_addresses_held`]). An address no node has any more goes back to its
    /// pools unless a Service holds it. Returns the Services holding an address whose nodes
    /// changed (their conditions need a refresh). O(changed addresses × (pools + log n)).
    pub fn set_node_addresses(
        &mut self,
        nodes: impl IntoIterator<Item = (String, IpAddr)>,
    ) -> Vec<ServiceKey> {
        let mut new: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
        for (node, address) in nodes {
            new.entry(address).or_default().insert(node);
        }
        let old = std::mem::take(&mut self.node_addresses);
        let mut changed: Vec<IpAddr> = Vec::new();
        for (address, names) in &old {
            if new.get(address) != Some(names) {
                changed.push(*address);
            }
        }
        changed.extend(new.keys().filter(|a| !old.contains_key(a)).copied());
        for &address in &changed {
            if self.holdings.contains_key(&address) {
                continue; // Out of the free sets while held, either way.
            }
            match (old.contains_key(&address), new.contains_key(&address)) {
                (false, true) => {
                    for pool in self.pools.values_mut() {
                        // Err only for addresses outside the pool: nothing to take there.
                        let _outside_this_pool = pool.free.take(address);
                    }
                }
                (true, false) => {
                    for pool in self.pools.values_mut() {
                        pool.free.release(address);
                    }
                }
                _ => {}
            }
        }
        self.node_addresses = new;
        let affected: BTreeSet<ServiceKey> = changed
            .iter()
            .filter_map(|a| self.holdings.get(a))
            .flat_map(|h| h.holders.keys().map(|(key, _)| key.clone()))
            .collect();
        affected.into_iter().collect()
    }

    /// The nodes having `address` as their own (sorted; empty for none).
    pub fn nodes_having(&self, address: IpAddr) -> Vec<String> {
        self.node_addresses
            .get(&address)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The Service's load-balancer addresses that are also nodes' own addresses (kept, never
    /// moved, but never announced), each with the nodes having it.
    pub fn node_addresses_held(&self, key: &ServiceKey) -> Vec<(IpAddr, Vec<String>)> {
        self.services
            .get(key)
            .into_iter()
            .flat_map(|s| s.addresses.iter())
            .map(|a| (a.address, self.nodes_having(a.address)))
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect()
    }

    /// Node addresses inside pool `name` (for its NodeAddresses condition), each with the
    /// nodes having it. O(pool entries × log n + found).
    pub fn node_addresses_in_pool(&self, name: &str) -> Vec<(IpAddr, Vec<String>)> {
        let Some(pool) = self.pools.get(name) else {
            return Vec::new();
        };
        let found: BTreeMap<IpAddr, Vec<String>> = pool
            .spec
            .addresses
            .iter()
            .flat_map(|range| self.node_addresses.range(range.first()..=range.last()))
            .filter(|(address, _)| pool.free.contains(**address))
            .map(|(address, nodes)| (*address, nodes.iter().cloned().collect()))
            .collect();
        found.into_iter().collect()
    }

    /// Overlapping entries among the current pools (for the pools' Overlapping condition).
    /// Overlaps never cause a duplicate: an address in use is taken out of every pool.
    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
    }

    /// Verdict on each `spec.externalIPs` entry of the Service: announceable only inside a
    /// pool with `allowExternalIPs` that serves the Service, and not held by another Service
    /// (as a load-balancer address or a booked externalIP) it may not share with. Pure check:
    /// nothing is booked (see [`Allocator::book_external_ips`]).
    pub fn check_external_ips(&self, request: &ServiceRequest) -> Vec<ExternalIpVerdict> {
        let profile = request.sharing_profile();
        request
            .external_ips
            .iter()
            .map(|&address| ExternalIpVerdict {
                address,
                result: self.check_external_ip(request, &profile, address),
            })
            .collect()
    }

    /// Judges each `spec.externalIPs` entry as [`Allocator::check_external_ips`] does and
    /// books the accepted ones for the Service, so that no other Service is given them
    /// unless it may share. The Service's previous bookings are the starting point: an entry
    /// still listed and still accepted stays booked, one removed from the list or now refused
    /// is released, a new accepted one is booked. Idempotent. An entry listed twice gets the
    /// same verdict twice. O(entries × log n).
    pub fn book_external_ips(&mut self, request: &ServiceRequest) -> Vec<ExternalIpVerdict> {
        let key = &request.key;
        if let Some(previous) = self.external.remove(key) {
            for address in previous.booked.keys() {
                self.unhold(*address, key, Use::External);
            }
        }
        let profile = request.sharing_profile();
        let mut booked: BTreeMap<IpAddr, String> = BTreeMap::new();
        let mut verdicts = Vec::with_capacity(request.external_ips.len());
        for &address in &request.external_ips {
            let result = match booked.get(&address) {
                Some(pool) => Ok(pool.clone()),
                None => {
                    let result = self.check_external_ip(request, &profile, address);
                    if let Ok(pool) = &result {
                        self.hold(address, key, Use::External, &profile);
                        booked.insert(address, pool.clone());
                    }
                    result
                }
            };
            verdicts.push(ExternalIpVerdict { address, result });
        }
        if !booked.is_empty() {
            self.external.insert(
                key.clone(),
                ExternalState {
                    request: request.clone(),
                    booked,
                },
            );
        }
        verdicts
    }

    /// On start, after every [`Allocator::restore`]: books the Service's externalIPs that
    /// were recorded as booked (`recorded`) and are still listed, judged as
    /// [`Allocator::book_external_ips`] judges them (a load-balancer address restored from
    /// status is not shareable with them, so they are refused). Entries not recorded are left
    /// for the Service's next `book_external_ips`, so that recorded bookings are restored
    /// before new claims whatever the order of Services.
    pub fn restore_external_ips(
        &mut self,
        request: &ServiceRequest,
        recorded: &[IpAddr],
    ) -> Vec<ExternalIpVerdict> {
        let mut recorded_only = request.clone();
        recorded_only
            .external_ips
            .retain(|address| recorded.contains(address));
        self.book_external_ips(&recorded_only)
    }

    /// The Service's booked externalIPs, in address order, each with the pool that accepted
    /// it.
    pub fn external_ips(&self, key: &ServiceKey) -> Vec<AssignedAddress> {
        self.external
            .get(key)
            .map(|state| booked_addresses(&state.booked))
            .unwrap_or_default()
    }

    /// Every Service's booked externalIPs, by key.
    pub fn external_bookings(&self) -> impl Iterator<Item = (&ServiceKey, Vec<AssignedAddress>)> {
        self.external
            .iter()
            .map(|(k, s)| (k, booked_addresses(&s.booked)))
    }

    fn check_external_ip(
        &self,
        request: &ServiceRequest,
        profile: &SharingProfile,
        address: IpAddr,
    ) -> Result<String, ExternalIpRefusal> {
        let pool = self.external_pool(request, address)?;
        self.check_sharing(address, &request.key, profile)
            .map_err(|error| ExternalIpRefusal::InUse {
                address,
                error: Box::new(error),
            })?;
        Ok(pool)
    }

    /// The first pool (in allocation order) that contains `address`, allows external IPs and
    /// serves the request; else the most telling refusal.
    fn external_pool(
        &self,
        request: &ServiceRequest,
        address: IpAddr,
    ) -> Result<String, ExternalIpRefusal> {
        let mut refusal = None;
        for pool in self.pools_in_order().filter(|p| p.free.contains(address)) {
            if !pool.spec.allow_external_ips {
                refusal.get_or_insert(ExternalIpRefusal::NotAllowedByPool {
                    address,
                    pool: pool.spec.name.clone(),
                });
                continue;
            }
            match pool.spec.serves(request, true) {
                Ok(()) => return Ok(pool.spec.name.clone()),
                Err(reason) => {
                    // A refusal by an allowing pool says more than one by a non-allowing pool.
                    if !matches!(refusal, Some(ExternalIpRefusal::PoolNotUsable { .. })) {
                        refusal = Some(ExternalIpRefusal::PoolNotUsable {
                            address,
                            pool: pool.spec.name.clone(),
                            reason,
                        });
                    }
                }
            }
        }
        Err(refusal.unwrap_or(ExternalIpRefusal::NotInAnyPool(address)))
    }

    /// Pools in allocation order.
    fn pools_in_order(&self) -> impl Iterator<Item = &PoolState> {
        self.order.iter().filter_map(|name| self.pools.get(name))
    }

    /// The pool to book `address` against: `preferred` if it contains it, else the first in
    /// allocation order that does.
    fn first_pool_containing(&self, address: IpAddr, preferred: Option<&str>) -> Option<String> {
        preferred
            .and_then(|name| self.pools.get(name))
            .filter(|p| p.free.contains(address))
            .or_else(|| self.pools_in_order().find(|p| p.free.contains(address)))
            .map(|p| p.spec.name.clone())
    }
}

/// Why a Service with `ours` may not hold `address` next to `other` (with `theirs`), if so.
fn sharing_conflict(
    address: IpAddr,
    ours: &SharingProfile,
    other: &ServiceKey,
    theirs: &SharingProfile,
) -> Option<AllocationError> {
    let (Some(ours_key), Some(theirs_key)) = (&ours.key, &theirs.key) else {
        return Some(AllocationError::AddressInUse {
            address,
            by: other.clone(),
        });
    };
    let reason = if ours_key != theirs_key {
        SharingConflictReason::KeyMismatch {
            ours: ours_key.clone(),
            theirs: theirs_key.clone(),
        }
    } else if ours.traffic_policy != theirs.traffic_policy {
        SharingConflictReason::TrafficPolicyMismatch
    } else if ours.traffic_policy == TrafficPolicy::Local
        && ours.pod_selector != theirs.pod_selector
    {
        SharingConflictReason::PodSelectorMismatch
    } else if let Some(port) = ours.ports.intersection(&theirs.ports).next() {
        SharingConflictReason::PortClash(*port)
    } else {
        return None;
    };
    Some(AllocationError::SharingConflict {
        address,
        with: other.clone(),
        reason,
    })
}

/// Booked externalIPs as addresses with their pool.
fn booked_addresses(booked: &BTreeMap<IpAddr, String>) -> Vec<AssignedAddress> {
    booked
        .iter()
        .map(|(address, pool)| AssignedAddress {
            address: *address,
            pool: Some(pool.clone()),
        })
        .collect()
}

/// Whether a held address still fits the (possibly changed) request.
fn still_fits(
    assigned: &AssignedAddress,
    requested: Option<IpAddr>,
    pinned_now: Option<&str>,
    pinned_before: Option<&str>,
) -> bool {
    match (requested, pinned_now) {
        (Some(requested), _) => requested == assigned.address,
        // A newly pinned pool moves the Service into it; an unchanged pin never moves it
        // (even if the pool changed under it: that is reported by set_pools instead).
        (None, Some(pool)) if pinned_before != Some(pool) => assigned.pool.as_deref() == Some(pool),
        (None, _) => true,
    }
}

/// The error for a family no candidate pool could give.
fn family_error(pools: &[&PoolState], family: Family) -> AllocationError {
    let having: Vec<String> = pools
        .iter()
        .filter(|p| p.free.has_family(family))
        .map(|p| p.spec.name.clone())
        .collect();
    if having.is_empty() {
        AllocationError::FamilyUnavailable {
            family,
            pools: pools.iter().map(|p| p.spec.name.clone()).collect(),
        }
    } else {
        AllocationError::PoolExhausted {
            family,
            pools: having,
        }
    }
}

/// The families the request gets (primary first) and its requested address per family.
fn wanted_families(request: &ServiceRequest) -> Result<Wanted, InvalidRequest> {
    let mut requested: [Option<IpAddr>; 2] = [None, None];
    let mut requested_order = Vec::new();
    for &address in &request.requested_addresses {
        let family = Family::of(address);
        match requested[family.index()] {
            Some(first) if first != address => {
                return Err(InvalidRequest::TwoAddressesOfOneFamily {
                    family,
                    first,
                    second: address,
                });
            }
            Some(_) => {}
            None => {
                requested[family.index()] = Some(address);
                requested_order.push(family);
            }
        }
    }
    let mut listed: Vec<Family> = Vec::new();
    for &family in &request.ip_families {
        if listed.contains(&family) {
            return Err(InvalidRequest::DuplicateFamily(family));
        }
        listed.push(family);
    }
    if listed.is_empty() {
        listed = requested_order;
    }
    if listed.is_empty() {
        listed.push(Family::V4);
    }
    let families = match request.ip_family_policy {
        IpFamilyPolicy::SingleStack => listed[..1].to_vec(),
        IpFamilyPolicy::PreferDualStack => listed,
        IpFamilyPolicy::RequireDualStack => {
            let primary = listed[0];
            vec![primary, primary.other()]
        }
    };
    for address in requested.iter().flatten() {
        let family = Family::of(*address);
        if !families.contains(&family) {
            return Err(InvalidRequest::RequestedFamilyNotServed {
                address: *address,
                family,
                families,
            });
        }
    }
    Ok(Wanted {
        families,
        requested,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

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

mod assignment;
mod error;
mod external;
mod model;
mod node_addresses;

pub use error::{
    AllocationError, ExternalIpRefusal, ExternalIpVerdict, InvalidRequest, PoolChangeReport,
    RestoreProblem, SharingConflictReason,
};
pub use herald_model::{
    LabelSelector, Labels, Protocol, SelectorOperator, SelectorRequirement, ServiceKey,
    TrafficPolicy, UnknownOperator, UnknownValue,
};
pub use model::{
    AssignedAddress, Assignment, FamilyStats, IpFamilyPolicy, PoolRefusal, PoolSpec, PoolStats,
    ServicePort, ServiceRequest,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_crds::address::{Family, FreeAddresses, Overlap, find_overlaps};

use assignment::sharing_conflict;
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

    /// Overlapping entries among the current pools (for the pools' Overlapping condition).
    /// Overlaps never cause a duplicate: an address in use is taken out of every pool.
    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

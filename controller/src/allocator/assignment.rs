//! Giving Services their load-balancer addresses: [`Allocator::assign`] (requested
//! addresses, pinned pools, pool order, families, sharing) and [`Allocator::release`], with the
//! holding bookkeeping every capability uses ([`Allocator::hold`], [`Allocator::unhold`]) and
//! the sharing rule ([`sharing_conflict`]). Pure.

use super::*;

impl Allocator {
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
    pub(super) fn plan(
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
    pub(super) fn plan_requested(
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
    pub(super) fn usable_pinned_pool(
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
    pub(super) fn candidate_pools(
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
    pub(super) fn lowest_candidate(
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
    pub(super) fn check_sharing(
        &self,
        address: IpAddr,
        key: &ServiceKey,
        profile: &SharingProfile,
    ) -> Result<(), AllocationError> {
        self.check_sharing_with(address, key, profile, |_| true)
    }

    /// [`Allocator::check_sharing`] against the holders that hold it a way `counts`.
    pub(super) fn check_sharing_with(
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
    pub(super) fn hold(
        &mut self,
        address: IpAddr,
        key: &ServiceKey,
        way: Use,
        profile: &SharingProfile,
    ) {
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
    pub(super) fn unhold(&mut self, address: IpAddr, key: &ServiceKey, way: Use) {
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
    pub(super) fn release_load_balancer(&mut self, key: &ServiceKey) -> Option<Assignment> {
        let state = self.services.remove(key)?;
        for assigned in &state.addresses {
            self.unhold(assigned.address, key, Use::LoadBalancer);
        }
        Some(Assignment {
            addresses: state.addresses,
        })
    }
}

/// The families a request gets, and its requested address per family.
pub(super) struct Wanted {
    pub(super) families: Vec<Family>,
    pub(super) requested: [Option<IpAddr>; 2],
}
/// Why a Service with `ours` may not hold `address` next to `other` (with `theirs`), if so.
pub(super) fn sharing_conflict(
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

/// Whether a held address still fits the (possibly changed) request.
pub(super) fn still_fits(
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
pub(super) fn family_error(pools: &[&PoolState], family: Family) -> AllocationError {
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
pub(super) fn wanted_families(request: &ServiceRequest) -> Result<Wanted, InvalidRequest> {
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

//! `spec.externalIPs`: judging each entry against the pools that allow external IPs and
//! serve the Service, booking the accepted ones like assignments, re-judging them when the
//! pools change, and restoring the recorded bookings after a restart. Pure.

use super::*;

impl Allocator {
    /// After a pool change: every booked externalIP is judged again against the pools (not
    /// against other holders: those did not change). One no longer accepted is released and
    /// reported; one now accepted by another pool is booked against it.
    pub(super) fn rejudge_external_ips(&mut self) -> Vec<PoolChangeReport> {
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

    /// Gives back one booked externalIP of the Service.
    pub(super) fn unbook_external(&mut self, key: &ServiceKey, address: IpAddr) {
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

    pub(super) fn check_external_ip(
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
    pub(super) fn external_pool(
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
}

/// Booked externalIPs as addresses with their pool.
pub(super) fn booked_addresses(booked: &BTreeMap<IpAddr, String>) -> Vec<AssignedAddress> {
    booked
        .iter()
        .map(|(address, pool)| AssignedAddress {
            address: *address,
            pool: Some(pool.clone()),
        })
        .collect()
}

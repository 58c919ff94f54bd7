//! What the allocator reports: allocation errors, restore problems, pool-change reports and
//! externalIPs verdicts. Every message is written for the Event a person will read.

use std::fmt;
use std::net::IpAddr;

use herald_crds::address::Family;

use super::ServiceKey;
use super::model::{PoolRefusal, ServicePort};

/// Why a Service got no (new) addresses. The Service keeps whatever it held before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The request contradicts itself.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] InvalidRequest),
    /// `herald.dev/address-pool` names a pool that does not exist.
    #[error("pool {pool:?} does not exist")]
    UnknownPool {
        /// The pool named.
        pool: String,
    },
    /// The pool the Service asked for (or that holds its requested address) does not serve it.
    #[error("pool {pool:?} does not serve this Service: {reason}")]
    PoolNotUsable {
        /// The pool.
        pool: String,
        /// Why not.
        reason: PoolRefusal,
    },
    /// A requested address lies in no pool.
    #[error("requested address {address} is not in any pool")]
    NotInAnyPool {
        /// The address requested.
        address: IpAddr,
    },
    /// A requested address lies outside the pinned pool.
    #[error("requested address {address} is not in pool {pool:?}")]
    NotInPool {
        /// The address requested.
        address: IpAddr,
        /// The pool named by `herald.dev/address-pool`.
        pool: String,
    },
    /// A requested address is a node's own address (InternalIP / ExternalIP): speakers
    /// never announce it, so it is never given to a Service.
    #[error(
        "requested address {address} is the address of node {}; speakers never announce a node's own address, so it is not given to a Service",
        node_list(.nodes)
    )]
    NodeAddress {
        /// The address requested.
        address: IpAddr,
        /// The nodes that have it (sorted).
        nodes: Vec<String>,
    },
    /// The address is held by a Service that does not share (or this one does not).
    #[error("address {address} is already in use by {by}")]
    AddressInUse {
        /// The address.
        address: IpAddr,
        /// A Service holding it.
        by: ServiceKey,
    },
    /// Both Services share, but not with each other.
    #[error("address {address} cannot be shared with {with}: {reason}")]
    SharingConflict {
        /// The address.
        address: IpAddr,
        /// The Service it clashes with.
        with: ServiceKey,
        /// What clashes.
        reason: SharingConflictReason,
    },
    /// Every pool that serves the Service is full for this family.
    #[error("no free {family} address left in {}", pool_list(.pools))]
    PoolExhausted {
        /// The family.
        family: Family,
        /// The pools tried.
        pools: Vec<String>,
    },
    /// No pool that serves the Service has addresses of this family at all.
    #[error("no pool that serves this Service has {family} addresses (tried {})", pool_list(.pools))]
    FamilyUnavailable {
        /// The family.
        family: Family,
        /// The pools tried.
        pools: Vec<String>,
    },
    /// No pool serves the Service at all.
    #[error("{}", no_pool_message(.refusals))]
    NoEligiblePool {
        /// Each configured pool and why it does not serve the Service.
        refusals: Vec<(String, PoolRefusal)>,
    },
}

fn pool_list(pools: &[String]) -> String {
    match pools {
        [] => "no pool".to_owned(),
        [one] => format!("pool {one:?}"),
        many => format!(
            "pools {}",
            many.iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn no_pool_message(refusals: &[(String, PoolRefusal)]) -> String {
    if refusals.is_empty() {
        return "no address pool is configured".to_owned();
    }
    let reasons: Vec<String> = refusals
        .iter()
        .map(|(pool, reason)| format!("{pool:?}: {reason}"))
        .collect();
    format!("no pool serves this Service ({})", reasons.join("; "))
}

/// What keeps two Services with sharing keys from sharing an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharingConflictReason {
    /// The `herald.dev/allow-shared-ip` keys differ.
    #[error("sharing keys differ ({ours:?} here, {theirs:?} there)")]
    KeyMismatch {
        /// This Service's key.
        ours: String,
        /// The holder's key.
        theirs: String,
    },
    /// Both use the same port and protocol.
    #[error("both use port {0}")]
    PortClash(ServicePort),
    /// One is `Local`, the other `Cluster`.
    #[error("externalTrafficPolicy differs")]
    TrafficPolicyMismatch,
    /// Both are `Local` but select different pods.
    #[error("externalTrafficPolicy is Local and the pod selectors differ")]
    PodSelectorMismatch,
}

/// A request that contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// Two requested addresses of one family.
    #[error("two {family} addresses requested ({first} and {second}); at most one per family")]
    TwoAddressesOfOneFamily {
        /// The family.
        family: Family,
        /// The first address.
        first: IpAddr,
        /// The second address.
        second: IpAddr,
    },
    /// A family listed twice in `ipFamilies`.
    #[error("ipFamilies lists {0} twice")]
    DuplicateFamily(Family),
    /// A requested address of a family the Service does not use.
    #[error("requested address {address} is {family} but the Service's ipFamilies are {}", family_list(.families))]
    RequestedFamilyNotServed {
        /// The address.
        address: IpAddr,
        /// Its family.
        family: Family,
        /// The families the Service gets.
        families: Vec<Family>,
    },
}

fn family_list(families: &[Family]) -> String {
    let names: Vec<String> = families.iter().map(Family::to_string).collect();
    format!("[{}]", names.join(", "))
}

/// Something [`super::Allocator::restore`] could not take over as it was in the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreProblem {
    /// The address is in no pool now. It is kept (never moved) and booked against no pool.
    #[error("address {address} is not in any pool; it is kept but should be moved by hand")]
    OutsideEveryPool {
        /// The address.
        address: IpAddr,
    },
    /// Another Service already holds the address and may not share it: not taken over.
    #[error("address {address} was not restored: {error}")]
    Conflict {
        /// The address.
        address: IpAddr,
        /// Why.
        error: AllocationError,
    },
    /// The status held a second address of one family: not taken over.
    #[error("address {address} was not restored: another {family} address was restored first")]
    ExtraAddressOfFamily {
        /// The address.
        address: IpAddr,
        /// Its family.
        family: Family,
    },
}

/// A consequence of [`super::Allocator::set_pools`] for addresses already handed out. No
/// address ever changes; only its booking does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChangeReport {
    /// The address is in no pool any more. The Service keeps it; a person should act.
    AddressOutsideEveryPool {
        /// The Service holding it.
        service: ServiceKey,
        /// The address.
        address: IpAddr,
        /// The pool it was booked against.
        former_pool: Option<String>,
    },
    /// The address is now booked against another pool (its pool went away or no longer
    /// contains it, and another pool does), or an address outside every pool is in one again.
    AddressRebooked {
        /// The Service holding it.
        service: ServiceKey,
        /// The address.
        address: IpAddr,
        /// The new pool.
        pool: String,
        /// The previous pool, if any.
        former_pool: Option<String>,
    },
    /// Two pools had the same name; the later one was ignored.
    DuplicatePoolName {
        /// The name.
        name: String,
    },
    /// A booked `spec.externalIPs` entry is no longer accepted by the pools (none contains
    /// it, allows external IPs or serves the Service any more): it was released, and the
    /// Service's verdict is now this refusal.
    ExternalIpReleased {
        /// The Service that listed it.
        service: ServiceKey,
        /// The address.
        address: IpAddr,
        /// Why it is refused now.
        refusal: ExternalIpRefusal,
    },
}

impl fmt::Display for PoolChangeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolChangeReport::AddressOutsideEveryPool {
                service,
                address,
                former_pool,
            } => {
                write!(
                    f,
                    "{service} keeps {address}, which is no longer in any pool"
                )?;
                if let Some(pool) = former_pool {
                    write!(f, " (was in pool {pool:?})")?;
                }
                Ok(())
            }
            PoolChangeReport::AddressRebooked {
                service,
                address,
                pool,
                former_pool,
            } => match former_pool {
                Some(former) => write!(
                    f,
                    "{service}'s address {address} now belongs to pool {pool:?} (was {former:?})"
                ),
                None => write!(
                    f,
                    "{service}'s address {address} is in a pool again: {pool:?}"
                ),
            },
            PoolChangeReport::DuplicatePoolName { name } => {
                write!(f, "two pools are named {name:?}; the second is ignored")
            }
            PoolChangeReport::ExternalIpReleased {
                service,
                address,
                refusal,
            } => write!(
                f,
                "{service}'s externalIP {address} was released after a pool change: {refusal}"
            ),
        }
    }
}

/// Verdict on one `spec.externalIPs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIpVerdict {
    /// The address listed.
    pub address: IpAddr,
    /// `Ok(pool)` when it may be announced, else why not.
    pub result: Result<String, ExternalIpRefusal>,
}

/// Why an external IP will not be announced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalIpRefusal {
    /// The address is in no pool.
    #[error("{0} is not in any pool with allowExternalIPs")]
    NotInAnyPool(IpAddr),
    /// The address is only in pools without `allowExternalIPs: true`.
    #[error("{address} is in pool {pool:?}, which does not set allowExternalIPs")]
    NotAllowedByPool {
        /// The address.
        address: IpAddr,
        /// The first pool holding it.
        pool: String,
    },
    /// The allowing pool does not serve this Service.
    #[error("{address} is in pool {pool:?}, which does not serve this Service: {reason}")]
    PoolNotUsable {
        /// The address.
        address: IpAddr,
        /// The pool.
        pool: String,
        /// Why.
        reason: PoolRefusal,
    },
    /// Another Service that may not share it holds the address: as a load-balancer address
    /// (one recorded in status always wins), or as an externalIP it booked first.
    #[error("{address} is held by another Service: {error}")]
    InUse {
        /// The address.
        address: IpAddr,
        /// The sharing error.
        error: Box<AllocationError>,
    },
}

/// `a`, or `a, b` for the nodes having one address.
pub(crate) fn node_list(nodes: &[String]) -> String {
    nodes.join(", ")
}

//! The Service reconcile decision as a pure function: a `Service` snapshot (plus its
//! namespace's labels) and the allocator in, the actions out — the status to write
//! (`status.loadBalancer.ingress` with `ipMode: VIP`, Herald's conditions), the
//! `herald.dev/ip-allocated-from-pool` and [`ANNOTATION_EXTERNAL_IPS_BOOKED`] annotations,
//! Events, and the outcome for metrics and retries.
//!
//! `spec.externalIPs` of every Service this instance judges ([`judges_external_ips`]) are
//! booked in the allocator (before its load-balancer addresses are decided, so a new Service
//! is not given one of its own externalIPs as its load-balancer address), and the booked ones
//! are recorded in [`ANNOTATION_EXTERNAL_IPS_BOOKED`] so a restarted controller re-books
//! them before it judges new claims (see `state::ControllerState::restore`).
//!
//! No I/O: the kube edge (`reconciler`) performs the writes in the order the plan implies
//! (pool finalizers, then the annotation, then status, then Events). The clock is a
//! parameter. Unit-tested without an apiserver.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::allocator::{
    AllocationError, Allocator, AssignedAddress, Assignment, ExternalIpRefusal, ExternalIpVerdict,
    Labels, RestoreProblem, ServiceKey,
};
use crate::conditions::{self, DesiredCondition};
use crate::convert::{self, ClassFilter, ConvertedService};
use crate::service_view::{Observed, ServiceView};

/// Service condition: whether Herald gave the Service its load-balancer address(es).
pub const CONDITION_ADDRESS_ASSIGNED: &str = "herald.dev/AddressAssigned";
/// Service condition, present only while it is true: an address the Service holds is also a
/// node's own address (kept, never moved, but no speaker announces it).
pub const CONDITION_NODE_ADDRESS: &str = "herald.dev/NodeAddressConflict";
/// Event reason for a held address that is also a node's own address.
pub const REASON_NODE_ADDRESS: &str = "NodeAddressConflict";
/// Service condition: whether every `spec.externalIPs` entry may be announced.
pub const CONDITION_EXTERNAL_IPS: &str = "herald.dev/ExternalIPsAllowed";
/// Service annotation written by the controller: the `spec.externalIPs` entries booked for
/// the Service (comma separated, address order). Read back on start so that a rebuilt
/// allocator books exactly these before it judges any new claim; speakers announce only
/// these.
pub use herald_crds::names::ANNOTATION_EXTERNAL_IPS_BOOKED;
/// `status.loadBalancer.ingress[].ipMode` Herald writes: traffic arrives with the VIP as
/// its destination.
pub const IP_MODE_VIP: &str = "VIP";

/// Event severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something happened as it should.
    Normal,
    /// Something needs a person's attention.
    Warning,
}

/// An Event to publish about the object being reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Severity.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: &'static str,
    /// The message a person reads.
    pub message: String,
}

impl PlannedEvent {
    /// A Normal Event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        PlannedEvent {
            type_: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    /// A Warning Event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        PlannedEvent {
            type_: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// What to do with the `herald.dev/ip-allocated-from-pool` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationChange {
    /// Set it to this value.
    Set(String),
    /// Remove it.
    Remove,
}

/// The Service status Herald wants, when it differs from what the snapshot shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// `status.loadBalancer.ingress` addresses (each written with `ipMode: VIP`); empty
    /// removes the ingress list; `None` leaves it as it is (another implementation's).
    pub ingress: Option<Vec<IpAddr>>,
    /// The whole `status.conditions` list (other writers' conditions kept).
    pub conditions: Vec<Condition>,
}

/// How the reconcile went, for metrics and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Herald does not serve this Service and held nothing for it.
    NotServed,
    /// Herald stopped serving it and gave its addresses back.
    Released {
        /// What it held.
        addresses: Vec<IpAddr>,
    },
    /// The Service holds its addresses.
    Assigned {
        /// The assignment differs from before this reconcile.
        changed: bool,
    },
    /// The Service did not get (all) it asked for; retry with back-off.
    Failed {
        /// Short CamelCase reason (also the metric label).
        reason: &'static str,
        /// The assignment differs from before this reconcile (a restore took place).
        changed: bool,
    },
}

/// What a reconcile did to the Service's booked `spec.externalIPs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExternalIpsOutcome {
    /// The bookings differ from before this reconcile.
    pub changed: bool,
    /// A booking was given back (a Service waiting for that address may get it now).
    pub released: bool,
    /// An entry is refused because another Service holds its address: judge it again when
    /// addresses are released.
    pub waiting: bool,
}

/// Everything one Service reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// The Service.
    pub key: ServiceKey,
    /// Status to write, if it differs from the snapshot.
    pub status: Option<StatusChange>,
    /// `herald.dev/ip-allocated-from-pool` change, if any.
    pub annotation: Option<AnnotationChange>,
    /// [`ANNOTATION_EXTERNAL_IPS_BOOKED`] change, if any.
    pub external_annotation: Option<AnnotationChange>,
    /// Events to publish (rate-limited at the edge).
    pub events: Vec<PlannedEvent>,
    /// Pools the Service's addresses are booked against: they must carry the
    /// `herald.dev/pool-in-use` finalizer before the status is written.
    pub pools: Vec<String>,
    /// How it went.
    pub outcome: Outcome,
    /// What happened to its booked externalIPs.
    pub external_ips: ExternalIpsOutcome,
    /// Other Services whose externalIP bookings a restore of this one displaced (a
    /// load-balancer address recorded in status wins): reconcile them.
    pub displaced: Vec<ServiceKey>,
}

impl ServicePlan {
    /// Whether the allocator's bookings changed (pool status needs a refresh).
    pub fn changed_bookings(&self) -> bool {
        let load_balancer = match &self.outcome {
            Outcome::NotServed => false,
            Outcome::Released { .. } => true,
            Outcome::Assigned { changed } | Outcome::Failed { changed, .. } => *changed,
        };
        load_balancer || self.external_ips.changed || !self.displaced.is_empty()
    }
}

/// The short reason for an allocation error (condition reason and metric label).
pub fn error_reason(error: &AllocationError) -> &'static str {
    match error {
        AllocationError::InvalidRequest(_) => "InvalidRequest",
        AllocationError::UnknownPool { .. } => "UnknownPool",
        AllocationError::PoolNotUsable { .. } => "PoolNotUsable",
        AllocationError::NotInAnyPool { .. } => "NotInAnyPool",
        AllocationError::NotInPool { .. } => "NotInPool",
        AllocationError::NodeAddress { .. } => "NodeAddress",
        AllocationError::AddressInUse { .. } => "AddressInUse",
        AllocationError::SharingConflict { .. } => "SharingConflict",
        AllocationError::PoolExhausted { .. } => "PoolExhausted",
        AllocationError::FamilyUnavailable { .. } => "FamilyUnavailable",
        AllocationError::NoEligiblePool { .. } => "NoEligiblePool",
    }
}

/// Reason used when the Service's own fields cannot be read.
pub const REASON_INVALID_SERVICE: &str = "InvalidService";

/// What [`restore_service`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Restored {
    /// Events for what could not be taken over.
    pub events: Vec<PlannedEvent>,
    /// Other Services whose externalIP bookings gave way to the restored addresses.
    pub displaced: Vec<ServiceKey>,
}

/// Takes over the addresses a served Service's status lists, as they are (start-up restore,
/// and the first reconcile of a Service the allocator does not know). Does nothing when the
/// allocator already knows the Service or the status lists no address. An address recorded
/// in status wins over other Services' externalIP bookings it may not share with (they are
/// displaced and listed).
pub fn restore_service(allocator: &mut Allocator, view: &ServiceView<'_>) -> Restored {
    if allocator.assignment(&view.key).is_some() || view.status_addresses.is_empty() {
        return Restored::default();
    }
    // Fields that cannot be read are left at their defaults: an address already handed out
    // is taken over even when the Service's annotations became invalid since.
    let outcome = allocator.restore(
        &view.converted.request,
        &view.status_addresses,
        &view.allocated_from,
    );
    let events = outcome
        .problems
        .iter()
        .map(|problem| match problem {
            RestoreProblem::OutsideEveryPool { .. } => {
                PlannedEvent::warning("AddressOutsideEveryPool", problem.to_string())
            }
            RestoreProblem::Conflict { .. } | RestoreProblem::ExtraAddressOfFamily { .. } => {
                PlannedEvent::warning("RestoreConflict", problem.to_string())
            }
        })
        .collect();
    let mut displaced: Vec<ServiceKey> = outcome.displaced.into_iter().map(|(k, _)| k).collect();
    displaced.dedup();
    Restored { events, displaced }
}

/// Whether this instance judges (and books) the Service's `spec.externalIPs`: those of a
/// Service it serves, and — only in the instance that serves class-less Services, so that two
/// instances never disagree — those of a Service that is not a load balancer. Never those of
/// a Service being deleted.
pub fn judges_external_ips(service: &Service, filter: &ClassFilter) -> bool {
    if filter.serves(service) {
        return true;
    }
    let is_load_balancer = service
        .spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer"));
    service.metadata.deletion_timestamp.is_none() && !is_load_balancer && !filter.ignore_classless
}

/// The externalIPs the Service's [`ANNOTATION_EXTERNAL_IPS_BOOKED`] records as booked
/// (entries that are not addresses are skipped).
pub fn recorded_external_ips(service: &Service) -> Vec<IpAddr> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_EXTERNAL_IPS_BOOKED))
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect()
}

/// Books the Service's externalIPs (see [`Allocator::book_external_ips`]) and says what
/// changed against `before` (its bookings when the reconcile started).
fn book_external_ips(
    allocator: &mut Allocator,
    converted: &ConvertedService,
    before: &[AssignedAddress],
) -> (Vec<ExternalIpVerdict>, ExternalIpsOutcome) {
    let verdicts = allocator.book_external_ips(&converted.request);
    let outcome = external_ips_outcome(allocator, &converted.request.key, before, &verdicts);
    (verdicts, outcome)
}

fn external_ips_outcome(
    allocator: &Allocator,
    key: &ServiceKey,
    before: &[AssignedAddress],
    verdicts: &[ExternalIpVerdict],
) -> ExternalIpsOutcome {
    let after = allocator.external_ips(key);
    ExternalIpsOutcome {
        changed: before != after.as_slice(),
        released: before
            .iter()
            .any(|b| !after.iter().any(|a| a.address == b.address)),
        waiting: verdicts
            .iter()
            .any(|v| matches!(v.result, Err(ExternalIpRefusal::InUse { .. }))),
    }
}

/// Decides one Service, converting it first (see [`plan`]). `None` for a Service without a
/// namespace or name.
pub fn plan_service(
    allocator: &mut Allocator,
    service: &Service,
    namespace_labels: &Labels,
    filter: &ClassFilter,
    now: Timestamp,
) -> Option<ServicePlan> {
    ServiceView::new(service, namespace_labels, filter).map(|view| plan(allocator, &view, now))
}

/// Decides one Service from its view: see the module documentation.
pub fn plan(allocator: &mut Allocator, view: &ServiceView<'_>, now: Timestamp) -> ServicePlan {
    if !view.served {
        return plan_not_served(allocator, view, now);
    }
    let key = view.key.clone();
    let observed = &view.observed;
    let converted = &view.converted;
    let before = allocator.assignment(&key);
    let external_before = allocator.external_ips(&key);
    let Restored {
        mut events,
        displaced,
    } = restore_service(allocator, view);
    let generation = view.generation();
    // Booked first: a new Service is not given one of its own externalIPs as its address.
    // Unreadable fields cannot change the sharing profile (only annotations can be invalid
    // here: the apiserver validates the rest), so the entries that parse are booked anyway.
    let (verdicts, external_ips) = book_external_ips(allocator, converted, &external_before);

    let (assignment, failure, assigned_condition) = if !converted.errors.is_empty() {
        let message = join_errors(&converted.errors);
        events.push(PlannedEvent::warning(
            REASON_INVALID_SERVICE,
            message.clone(),
        ));
        let held = allocator.assignment(&key).unwrap_or_default();
        let condition = failure_condition(&held, REASON_INVALID_SERVICE, &message);
        (held, Some(REASON_INVALID_SERVICE), condition)
    } else {
        match allocator.assign(&converted.request) {
            Ok(assignment) => {
                let condition = success_condition(&assignment);
                (assignment, None, condition)
            }
            Err(error) => {
                let reason = error_reason(&error);
                let message = error.to_string();
                events.push(PlannedEvent::warning("AllocationFailed", message.clone()));
                let held = allocator.assignment(&key).unwrap_or_default();
                let condition = failure_condition(&held, reason, &message);
                (held, Some(reason), condition)
            }
        }
    };
    let changed = before != allocator.assignment(&key);

    for outside in assignment.addresses.iter().filter(|a| a.pool.is_none()) {
        events.push(PlannedEvent::warning(
            "AddressOutsideEveryPool",
            format!(
                "{} is not in any pool; it is kept (never moved) and needs a person's attention",
                outside.address
            ),
        ));
    }
    let ips = assignment.ips();
    if !ips.is_empty() && ips != observed.ingress_ips() {
        events.push(PlannedEvent::normal(
            "AddressAssigned",
            format!("assigned {}", describe(&assignment)),
        ));
    }

    let conds = conditions::upsert(&observed.conditions, &assigned_condition, generation, now);
    let conds = external_ip_conditions(converted, &verdicts, &conds, generation, now, &mut events);
    let conds = node_address_condition(
        &allocator.node_addresses_held(&key),
        &conds,
        generation,
        now,
        &mut events,
    );

    let annotation = annotation_change(observed, &assignment);
    let external_annotation = external_annotation_change(observed, &allocator.external_ips(&key));
    let status = status_change(observed, Some(ips), conds);
    let outcome = match failure {
        Some(reason) => Outcome::Failed { reason, changed },
        None => Outcome::Assigned { changed },
    };
    ServicePlan {
        key,
        status,
        annotation,
        external_annotation,
        events,
        pools: assignment.pools().into_iter().map(str::to_owned).collect(),
        outcome,
        external_ips,
        displaced,
    }
}

/// A Service this instance does not (or no longer) serve: give back what it held and clear
/// what it wrote; judge and book `spec.externalIPs` of Services that are not load balancers
/// (only the instance that serves class-less Services does, so two instances never disagree
/// on them, see [`judges_external_ips`]). A load balancer of another class that this instance
/// held nothing for is left alone: its status belongs to whoever serves that class.
fn plan_not_served(
    allocator: &mut Allocator,
    view: &ServiceView<'_>,
    now: Timestamp,
) -> ServicePlan {
    let key = view.key.clone();
    let observed = &view.observed;
    let external_before = allocator.external_ips(&key);
    let released = allocator.release(&key);
    let released_ips = released.as_ref().map(Assignment::ips).unwrap_or_default();
    let mut events = Vec::new();
    if !released_ips.is_empty() {
        events.push(PlannedEvent::normal(
            "AddressReleased",
            format!("released {}", join_ips(&released_ips)),
        ));
    }
    let outcome = match released {
        Some(_) => Outcome::Released {
            addresses: released_ips.clone(),
        },
        None => Outcome::NotServed,
    };
    let external_ips = external_ips_outcome(allocator, &key, &external_before, &[]);
    let mut plan = ServicePlan {
        key,
        status: None,
        annotation: None,
        external_annotation: None,
        events,
        pools: Vec::new(),
        outcome,
        external_ips,
        displaced: Vec::new(),
    };
    let held_nothing = released.is_none() && external_before.is_empty();
    if view.service.metadata.deletion_timestamp.is_some()
        || (view.is_load_balancer() && held_nothing)
    {
        // Going away, or another class's load balancer: nothing to write on it.
        return plan;
    }

    // Clear the ingress Herald wrote: the one it just released, or (after a restart, when
    // nothing was restored for a Service it no longer serves) one its annotation vouches for.
    let ours = observed.annotation.is_some();
    let ingress = observed.ingress_ips();
    let clear_ingress = !ingress.is_empty()
        && ((!released_ips.is_empty() && ingress == released_ips)
            || (released_ips.is_empty() && ours));
    let mut conds = conditions::remove(&observed.conditions, CONDITION_ADDRESS_ASSIGNED);
    conds = conditions::remove(&conds, CONDITION_NODE_ADDRESS);

    if view.judges_external_ips {
        let (verdicts, external_ips) =
            book_external_ips(allocator, &view.converted, &external_before);
        plan.external_ips = external_ips;
        conds = external_ip_conditions(
            &view.converted,
            &verdicts,
            &conds,
            view.generation(),
            now,
            &mut plan.events,
        );
    } else {
        // Another class's Service, or a plain Service left to the class-less instance.
        conds = conditions::remove(&conds, CONDITION_EXTERNAL_IPS);
    }
    plan.external_annotation =
        external_annotation_change(observed, &allocator.external_ips(&plan.key));
    plan.status = if clear_ingress {
        status_change(observed, Some(Vec::new()), conds)
    } else {
        // Not Herald's ingress (or none): only Herald's conditions may change.
        status_change(observed, None, conds)
    };
    plan.annotation = ours.then_some(AnnotationChange::Remove);
    plan
}

/// Upserts (with a Warning) or removes the node-address condition: `held` lists the Service's
/// addresses that are also nodes' own addresses.
fn node_address_condition(
    held: &[(IpAddr, Vec<String>)],
    existing: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
    events: &mut Vec<PlannedEvent>,
) -> Vec<Condition> {
    if held.is_empty() {
        return conditions::remove(existing, CONDITION_NODE_ADDRESS);
    }
    let message = held
        .iter()
        .map(|(address, nodes)| {
            format!(
                "{address} is also the address of node {}; it is kept (never moved) but will not be announced",
                nodes.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    events.push(PlannedEvent::warning(REASON_NODE_ADDRESS, message.clone()));
    let desired = DesiredCondition::new(CONDITION_NODE_ADDRESS, true, "NodeAddress", message);
    conditions::upsert(existing, &desired, generation, now)
}

/// Upserts or removes the externalIPs condition, with a Warning for refused entries.
fn external_ip_conditions(
    converted: &ConvertedService,
    verdicts: &[ExternalIpVerdict],
    existing: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
    events: &mut Vec<PlannedEvent>,
) -> Vec<Condition> {
    let unreadable: Vec<String> = converted
        .errors
        .iter()
        .filter(|e| matches!(e, convert::ServiceFieldError::BadExternalIp(_)))
        .map(ToString::to_string)
        .collect();
    if converted.request.external_ips.is_empty() && unreadable.is_empty() {
        return conditions::remove(existing, CONDITION_EXTERNAL_IPS);
    }
    let mut refusals: Vec<String> = verdicts
        .iter()
        .filter_map(|v| v.result.as_ref().err().map(ToString::to_string))
        .collect();
    refusals.extend(unreadable);
    let desired = if refusals.is_empty() {
        let allowed: Vec<String> = verdicts
            .iter()
            .map(|v| match &v.result {
                Ok(pool) => format!("{} (pool {pool})", v.address),
                Err(_) => v.address.to_string(),
            })
            .collect();
        DesiredCondition::new(
            CONDITION_EXTERNAL_IPS,
            true,
            "Allowed",
            format!("externalIPs may be announced: {}", allowed.join(", ")),
        )
    } else {
        let message = format!("externalIPs will not be announced: {}", refusals.join("; "));
        events.push(PlannedEvent::warning(
            "ExternalIPNotAllowed",
            message.clone(),
        ));
        DesiredCondition::new(CONDITION_EXTERNAL_IPS, false, "NotAllowed", message)
    };
    conditions::upsert(existing, &desired, generation, now)
}

fn success_condition(assignment: &Assignment) -> DesiredCondition {
    if assignment.addresses.iter().any(|a| a.pool.is_none()) {
        DesiredCondition::new(
            CONDITION_ADDRESS_ASSIGNED,
            true,
            "AddressOutsideEveryPool",
            format!(
                "{}; an address is no longer in any pool (kept, never moved)",
                describe(assignment)
            ),
        )
    } else {
        DesiredCondition::new(
            CONDITION_ADDRESS_ASSIGNED,
            true,
            "Assigned",
            describe(assignment),
        )
    }
}

fn failure_condition(held: &Assignment, reason: &str, message: &str) -> DesiredCondition {
    if held.is_empty() {
        DesiredCondition::new(CONDITION_ADDRESS_ASSIGNED, false, reason, message)
    } else {
        DesiredCondition::new(
            CONDITION_ADDRESS_ASSIGNED,
            true,
            reason,
            format!(
                "keeps {}; the change was refused: {message}",
                describe(held)
            ),
        )
    }
}

/// `192.0.2.1 (pool a), 2001:db8::1 (pool b)`.
fn describe(assignment: &Assignment) -> String {
    assignment
        .addresses
        .iter()
        .map(|a| match &a.pool {
            Some(pool) => format!("{} (pool {pool})", a.address),
            None => format!("{} (no pool)", a.address),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_errors(errors: &[convert::ServiceFieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn annotation_change(observed: &Observed, assignment: &Assignment) -> Option<AnnotationChange> {
    if assignment.is_empty() {
        return observed
            .annotation
            .as_ref()
            .map(|_| AnnotationChange::Remove);
    }
    let value = assignment.allocated_from().join(",");
    (observed.annotation.as_deref() != Some(value.as_str())).then_some(AnnotationChange::Set(value))
}

/// The [`ANNOTATION_EXTERNAL_IPS_BOOKED`] value for `booked`, when it differs from the
/// snapshot's (removed when nothing is booked).
fn external_annotation_change(
    observed: &Observed,
    booked: &[AssignedAddress],
) -> Option<AnnotationChange> {
    if booked.is_empty() {
        return observed
            .external_annotation
            .as_ref()
            .map(|_| AnnotationChange::Remove);
    }
    let value = booked
        .iter()
        .map(|b| b.address.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (observed.external_annotation.as_deref() != Some(value.as_str()))
        .then_some(AnnotationChange::Set(value))
}

fn status_change(
    observed: &Observed,
    ingress: Option<Vec<IpAddr>>,
    conditions: Vec<Condition>,
) -> Option<StatusChange> {
    let ingress_same = ingress.as_ref().is_none_or(|ingress| {
        observed.ingress.len() == ingress.len()
            && observed
                .ingress
                .iter()
                .zip(ingress)
                .all(|((ip, mode), want)| {
                    *ip == Some(*want) && mode.as_deref() == Some(IP_MODE_VIP)
                })
    });
    (!ingress_same || conditions != observed.conditions).then_some(StatusChange {
        ingress,
        conditions,
    })
}

#[cfg(test)]
mod tests;

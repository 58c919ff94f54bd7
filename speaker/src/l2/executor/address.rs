//! The state machine of one layer-2 address on this node.
//!
//! [`step`] is the one transition function: `(state, facts, now) -> (state, output)`. The
//! state ([`AddressState`]) is what this node does about the address ([`Phase`]) plus the
//! memory that outlives a phase (the last elected owner, a record taken away, the records last
//! seen, the record writes in flight). The facts ([`Facts`]) are the plan's entry, the shared
//! records, this node's interfaces and what its announcers do. The output ([`Step`]) says on
//! which interfaces to answer for the address, which record writes to send now and which
//! Event to publish. Pure: no clock, no I/O; the engine ([`super::engine`]) gathers the facts
//! and performs the output. The rules and why they exist: `docs/design/l2-ownership.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::decide::{
    AddressDecision, RecordWrite, Start, TakenAway, Verdict, decide_address, sees_at_least_half,
    taken_away,
};
use super::record::{Record, Records};
use crate::l2::interfaces::InterfaceInfo;
use crate::model::ServiceKey;
use crate::planner::L2Announcement;

/// What this node does about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Phase {
    /// No Service this node plans for uses the address (or it was never looked at).
    #[default]
    Unplanned,
    /// Another node is elected.
    OwnedElsewhere { owner: String },
    /// No node may announce it.
    NoEligibleNode,
    /// Elected, but the start-up hold keeps this node quiet.
    HeldAtStartup,
    /// Elected, but no interface of this node covers the address.
    NoInterface,
    /// Elected and answering on `interfaces`, its record not in place yet: only now may this
    /// node write its record over one naming another node. `how` is how it began (never
    /// [`Start::Continuing`]); `evented` the Services already told so by an Event.
    Acquiring {
        interfaces: BTreeSet<String>,
        how: Start,
        evented: BTreeSet<ServiceKey>,
    },
    /// Elected, announced, and its record in place (or not claimable: see
    /// [`sees_at_least_half`]).
    Owned { interfaces: BTreeSet<String> },
}

impl Phase {
    /// Whether this node answers for the address.
    pub fn is_ours(&self) -> bool {
        matches!(self, Phase::Acquiring { .. } | Phase::Owned { .. })
    }
}

/// A record write sent at some time, re-sent once it is older than the retry interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub record: Option<Record>,
    pub at: Instant,
}

/// Everything this node keeps about one address between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressState {
    pub phase: Phase,
    /// The owner elected last time: names the previous announcer before any record does.
    pub last_owner: Option<String>,
    /// Another node wrote its record while this node answered for the address.
    pub taken_away: Option<TakenAway>,
    /// The records of the address as last seen, per Service (to notice a taken-away record).
    pub seen: BTreeMap<ServiceKey, Record>,
    /// Record writes sent and not yet seen in place, per Service.
    pub requests: BTreeMap<ServiceKey, Request>,
}

impl AddressState {
    /// Nothing worth keeping: the entry can be dropped.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Unplanned && self.requests.is_empty() && self.taken_away.is_none()
    }
}

/// What [`step`] looks at for one address.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// This node's name.
    pub node: &'a str,
    pub address: IpAddr,
    /// The plan's entry for the address; `None` when no planned Service uses it.
    pub announcement: Option<&'a L2Announcement>,
    /// Every record.
    pub records: &'a Records,
    /// The records of this address, per Service (also Services not planned).
    pub recorded: &'a BTreeMap<ServiceKey, Record>,
    /// This node's interfaces.
    pub interfaces: &'a [InterfaceInfo],
    /// Interfaces whose announcer answers for the address now.
    pub answering_on: &'a BTreeSet<String>,
    /// An announcer reports the address announced (probing over, frames sent).
    pub announced: bool,
    /// The start-up hold is in effect.
    pub holding: bool,
    /// Nodes known to run a speaker, for [`sees_at_least_half`].
    pub known_speakers: &'a BTreeSet<String>,
    /// A record write not in place after this long is sent again.
    pub record_retry: Duration,
}

/// On which interfaces to answer for an address this node owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub interfaces: BTreeSet<String>,
    /// Interfaces new to the address on which it is announced without probing (a takeover).
    pub takeover_on: BTreeSet<String>,
    /// The record names an eligible node this node cannot see: give the address up rather
    /// than defend it when another MAC claims it (RFC 5227 §2.4 (a)).
    pub contested: bool,
}

/// A record write to send now; with `event`, also the Event saying this node announces the
/// address (and how it began).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Publish {
    pub write: RecordWrite,
    pub event: Option<Start>,
}

/// The result of one transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: AddressState,
    /// The election and verdict; `None` for an unplanned address.
    pub decision: Option<AddressDecision>,
    /// The verdict is news (log it).
    pub changed: bool,
    /// A record naming this node was just found overwritten by this node.
    pub taken_by: Option<String>,
    pub answer: Option<Answer>,
    /// Every record write the rules want now, sent or still in flight.
    pub record_writes: Vec<RecordWrite>,
    /// The writes to send now.
    pub sends: Vec<Publish>,
}

/// One transition of an address (see the module documentation).
pub fn step(state: &AddressState, facts: &Facts<'_>, now: Instant) -> Step {
    let Facts {
        node,
        address,
        announcement,
        recorded,
        holding,
        ..
    } = *facts;
    let mut next = AddressState {
        seen: recorded.clone(),
        ..AddressState::default()
    };

    // A record taken away: noticed while answering, forgotten once it no longer holds.
    let taken_by = announcement.and_then(|announcement| {
        taken_away(
            node,
            !facts.answering_on.is_empty(),
            announcement,
            &state.seen,
            recorded,
        )
    });
    next.taken_away = match &taken_by {
        Some(by) => Some(TakenAway::new(by.clone(), now)),
        None => state.taken_away.clone(),
    }
    .and_then(|taken| taken.still_holds(announcement, recorded, now));

    let mut out = Step {
        state: AddressState::default(),
        decision: None,
        changed: false,
        taken_by: taken_by.filter(|by| state.taken_away.as_ref().map(|t| &t.by) != Some(by)),
        answer: None,
        record_writes: Vec::new(),
        sends: Vec::new(),
    };

    if let Some(announcement) = announcement {
        let decision = decide_address(
            facts,
            announcement,
            state.last_owner.as_deref(),
            !facts.answering_on.is_empty(),
        );
        next.last_owner.clone_from(&decision.owner);
        if let Verdict::Announce { interfaces, start } = &decision.verdict {
            out.answer = Some(answer(facts, announcement, interfaces, start));
            if facts.announced {
                let acquiring = matches!(state.phase, Phase::Acquiring { .. });
                out.record_writes = claims(facts, announcement, interfaces, acquiring, &next);
            }
        }
        out.changed = verdict_changed(&state.phase, &decision.verdict);
        out.decision = Some(decision);
    }

    // Records naming this node that nobody needs any more (not while holding: the plan of a
    // speaker that just started is not to be trusted yet).
    if !holding {
        let someone_owns = out.decision.as_ref().is_some_and(|d| d.owner.is_some());
        for (service, record) in recorded {
            let still_used = announcement.is_some_and(|a| a.services.contains(service));
            if record.node == node && !(still_used && someone_owns) {
                out.record_writes.push(RecordWrite {
                    service: service.clone(),
                    address,
                    record: None,
                });
            }
        }
    }
    out.record_writes.sort();

    next.phase = match &out.decision {
        None => Phase::Unplanned,
        Some(decision) => next_phase(state, facts, decision, out.changed, &out.record_writes),
    };

    // Send what is not already in flight; the first record of an acquisition comes with an
    // Event, once per Service.
    for write in &out.record_writes {
        if let Some(request) = state.requests.get(&write.service)
            && request.record == write.record
            && now.saturating_duration_since(request.at) < facts.record_retry
        {
            next.requests.insert(write.service.clone(), request.clone());
            continue;
        }
        next.requests.insert(
            write.service.clone(),
            Request {
                record: write.record.clone(),
                at: now,
            },
        );
        let event = match (&write.record, &mut next.phase) {
            (Some(_), Phase::Acquiring { how, evented, .. }) => {
                evented.insert(write.service.clone()).then(|| how.clone())
            }
            _ => None,
        };
        out.sends.push(Publish {
            write: write.clone(),
            event,
        });
    }
    out.state = next;
    out
}

/// Where to answer, which interfaces take the address over, and whether it is contested.
fn answer(
    facts: &Facts<'_>,
    announcement: &L2Announcement,
    interfaces: &BTreeSet<String>,
    start: &Start,
) -> Answer {
    // Contested: the record names a node that may still announce the address and that this
    // node cannot see (eligible, not live here). A recorded node that is live but no longer
    // eligible gave the address up itself: its last frames are no reason to give way.
    let contested = announcement.services.iter().any(|service| {
        facts.recorded.get(service).is_some_and(|record| {
            record.node != facts.node
                && announcement.eligible.contains(&record.node)
                && !announcement.candidates.contains(&record.node)
        })
    });
    let probes = matches!(start, Start::FirstAnnouncement | Start::Resume);
    Answer {
        interfaces: interfaces.clone(),
        takeover_on: if probes {
            BTreeSet::new()
        } else {
            interfaces.difference(facts.answering_on).cloned().collect()
        },
        contested,
    }
}

/// The records this node claims for an announced address it owns: a missing one (with half
/// the eligible speakers in sight), its own when its interfaces changed, and one naming
/// another node only while acquiring, in sight, and not over a node that took it away.
fn claims(
    facts: &Facts<'_>,
    announcement: &L2Announcement,
    interfaces: &BTreeSet<String>,
    acquiring: bool,
    next: &AddressState,
) -> Vec<RecordWrite> {
    let ours = Record::new(facts.node, interfaces.iter().cloned());
    let in_sight = sees_at_least_half(announcement, facts.known_speakers);
    let taken_by = next.taken_away.as_ref().map(|taken| &taken.by);
    announcement
        .services
        .iter()
        .filter(|service| match facts.recorded.get(*service) {
            None => in_sight,
            Some(record) if *record == ours => false,
            Some(record) if record.node == facts.node => true,
            Some(record) => acquiring && in_sight && taken_by != Some(&record.node),
        })
        .map(|service| RecordWrite {
            service: service.clone(),
            address: facts.address,
            record: Some(ours.clone()),
        })
        .collect()
}

/// The phase a decision leads to. An acquisition lasts from its start until the address is
/// announced and no record write is needed any more.
fn next_phase(
    state: &AddressState,
    facts: &Facts<'_>,
    decision: &AddressDecision,
    changed: bool,
    writes: &[RecordWrite],
) -> Phase {
    match &decision.verdict {
        Verdict::OwnedElsewhere { owner } => Phase::OwnedElsewhere {
            owner: owner.clone(),
        },
        Verdict::NoEligibleNode => Phase::NoEligibleNode,
        Verdict::HeldAtStartup => Phase::HeldAtStartup,
        Verdict::NoInterface => Phase::NoInterface,
        Verdict::Announce { interfaces, start } => {
            let evented = match &state.phase {
                Phase::Acquiring { evented, .. } => evented.clone(),
                _ => BTreeSet::new(),
            };
            let acquisition = match &state.phase {
                _ if changed && *start != Start::Continuing => Some(start.clone()),
                Phase::Acquiring { how, .. } => Some(how.clone()),
                _ => None,
            };
            let in_place = facts.announced && writes.is_empty();
            match acquisition {
                Some(how) if !in_place => Phase::Acquiring {
                    interfaces: interfaces.clone(),
                    how,
                    evented,
                },
                _ => Phase::Owned {
                    interfaces: interfaces.clone(),
                },
            }
        }
    }
}

/// Whether a verdict is news after `phase`: an address that goes on being announced on the
/// same interfaces is not, nor one whose acquisition starts again the same way.
fn verdict_changed(phase: &Phase, verdict: &Verdict) -> bool {
    match (phase, verdict) {
        (Phase::OwnedElsewhere { owner: before }, Verdict::OwnedElsewhere { owner }) => {
            before != owner
        }
        (Phase::NoEligibleNode, Verdict::NoEligibleNode)
        | (Phase::HeldAtStartup, Verdict::HeldAtStartup)
        | (Phase::NoInterface, Verdict::NoInterface) => false,
        (
            Phase::Acquiring {
                interfaces: before,
                how,
                ..
            },
            Verdict::Announce { interfaces, start },
        ) if start == how => before != interfaces,
        (
            Phase::Acquiring {
                interfaces: before, ..
            }
            | Phase::Owned { interfaces: before },
            Verdict::Announce {
                interfaces,
                start: Start::Continuing,
            },
        ) => before != interfaces,
        _ => true,
    }
}

#[cfg(test)]
mod tests;

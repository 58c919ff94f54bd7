//! One pass of the layer-2 executor over every address, and the rules it applies. Pure.
//!
//! [`decide`] runs the state machine of [`super::address`] once per address (planned, recorded
//! or remembered) and gathers the result: the verdict per address, what each interface's
//! announcer must answer for, the record writes to send and the next states. The rules on
//! top of [`crate::l2::ownership::elect`] — takeover without probing, probe after a restart,
//! start-up hold, record after announcing, a record taken away stays taken, claim records only
//! with half the cluster in sight, give way against the record — are explained in
//! `docs/design/l2-ownership.md`. No I/O and no clock: time is a parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::address::{AddressState, Facts, Publish, step};
use super::record::{Record, Records};
use crate::l2::interfaces::{InterfaceInfo, announce_interfaces};
use crate::l2::ownership::{ElectionInput, ElectionReason, NodeFacts, TrafficPolicy, elect};
use crate::model::ServiceKey;
use crate::planner::{InterfaceSelection, L2Announcement};

/// Everything one pass looks at besides the per-address states.
#[derive(Debug, Clone, Copy)]
pub struct PassInput<'a> {
    /// This node's name.
    pub node: &'a str,
    /// The plan's layer-2 section.
    pub l2: &'a BTreeMap<IpAddr, L2Announcement>,
    /// The current-announcer records read from the Services.
    pub records: &'a Records,
    /// This node's interfaces.
    pub interfaces: &'a [InterfaceInfo],
    /// What each interface's announcer was last told to answer for.
    pub assigned: &'a BTreeMap<String, BTreeSet<IpAddr>>,
    /// Addresses an announcer reports as announced (probing over, frames sent).
    pub announced: &'a BTreeSet<IpAddr>,
    /// The start-up hold is in effect.
    pub holding: bool,
    /// Nodes known to run a speaker (see [`known_speakers`]), for [`sees_at_least_half`].
    pub known_speakers: &'a BTreeSet<String>,
    /// A record write not in place after this long is sent again.
    pub record_retry: Duration,
}

/// How this node starts announcing an address it owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Start {
    /// It already does.
    Continuing,
    /// Nobody announced it before: probe first (RFC 5227 §2.1 / RFC 4862 §5.4).
    FirstAnnouncement,
    /// Another node announced it and lost it: announce at once.
    TakeOver { from: String },
    /// The record names this node (it restarted): probe first, since another node may
    /// have taken over meanwhile (RFC 5227 §2.1).
    Resume,
}

/// What this node does about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This node announces it on these interfaces.
    Announce {
        interfaces: BTreeSet<String>,
        start: Start,
    },
    /// Another node announces it.
    OwnedElsewhere { owner: String },
    /// No node may announce it.
    NoEligibleNode,
    /// This node was elected but the start-up hold keeps it quiet for now.
    HeldAtStartup,
    /// This node was elected but has no interface for the address.
    NoInterface,
}

/// The decision about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDecision {
    /// The elected owner (also when held or without an interface here).
    pub owner: Option<String>,
    pub reason: ElectionReason,
    /// The node the records named.
    pub recorded: Option<String>,
    pub verdict: Verdict,
}

/// What one interface's announcer must answer for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceAssignment {
    pub wanted: BTreeSet<IpAddr>,
    /// New addresses in `wanted` to announce without probing.
    pub takeovers: BTreeSet<IpAddr>,
    /// Addresses in `wanted` whose record names another node: given up rather than defended
    /// when another MAC claims them.
    pub contested: BTreeSet<IpAddr>,
}

/// One record to write (`Some`) or remove (`None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordWrite {
    pub service: ServiceKey,
    pub address: IpAddr,
    pub record: Option<Record>,
}

/// The result of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub decisions: BTreeMap<IpAddr, AddressDecision>,
    /// Every interface that had or has addresses; an empty `wanted` releases them all.
    pub interfaces: BTreeMap<String, InterfaceAssignment>,
    /// Every record write the rules want (sent now or still in flight).
    pub record_writes: Vec<RecordWrite>,
    /// The record writes (and Events) to send now.
    pub sends: Vec<Publish>,
    /// Addresses whose verdict is news.
    pub changed: BTreeSet<IpAddr>,
    /// Addresses whose record another node just took, with that node.
    pub taken_away: BTreeMap<IpAddr, String>,
    /// The states to keep for the next pass.
    pub states: BTreeMap<IpAddr, AddressState>,
}

impl Pass {
    /// Addresses this node announces (or is about to).
    pub fn owned(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.decisions
            .iter()
            .filter(|(_, d)| matches!(d.verdict, Verdict::Announce { .. }))
            .map(|(address, _)| *address)
    }
}

/// Runs one pass: one [`step`] per address the plan, the records or the states name.
pub fn decide(
    input: &PassInput<'_>,
    states: &BTreeMap<IpAddr, AddressState>,
    now: Instant,
) -> Pass {
    let mut pass = Pass::default();
    let mut recorded: BTreeMap<IpAddr, BTreeMap<ServiceKey, Record>> = BTreeMap::new();
    for (service, address, record) in input.records.iter() {
        recorded
            .entry(address)
            .or_default()
            .insert(service.clone(), record.clone());
    }
    let mut answering: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for (name, addresses) in input.assigned {
        pass.interfaces.entry(name.clone()).or_default();
        for address in addresses {
            answering.entry(*address).or_default().insert(name.clone());
        }
    }
    let addresses: BTreeSet<IpAddr> = input
        .l2
        .keys()
        .chain(recorded.keys())
        .chain(states.keys())
        .copied()
        .collect();
    let (none_recorded, none_answering, fresh) =
        (BTreeMap::new(), BTreeSet::new(), AddressState::default());
    for address in addresses {
        let facts = Facts {
            node: input.node,
            address,
            announcement: input.l2.get(&address),
            records: input.records,
            recorded: recorded.get(&address).unwrap_or(&none_recorded),
            interfaces: input.interfaces,
            answering_on: answering.get(&address).unwrap_or(&none_answering),
            announced: input.announced.contains(&address),
            holding: input.holding,
            known_speakers: input.known_speakers,
            record_retry: input.record_retry,
        };
        let step = step(states.get(&address).unwrap_or(&fresh), &facts, now);
        if let Some(answer) = &step.answer {
            for name in &answer.interfaces {
                let assignment = pass.interfaces.entry(name.clone()).or_default();
                assignment.wanted.insert(address);
                if answer.contested {
                    assignment.contested.insert(address);
                }
                if answer.takeover_on.contains(name) {
                    assignment.takeovers.insert(address);
                }
            }
        }
        if step.changed {
            pass.changed.insert(address);
        }
        if let Some(by) = step.taken_by {
            pass.taken_away.insert(address, by);
        }
        if let Some(decision) = step.decision {
            pass.decisions.insert(address, decision);
        }
        pass.record_writes.extend(step.record_writes);
        pass.sends.extend(step.sends);
        if !step.state.is_idle() {
            pass.states.insert(address, step.state);
        }
    }
    pass.record_writes.sort();
    pass.sends.sort();
    pass
}

/// How long a record taken away is remembered while its writer stays live in this node's
/// view. The membership of a node cut off notices the others' death up to a few seconds
/// after their record reached the API server (its view is stale until then). A writer that
/// stays live this long was not seen through a stale view: it simply owns the address, and
/// a later death of it is an ordinary failover.
pub const TAKEN_AWAY_GRACE: Duration = Duration::from_secs(30);

/// A record another node wrote for an address while this node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenAway {
    /// The node the record names.
    pub by: String,
    /// When this node saw the record change.
    pub at: Instant,
    /// This node has since seen that node not live (cut off from it).
    pub seen_not_live: bool,
}

impl TakenAway {
    pub fn new(by: String, at: Instant) -> Self {
        TakenAway {
            by,
            at,
            seen_not_live: false,
        }
    }

    /// Whether this memory still holds at `now` (and how): the address is still planned
    /// with a record naming the writer, and the writer has neither come back in sight after
    /// having been seen not live (the partition healed) nor stayed live for
    /// [`TAKEN_AWAY_GRACE`] (this node's view was never stale).
    pub fn still_holds(
        self,
        announcement: Option<&L2Announcement>,
        recorded: &BTreeMap<ServiceKey, Record>,
        now: Instant,
    ) -> Option<TakenAway> {
        let announcement = announcement?;
        let named = announcement.services.iter().any(|service| {
            recorded
                .get(service)
                .is_some_and(|record| record.node == self.by)
        });
        let live = announcement.candidates.contains(&self.by);
        let healed = live && self.seen_not_live;
        let never_stale = live && now.saturating_duration_since(self.at) >= TAKEN_AWAY_GRACE;
        (named && !healed && !never_stale).then_some(TakenAway {
            seen_not_live: self.seen_not_live || !live,
            ..self
        })
    }
}

/// Whether this node sees (as live) at least half of the nodes eligible for the address. A
/// node that sees fewer is most likely the one cut off, not the survivor of a mass failure:
/// it may announce on its side, but it claims no record. Half (not a strict majority) so
/// that the survivor of a two-node cluster still records itself. Only nodes known to run a
/// speaker count (see [`known_speakers`]).
pub fn sees_at_least_half(
    announcement: &L2Announcement,
    known_speakers: &BTreeSet<String>,
) -> bool {
    let counted = announcement
        .eligible
        .iter()
        .filter(|node| known_speakers.contains(*node) || announcement.candidates.contains(*node))
        .count();
    announcement.candidates.len() * 2 >= counted
}

/// The nodes known to run a speaker: `seen_live` (every node membership showed live since
/// this speaker started) and every node a record of a planned address names. Records on
/// Services this node does not plan for (another class, another installation) say nothing.
/// A node the speaker DaemonSet does not run on can never be seen, and counting it would
/// keep a healthy majority from ever claiming a record.
pub fn known_speakers(
    seen_live: &BTreeSet<String>,
    records: &Records,
    l2: &BTreeMap<IpAddr, L2Announcement>,
) -> BTreeSet<String> {
    let mut known = seen_live.clone();
    known.extend(
        records
            .iter()
            .filter(|(service, address, _)| {
                l2.get(address)
                    .is_some_and(|announcement| announcement.services.contains(*service))
            })
            .map(|(_, _, record)| record.node.clone()),
    );
    known
}

/// The node that took an address from this node, if a records update did: while this node
/// answers for the address, a record of a planned Service changed (`before` → `after`) to
/// name another node. That node took the address over and reached the API server after this
/// node's ownership began, so it is alive, even if membership says otherwise.
pub fn taken_away(
    node: &str,
    answering: bool,
    announcement: &L2Announcement,
    before: &BTreeMap<ServiceKey, Record>,
    after: &BTreeMap<ServiceKey, Record>,
) -> Option<String> {
    if !answering {
        return None;
    }
    announcement.services.iter().rev().find_map(|service| {
        let new = after.get(service)?;
        (new.node != node && Some(new) != before.get(service)).then(|| new.node.clone())
    })
}

/// Elects the owner of one planned address and says what this node does about it.
/// `previously_assigned`: an announcer answers for it already; `last_owner`: the owner
/// elected last time.
pub(super) fn decide_address(
    facts: &Facts<'_>,
    announcement: &L2Announcement,
    last_owner: Option<&str>,
    previously_assigned: bool,
) -> AddressDecision {
    let Facts { node, address, .. } = *facts;
    // Every eligible node, live or not, goes through the ownership rules; liveness is the
    // only fact left for them to check, the planner having applied node selectors,
    // exclusion and the Local policy already. Other nodes' interfaces are not known here, so
    // the interface rule is applied to this node after the election (`NoInterface`).
    let nodes: Vec<NodeFacts> = announcement
        .eligible
        .union(&announcement.candidates)
        .map(|name| NodeFacts {
            name: name.clone(),
            matches_node_selectors: true,
            has_announce_interface: true,
            excluded_from_load_balancers: false,
            has_ready_endpoint: true,
        })
        .collect();
    let recorded =
        facts
            .records
            .current_announcer(address, &announcement.services, &announcement.candidates);
    let election = elect(&ElectionInput {
        address,
        policy: TrafficPolicy::Cluster,
        nodes: &nodes,
        live_speakers: &announcement.candidates,
        current_announcer: recorded,
    });
    let verdict = match election.owner.as_deref() {
        None => Verdict::NoEligibleNode,
        Some(owner) if owner != node => Verdict::OwnedElsewhere {
            owner: owner.to_owned(),
        },
        Some(_) if facts.holding && recorded != Some(node) => Verdict::HeldAtStartup,
        Some(_) => {
            let listed: Vec<String> = match &announcement.interfaces {
                Some(InterfaceSelection::Only(names)) => names.iter().cloned().collect(),
                Some(InterfaceSelection::Any) | None => Vec::new(),
            };
            let interfaces: BTreeSet<String> =
                announce_interfaces(address, facts.interfaces, &listed)
                    .into_iter()
                    .map(|interface| interface.name.clone())
                    .collect();
            if interfaces.is_empty() {
                Verdict::NoInterface
            } else {
                let start = if previously_assigned {
                    Start::Continuing
                } else if recorded == Some(node) {
                    Start::Resume
                } else if let Some(from) = recorded.or(last_owner).filter(|from| *from != node) {
                    Start::TakeOver {
                        from: from.to_owned(),
                    }
                } else {
                    Start::FirstAnnouncement
                };
                Verdict::Announce { interfaces, start }
            }
        }
    };
    AddressDecision {
        owner: election.owner,
        reason: election.reason,
        recorded: recorded.map(str::to_owned),
        verdict,
    }
}

#[cfg(test)]
pub(super) mod tests;

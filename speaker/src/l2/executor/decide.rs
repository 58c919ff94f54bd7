//! One pass of the layer-2 executor, as a pure function.
//!
//! Input: the plan's layer-2 section (per address: the Services, the live eligible
//! candidates, this node's interface selection), the shared current-announcer records, this
//! node's interfaces, and what this node did before (last elected owners, what each
//! interface was told, which addresses the announcers already announce). Output: the owner of
//! every address and why, the addresses each interface must answer for (and which of them are
//! takeovers that skip the probe), and the record writes. No I/O and no clock of its own
//! (time is a parameter where a rule needs it): the executor in [`super`] gathers the inputs
//! and performs the outputs.
//!
//! Rules, on top of [`crate::l2::ownership::elect`]:
//! - **Takeover without probing.** When this node becomes the owner of an address that some
//!   other node announced before (the record, or this node's memory of the last election,
//!   names it) — that node is dead or no longer eligible, or the election would have kept
//!   it — the address is announced at once. The RFC 5227 probe is kept for a *first*
//!   announcement only: nobody can answer it after a failover except a stale owner, and
//!   waiting for it is exactly the delay failover must not have.
//! - **A restarted owner probes.** A record naming this node itself (it restarted) is not
//!   trusted blindly: another node may have taken the address over while this one was down
//!   and not have written its record yet. Like any host starting to use an address again
//!   (RFC 5227 §2.1, RFC 4862 §5.4), it probes first; a live new owner answers the probe,
//!   this node announces nothing, and the new owner's record follows and keeps the address
//!   there. Traffic does not wait on this probe: the neighbour caches still point at this
//!   node, whose kernel forwards throughout.
//! - **Start-up hold.** A speaker that just started does not yet see its peers in membership,
//!   so its plan lists it as the only candidate. While the hold lasts it announces only
//!   addresses the records say are already its own, and writes no records.
//! - **Record after announcing.** The owner writes its record once its announcer reports the
//!   address as announced (after the gratuitous ARP / unsolicited NA went out), never before:
//!   failover never waits on the API server. It overwrites a record naming another node only
//!   while *acquiring* the address (from taking it until its record is in place). A node cut
//!   off from its peers keeps announcing on its side (it cannot know better) but does not
//!   fight the node that took over for the record, so that when the partition heals the
//!   record still names the node that took over, and stickiness keeps the address there. It removes records naming itself for addresses
//!   that nobody may announce any more or that their Service no longer uses; a record naming
//!   this node for an address another node now owns is left for the new owner to overwrite.
//! - **A record taken away stays taken.** If another node writes its record for an address
//!   while this node announces it, that node took the address over and could reach the API
//!   server afterwards: it is alive, and this node is the one cut off (its membership may
//!   yet call the other dead and elect itself again). This node then does not write its
//!   own record over that node's, even while acquiring, as long as it does not see that
//!   node live ([`taken_away`], [`still_taken_away`]). Without this, a node cut off from the
//!   LAN but not from the API server would win the record back and, once reconnected, take
//!   the address back. (The only clock-dependent rule, so its bookkeeping takes `now`.)
//! - **Claim records only with half the cluster in sight.** A node that sees fewer than half
//!   of the nodes eligible for an address and known to run a speaker
//!   ([`sees_at_least_half`], [`known_speakers`]) writes no record for it:
//!   cut off alone, it takes the others' addresses over on its side (it cannot tell a
//!   partition from their death) but leaves their records alone, so it holds them contested
//!   and gives way when it is reconnected. The survivor of a mass failure announces all the
//!   same; only the record keeps naming the dead, who take their addresses back on return.
//! - **Give way against the record.** An address this node announces while the record names
//!   another eligible node it does not see live is *contested*: this node holds it only
//!   because it cannot see that node
//!   (it took over and its own record is not written yet, or it is cut off from its peers
//!   and kept the address on its side). If another MAC then claims the address on the link,
//!   that claim is taken as the recorded node being alive there: the announcer gives the
//!   address up at once instead of defending it (RFC 5227 §2.4 (a) rather than (b)) and
//!   probes again later, which the live owner answers. So a node coming back from a
//!   partition, whose peers it does not yet see as live (their rejoin hold-down), does not
//!   pull the neighbour caches back to itself, and a node that took over on a false
//!   suspicion yields to the owner that is still there. Addresses backed by the record (or
//!   without one) are defended as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::record::{Record, Records};
use crate::l2::interfaces::{InterfaceInfo, announce_interfaces};
use crate::l2::ownership::{ElectionInput, ElectionReason, NodeFacts, TrafficPolicy, elect};
use crate::model::ServiceKey;
use crate::planner::{InterfaceSelection, L2Announcement};

/// Everything one pass looks at.
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
    /// The owner this node elected for each address in the previous pass.
    pub last_owners: &'a BTreeMap<IpAddr, String>,
    /// What each interface's announcer was last told to answer for.
    pub assigned: &'a BTreeMap<String, BTreeSet<IpAddr>>,
    /// Addresses an announcer reports as announced (probing over, frames sent).
    pub announced: &'a BTreeSet<IpAddr>,
    /// Addresses this node started announcing and whose record is not in place yet: only
    /// for these may it overwrite a record naming another node.
    pub acquiring: &'a BTreeSet<IpAddr>,
    /// Addresses whose record another node wrote while this node announced them (see
    /// [`taken_away`] and [`still_taken_away`]), with that node: this node does not write
    /// its record over that node's.
    pub lost_to: &'a BTreeMap<IpAddr, TakenAway>,
    /// The start-up hold is in effect.
    pub holding: bool,
    /// Nodes known to run a speaker (see [`known_speakers`]), for [`sees_at_least_half`].
    pub known_speakers: &'a BTreeSet<String>,
}

/// How this node starts announcing an address it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// when another MAC claims them (see the module documentation).
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
    pub record_writes: Vec<RecordWrite>,
    /// The elected owners, to pass back as `last_owners` next time.
    pub owners: BTreeMap<IpAddr, String>,
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

/// Runs one pass (see the module documentation for the rules).
pub fn decide(input: &PassInput<'_>) -> Pass {
    let mut pass = Pass::default();
    for name in input.assigned.keys() {
        pass.interfaces.entry(name.clone()).or_default();
    }
    let previously_assigned: BTreeSet<IpAddr> =
        input.assigned.values().flatten().copied().collect();

    for (&address, announcement) in input.l2 {
        let decision = decide_address(input, address, announcement, &previously_assigned);
        if let Some(owner) = &decision.owner {
            pass.owners.insert(address, owner.clone());
        }
        if let Verdict::Announce { interfaces, start } = &decision.verdict {
            // Contested: the record names a node that may still announce the address and
            // that this node cannot see (eligible, not live here). A recorded node that is
            // live but no longer eligible (its endpoint went away, it was excluded) gave the
            // address up itself: its last frames are no reason to give way.
            let recorded_elsewhere = announcement.services.iter().any(|service| {
                input.records.get(service, address).is_some_and(|record| {
                    record.node != input.node
                        && announcement.eligible.contains(&record.node)
                        && !announcement.candidates.contains(&record.node)
                })
            });
            for name in interfaces {
                let assignment = pass.interfaces.entry(name.clone()).or_default();
                assignment.wanted.insert(address);
                if recorded_elsewhere {
                    assignment.contested.insert(address);
                }
                let new_here = !input
                    .assigned
                    .get(name)
                    .is_some_and(|set| set.contains(&address));
                if new_here && !matches!(start, Start::FirstAnnouncement | Start::Resume) {
                    assignment.takeovers.insert(address);
                }
            }
            if input.announced.contains(&address) {
                let ours = Record::new(input.node, interfaces.iter().cloned());
                let acquiring = input.acquiring.contains(&address);
                let in_sight = sees_at_least_half(announcement, input.known_speakers);
                for service in &announcement.services {
                    let write = match input.records.get(service, address) {
                        None => in_sight,
                        Some(record) if *record == ours => false,
                        Some(record) if record.node == input.node => true,
                        Some(record) => {
                            acquiring
                                && in_sight
                                && input.lost_to.get(&address).map(|taken| &taken.by)
                                    != Some(&record.node)
                        }
                    };
                    if write {
                        pass.record_writes.push(RecordWrite {
                            service: service.clone(),
                            address,
                            record: Some(ours.clone()),
                        });
                    }
                }
            }
        }
        pass.decisions.insert(address, decision);
    }

    if !input.holding {
        for (service, address, record) in input.records.iter() {
            if record.node != input.node {
                continue;
            }
            let still_used = input
                .l2
                .get(&address)
                .is_some_and(|a| a.services.contains(service));
            let someone_owns = pass
                .decisions
                .get(&address)
                .is_some_and(|d| d.owner.is_some());
            if !still_used || !someone_owns {
                pass.record_writes.push(RecordWrite {
                    service: service.clone(),
                    address,
                    record: None,
                });
            }
        }
    }
    pass.record_writes.sort();
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
}

/// Which remembered [`TakenAway`]s still hold at `now`: those whose address is still
/// planned with a record naming the writer, except once the writer is live in this node's
/// view after having been seen not live (the partition healed), or has stayed live for
/// [`TAKEN_AWAY_GRACE`] (this node's view was never stale).
pub fn still_taken_away(
    remembered: &BTreeMap<IpAddr, TakenAway>,
    l2: &BTreeMap<IpAddr, L2Announcement>,
    records: &Records,
    now: Instant,
) -> BTreeMap<IpAddr, TakenAway> {
    let mut kept = BTreeMap::new();
    for (address, taken) in remembered {
        let Some(announcement) = l2.get(address) else {
            continue;
        };
        let recorded = announcement.services.iter().any(|service| {
            records
                .get(service, *address)
                .is_some_and(|record| record.node == taken.by)
        });
        let live = announcement.candidates.contains(&taken.by);
        let healed = live && taken.seen_not_live;
        let never_stale = live && now.saturating_duration_since(taken.at) >= TAKEN_AWAY_GRACE;
        if recorded && !healed && !never_stale {
            let mut taken = taken.clone();
            taken.seen_not_live |= !live;
            kept.insert(*address, taken);
        }
    }
    kept
}

/// Whether this node sees (as live) at least half of the nodes eligible for the address. A
/// node that sees fewer is most likely the one cut off, not the survivor of a mass failure:
/// it may announce on its side, but it claims no record. Half (not a strict majority) so
/// that the survivor of a two-node cluster still records itself.
///
/// Only nodes known to run a speaker count (`known_speakers`: seen live in membership since
/// this speaker started, or named by a record): a node the speaker DaemonSet does not run on
/// (a tainted control-plane node, a node outside its selector) can never be seen, and
/// counting it would keep a healthy majority from ever claiming a record.
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
/// this speaker started) and every node a record of a planned address names (it announced
/// that address, so it runs a speaker of this installation). Records on Services this node
/// does not plan for (another load-balancer class, another installation) say nothing.
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

/// The addresses a records update took away from this node: among the addresses it
/// announces (`announcing`), those whose record changed to name another node — that node
/// took the address over and reached the API server after this node's ownership began, so
/// it is alive, even if membership says otherwise (this node is the one cut off). Returns
/// address → that node.
pub fn taken_away(
    node: &str,
    announcing: &BTreeSet<IpAddr>,
    l2: &BTreeMap<IpAddr, L2Announcement>,
    before: Option<&Records>,
    after: &Records,
) -> BTreeMap<IpAddr, String> {
    let mut lost = BTreeMap::new();
    for address in announcing {
        let Some(announcement) = l2.get(address) else {
            continue;
        };
        for service in &announcement.services {
            let old = before.and_then(|records| records.get(service, *address));
            let new = after.get(service, *address);
            if let Some(new) = new
                && new.node != node
                && Some(new) != old
            {
                lost.insert(*address, new.node.clone());
            }
        }
    }
    lost
}

fn decide_address(
    input: &PassInput<'_>,
    address: IpAddr,
    announcement: &L2Announcement,
    previously_assigned: &BTreeSet<IpAddr>,
) -> AddressDecision {
    // The planner already applied every eligibility rule and liveness: its candidates are
    // exactly the eligible nodes.
    let nodes: Vec<NodeFacts> = announcement
        .candidates
        .iter()
        .map(|name| NodeFacts {
            name: name.clone(),
            matches_node_selectors: true,
            has_announce_interface: true,
            excluded_from_load_balancers: false,
            has_ready_endpoint: true,
        })
        .collect();
    let recorded =
        input
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
        Some(owner) if owner != input.node => Verdict::OwnedElsewhere {
            owner: owner.to_owned(),
        },
        Some(_) if input.holding && recorded != Some(input.node) => Verdict::HeldAtStartup,
        Some(_) => {
            let listed: Vec<String> = match &announcement.interfaces {
                Some(InterfaceSelection::Only(names)) => names.iter().cloned().collect(),
                Some(InterfaceSelection::Any) | None => Vec::new(),
            };
            let interfaces: BTreeSet<String> =
                announce_interfaces(address, input.interfaces, &listed)
                    .into_iter()
                    .map(|interface| interface.name.clone())
                    .collect();
            if interfaces.is_empty() {
                Verdict::NoInterface
            } else {
                let start = if previously_assigned.contains(&address) {
                    Start::Continuing
                } else if recorded == Some(input.node) {
                    Start::Resume
                } else if let Some(from) = recorded
                    .or(input.last_owners.get(&address).map(String::as_str))
                    .filter(|from| *from != input.node)
                {
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
mod tests {
    use super::*;
    use crate::l2::frames::MacAddr;
    use crate::l2::ownership::rendezvous_ranking;

    const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

    fn vip() -> IpAddr {
        IpAddr::from([192, 0, 2, 130])
    }

    fn web() -> ServiceKey {
        ServiceKey::new("lab", "web")
    }

    fn eth(name: &str, networks: &[&str]) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index: 2,
            mac: Some(MacAddr([2, 0, 0x5e, 0, 0x53, 1])),
            up: true,
            loopback: false,
            networks: networks.iter().filter_map(|n| n.parse().ok()).collect(),
        }
    }

    fn lan() -> Vec<InterfaceInfo> {
        vec![eth("eth0", &["192.0.2.11/24", "2001:db8:1::11/64"])]
    }

    fn announcement(candidates: &[&str], services: &[ServiceKey]) -> L2Announcement {
        L2Announcement {
            services: services.iter().cloned().collect(),
            candidates: candidates.iter().map(|s| (*s).to_owned()).collect(),
            eligible: NODES.iter().map(|s| (*s).to_owned()).collect(),
            interfaces: Some(InterfaceSelection::Any),
        }
    }

    /// The nodes in failover order for the test address.
    fn ranking() -> Vec<&'static str> {
        rendezvous_ranking(vip(), NODES)
    }

    /// The state one node carries between passes, and a way to run passes on it.
    struct Node {
        name: &'static str,
        interfaces: Vec<InterfaceInfo>,
        last_owners: BTreeMap<IpAddr, String>,
        assigned: BTreeMap<String, BTreeSet<IpAddr>>,
        announced: BTreeSet<IpAddr>,
        acquiring: BTreeSet<IpAddr>,
        lost_to: BTreeMap<IpAddr, TakenAway>,
        seen_live: BTreeSet<String>,
        now: Instant,
        holding: bool,
    }

    impl Node {
        fn new(name: &'static str) -> Self {
            Node {
                name,
                interfaces: lan(),
                last_owners: BTreeMap::new(),
                assigned: BTreeMap::new(),
                announced: BTreeSet::new(),
                acquiring: BTreeSet::new(),
                lost_to: BTreeMap::new(),
                seen_live: BTreeSet::new(),
                now: Instant::now(),
                holding: false,
            }
        }

        /// Runs a pass and remembers its result the way the executor does; the announcer
        /// is taken to report every wanted address as announced right after.
        fn pass(&mut self, l2: &BTreeMap<IpAddr, L2Announcement>, records: &Records) -> Pass {
            self.seen_live
                .extend(l2.values().flat_map(|a| a.candidates.iter().cloned()));
            let known = known_speakers(&self.seen_live, records, l2);
            let pass = decide(&PassInput {
                node: self.name,
                l2,
                records,
                interfaces: &self.interfaces,
                last_owners: &self.last_owners,
                assigned: &self.assigned,
                announced: &self.announced,
                acquiring: &self.acquiring,
                lost_to: &self.lost_to,
                holding: self.holding,
                known_speakers: &known,
            });
            self.lost_to = still_taken_away(&self.lost_to, l2, records, self.now);
            self.acquiring = pass
                .decisions
                .iter()
                .filter(|(_, d)| {
                    matches!(&d.verdict, Verdict::Announce { start, .. } if *start != Start::Continuing)
                })
                .map(|(address, _)| *address)
                .collect();
            self.last_owners = pass.owners.clone();
            self.assigned = pass
                .interfaces
                .iter()
                .filter(|(_, a)| !a.wanted.is_empty())
                .map(|(name, a)| (name.clone(), a.wanted.clone()))
                .collect();
            self.announced = self.assigned.values().flatten().copied().collect();
            pass
        }
    }

    fn l2_of(candidates: &[&str]) -> BTreeMap<IpAddr, L2Announcement> {
        [(vip(), announcement(candidates, &[web()]))].into()
    }

    fn record_on_web(node: &str) -> Records {
        let mut records = Records::default();
        records.insert(web(), vip(), Record::new(node, ["eth0".to_owned()]));
        records
    }

    #[test]
    fn the_top_ranked_node_probes_before_its_first_announcement_and_records_itself_only_after() {
        let mut node = Node::new(ranking()[0]);
        let l2 = l2_of(&NODES);
        let first = node.pass(&l2, &Records::default());
        assert_eq!(
            first.decisions[&vip()].verdict,
            Verdict::Announce {
                interfaces: ["eth0".to_owned()].into(),
                start: Start::FirstAnnouncement,
            }
        );
        let eth0 = &first.interfaces["eth0"];
        assert_eq!(eth0.wanted, [vip()].into());
        assert!(eth0.takeovers.is_empty(), "a first announcement probes");
        assert!(
            first.record_writes.is_empty(),
            "no record before the announcer says the address is announced"
        );
        // The announcer reports the address announced: now the record is written.
        let second = node.pass(&l2, &Records::default());
        assert_eq!(
            second.record_writes,
            vec![RecordWrite {
                service: web(),
                address: vip(),
                record: Some(Record::new(node.name, ["eth0".to_owned()])),
            }]
        );
        assert_eq!(
            second.decisions[&vip()].verdict,
            Verdict::Announce {
                interfaces: ["eth0".to_owned()].into(),
                start: Start::Continuing,
            }
        );
        // Once the record is there, nothing more is written.
        assert!(
            node.pass(&l2, &record_on_web(node.name))
                .record_writes
                .is_empty()
        );
    }

    #[test]
    fn the_other_nodes_leave_the_address_to_the_elected_owner() {
        let owner = ranking()[0];
        for name in &ranking()[1..] {
            let mut node = Node::new(name);
            let pass = node.pass(&l2_of(&NODES), &Records::default());
            assert_eq!(
                pass.decisions[&vip()].verdict,
                Verdict::OwnedElsewhere {
                    owner: owner.to_owned()
                }
            );
            assert!(pass.interfaces.is_empty());
            assert!(pass.record_writes.is_empty());
        }
    }

    #[test]
    fn when_the_recorded_owner_dies_the_next_ranked_node_takes_over_without_probing() {
        let [dead, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(next);
        let records = record_on_web(dead);
        node.pass(&l2_of(&NODES), &records);
        assert!(node.assigned.is_empty(), "the owner is alive: not ours");
        let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != dead).collect();
        let failover = node.pass(&l2_of(&survivors), &records);
        assert_eq!(
            failover.decisions[&vip()].verdict,
            Verdict::Announce {
                interfaces: ["eth0".to_owned()].into(),
                start: Start::TakeOver {
                    from: dead.to_owned()
                },
            }
        );
        assert_eq!(failover.interfaces["eth0"].takeovers, [vip()].into());
        let after = node.pass(&l2_of(&survivors), &records);
        assert_eq!(
            after.record_writes,
            vec![RecordWrite {
                service: web(),
                address: vip(),
                record: Some(Record::new(next, ["eth0".to_owned()])),
            }]
        );
    }

    #[test]
    fn a_node_cut_off_from_its_peers_keeps_announcing_but_does_not_fight_over_the_record() {
        let [owner, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(owner);
        node.pass(&l2_of(&NODES), &Records::default());
        node.pass(&l2_of(&NODES), &Records::default());
        // Its link is down: it sees only itself, and the node that took over recorded itself.
        let taken = record_on_web(next);
        let cut_off = node.pass(&l2_of(&[owner]), &taken);
        assert!(matches!(
            cut_off.decisions[&vip()].verdict,
            Verdict::Announce {
                start: Start::Continuing,
                ..
            }
        ));
        assert!(
            cut_off.record_writes.is_empty(),
            "{:?}",
            cut_off.record_writes
        );
        // Healed: the record keeps the address where it went.
        let healed = node.pass(&l2_of(&NODES), &taken);
        assert_eq!(
            healed.decisions[&vip()].verdict,
            Verdict::OwnedElsewhere {
                owner: next.to_owned()
            }
        );
        assert!(healed.interfaces["eth0"].wanted.is_empty());
    }

    #[test]
    fn an_address_held_against_the_record_is_contested_and_one_backed_by_it_is_not() {
        let [owner, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        // The first owner, with no record yet and then with its own: defended.
        let mut node = Node::new(owner);
        let first = node.pass(&l2_of(&NODES), &Records::default());
        assert!(first.interfaces["eth0"].contested.is_empty());
        let recorded = node.pass(&l2_of(&NODES), &record_on_web(owner));
        assert!(recorded.interfaces["eth0"].contested.is_empty());
        // Cut off while the node that took over recorded itself: kept, but contested.
        let cut_off = node.pass(&l2_of(&[owner]), &record_on_web(next));
        assert_eq!(cut_off.interfaces["eth0"].wanted, [vip()].into());
        assert_eq!(cut_off.interfaces["eth0"].contested, [vip()].into());

        // The node taking over is contested until its own record is in place.
        let mut taker = Node::new(next);
        let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
        taker.pass(&l2_of(&NODES), &record_on_web(owner));
        let failover = taker.pass(&l2_of(&survivors), &record_on_web(owner));
        assert_eq!(failover.interfaces["eth0"].takeovers, [vip()].into());
        assert_eq!(failover.interfaces["eth0"].contested, [vip()].into());
        let written = taker.pass(&l2_of(&survivors), &record_on_web(next));
        assert!(written.interfaces["eth0"].contested.is_empty());
    }

    #[test]
    fn a_node_cut_off_whose_record_was_taken_over_announces_on_its_side_but_never_writes_it_back() {
        let [owner, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(owner);
        let mine = record_on_web(owner);
        node.pass(&l2_of(&NODES), &mine);
        // The node that took over writes its record while this one still announces.
        let taken = record_on_web(next);
        let lost = taken_away(owner, &node.announced, &l2_of(&NODES), Some(&mine), &taken);
        assert_eq!(lost, [(vip(), next.to_owned())].into());
        node.lost_to.extend(
            lost.into_iter()
                .map(|(address, by)| (address, TakenAway::new(by, node.now))),
        );
        // Its membership has not noticed yet: the record gives the address to `next`...
        let released = node.pass(&l2_of(&NODES), &taken);
        assert!(matches!(
            released.decisions[&vip()].verdict,
            Verdict::OwnedElsewhere { .. }
        ));
        // ...then it calls everyone dead and takes the address over on its side, without
        // writing its record over the live owner's.
        let alone = node.pass(&l2_of(&[owner]), &taken);
        assert!(matches!(
            alone.decisions[&vip()].verdict,
            Verdict::Announce {
                start: Start::TakeOver { .. },
                ..
            }
        ));
        assert_eq!(alone.interfaces["eth0"].contested, [vip()].into());
        // Still cut off long after: the memory holds while `next` is not live.
        node.now += TAKEN_AWAY_GRACE * 2;
        let later = node.pass(&l2_of(&[owner]), &taken);
        assert!(later.record_writes.is_empty(), "{:?}", later.record_writes);
        assert_eq!(node.lost_to.len(), 1);
        // Healed: `next` is live again, the address stays there, and the memory is dropped.
        let healed = node.pass(&l2_of(&NODES), &taken);
        assert!(matches!(
            healed.decisions[&vip()].verdict,
            Verdict::OwnedElsewhere { .. }
        ));
        assert!(node.lost_to.is_empty());
    }

    #[test]
    fn a_record_taken_away_is_forgotten_when_its_writer_comes_back_or_was_never_out_of_sight() {
        let [me, other, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let t0 = Instant::now();
        let remembered: BTreeMap<IpAddr, TakenAway> =
            [(vip(), TakenAway::new(other.to_owned(), t0))].into();
        let theirs = record_on_web(other);
        let live = l2_of(&NODES);
        let cut_off = l2_of(&[me]);
        // Live all along: kept for the grace (this node's view may be stale), then dropped, so
        // that a later death of the writer is an ordinary failover with a record write.
        let young = still_taken_away(&remembered, &live, &theirs, t0 + TAKEN_AWAY_GRACE / 2);
        assert_eq!(young.len(), 1);
        assert!(still_taken_away(&remembered, &live, &theirs, t0 + TAKEN_AWAY_GRACE).is_empty());
        // Out of sight: kept however long; back in sight: dropped at once.
        let out = still_taken_away(&remembered, &cut_off, &theirs, t0 + TAKEN_AWAY_GRACE * 4);
        assert!(out[&vip()].seen_not_live);
        let back = still_taken_away(&out, &live, &theirs, t0 + Duration::from_millis(1));
        assert!(back.is_empty());
        // Gone from the plan, or the record names someone else: dropped at once.
        assert!(still_taken_away(&remembered, &BTreeMap::new(), &theirs, t0).is_empty());
        assert!(still_taken_away(&remembered, &live, &record_on_web(me), t0).is_empty());
    }

    #[test]
    fn only_a_record_change_to_another_node_on_an_announced_address_counts_as_taken_away() {
        let [me, other, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let l2 = l2_of(&NODES);
        let announcing: BTreeSet<IpAddr> = [vip()].into();
        // Unchanged, or naming this node: nothing taken.
        let theirs = record_on_web(other);
        assert!(taken_away(me, &announcing, &l2, Some(&theirs), &theirs).is_empty());
        assert!(taken_away(me, &announcing, &l2, Some(&theirs), &record_on_web(me)).is_empty());
        // Not announced here: nothing taken.
        assert!(
            taken_away(me, &BTreeSet::new(), &l2, Some(&record_on_web(me)), &theirs).is_empty()
        );
        // A takeover this node is performing (the old record names the dead owner) is not a
        // loss either; a new record naming someone else is.
        assert_eq!(
            taken_away(me, &announcing, &l2, Some(&record_on_web(me)), &theirs),
            [(vip(), other.to_owned())].into()
        );
    }

    #[test]
    fn a_node_seeing_fewer_than_half_of_the_eligible_nodes_announces_on_its_side_but_claims_no_record()
     {
        let [owner, next, third] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        // `third` owns nothing here; cut off alone, it takes every address on its side...
        let mut node = Node::new(third);
        let records = record_on_web(owner);
        node.pass(&l2_of(&NODES), &records);
        let alone = node.pass(&l2_of(&[third]), &records);
        assert!(matches!(
            alone.decisions[&vip()].verdict,
            Verdict::Announce {
                start: Start::TakeOver { .. },
                ..
            }
        ));
        assert_eq!(alone.interfaces["eth0"].contested, [vip()].into());
        // ...but does not write its record over the owner's, nor a first one.
        let later = node.pass(&l2_of(&[third]), &records);
        assert!(later.record_writes.is_empty(), "{:?}", later.record_writes);
        let unrecorded = node.pass(&l2_of(&[third]), &Records::default());
        assert!(unrecorded.record_writes.is_empty());
        // With half or more in sight it does.
        let mut survivor = Node::new(next);
        survivor.pass(&l2_of(&NODES), &records);
        let two = [next, third];
        survivor.pass(&l2_of(&two), &records);
        let written = survivor.pass(&l2_of(&two), &records);
        assert_eq!(written.record_writes.len(), 1);
    }

    #[test]
    fn an_address_taken_from_a_node_that_is_no_longer_eligible_is_not_contested() {
        let [owner, next, third] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let records = record_on_web(owner);
        let mut node = Node::new(next);
        node.pass(&l2_of(&NODES), &records);
        // The owner lost its endpoint (Local): live, but no longer eligible. It releases the
        // address itself, so its last frames are no reason for `next` to give way.
        let mut without_owner = announcement(&[next, third], &[web()]);
        without_owner.eligible = [next.to_owned(), third.to_owned()].into();
        let taken = node.pass(&[(vip(), without_owner)].into(), &records);
        assert_eq!(taken.interfaces["eth0"].takeovers, [vip()].into());
        assert!(taken.interfaces["eth0"].contested.is_empty());
        // Dead (eligible, not live) it would be contested.
        let mut node = Node::new(next);
        node.pass(&l2_of(&NODES), &records);
        let taken = node.pass(&l2_of(&[next, third]), &records);
        assert_eq!(taken.interfaces["eth0"].contested, [vip()].into());
    }

    #[test]
    fn nodes_that_never_ran_a_speaker_do_not_keep_a_healthy_cluster_from_recording() {
        let owner = ranking()[0];
        // Four more eligible nodes the speaker DaemonSet does not run on (never seen live,
        // named by no record): 3 of 7 would be fewer than half.
        let l2 = || -> BTreeMap<IpAddr, L2Announcement> {
            let mut announcement = announcement(&NODES, &[web()]);
            announcement
                .eligible
                .extend(["cp-1", "cp-2", "cp-3", "cp-4"].map(str::to_owned));
            [(vip(), announcement)].into()
        };
        let mut node = Node::new(owner);
        node.pass(&l2(), &Records::default());
        let written = node.pass(&l2(), &Records::default());
        assert_eq!(
            written.record_writes,
            vec![RecordWrite {
                service: web(),
                address: vip(),
                record: Some(Record::new(owner, ["eth0".to_owned()])),
            }]
        );
    }

    #[test]
    fn known_speakers_are_those_seen_live_and_those_named_by_a_record() {
        let seen: BTreeSet<String> = ["node-a".to_owned()].into();
        let known = known_speakers(&seen, &record_on_web("node-c"), &l2_of(&["node-a"]));
        assert_eq!(known, ["node-a".to_owned(), "node-c".to_owned()].into());
        // Records of Services this node does not plan for (another class, another
        // installation) name nodes that say nothing about this cluster.
        let unplanned = known_speakers(&seen, &record_on_web("node-c"), &BTreeMap::new());
        assert_eq!(unplanned, seen);
        // A cut-off node that saw its peers before keeps counting them.
        let mut announcement = announcement(&["node-a"], &[web()]);
        assert!(!sees_at_least_half(
            &announcement,
            &NODES.map(str::to_owned).into()
        ));
        announcement.candidates.insert("node-b".to_owned());
        assert!(sees_at_least_half(
            &announcement,
            &NODES.map(str::to_owned).into()
        ));
    }

    #[test]
    fn the_survivor_of_a_two_node_cluster_still_records_itself() {
        let [dead, survivor] = [ranking()[0], ranking()[1]];
        let l2_with = |candidates: &[&str]| -> BTreeMap<IpAddr, L2Announcement> {
            let mut announcement = announcement(candidates, &[web()]);
            announcement.eligible = [dead.to_owned(), survivor.to_owned()].into();
            [(vip(), announcement)].into()
        };
        let mut node = Node::new(survivor);
        let records = record_on_web(dead);
        node.pass(&l2_with(&[dead, survivor]), &records);
        node.pass(&l2_with(&[survivor]), &records);
        let written = node.pass(&l2_with(&[survivor]), &records);
        assert_eq!(
            written.record_writes,
            vec![RecordWrite {
                service: web(),
                address: vip(),
                record: Some(Record::new(survivor, ["eth0".to_owned()])),
            }]
        );
    }

    #[test]
    fn a_takeover_is_recognised_from_memory_when_no_record_was_written_yet() {
        let [first, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(next);
        node.pass(&l2_of(&NODES), &Records::default());
        let survivors: Vec<&str> = NODES.iter().copied().filter(|n| *n != first).collect();
        let failover = node.pass(&l2_of(&survivors), &Records::default());
        assert_eq!(failover.interfaces["eth0"].takeovers, [vip()].into());
    }

    #[test]
    fn the_returning_top_node_does_not_take_the_address_back_from_the_recorded_owner() {
        let [top, current, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(top);
        let pass = node.pass(&l2_of(&NODES), &record_on_web(current));
        assert_eq!(
            pass.decisions[&vip()].verdict,
            Verdict::OwnedElsewhere {
                owner: current.to_owned()
            }
        );
        assert_eq!(
            pass.decisions[&vip()].reason,
            ElectionReason::KeptByCurrentAnnouncer
        );
    }

    #[test]
    fn during_the_startup_hold_a_lone_speaker_announces_only_what_the_records_say_is_its_own() {
        let name = ranking()[1];
        let other = ranking()[0];
        // Alone in its own membership view, the new speaker would win everything.
        let alone = l2_of(&[name]);
        let mut node = Node::new(name);
        node.holding = true;
        let held = node.pass(&alone, &record_on_web(other));
        assert_eq!(held.decisions[&vip()].verdict, Verdict::HeldAtStartup);
        assert!(held.interfaces.is_empty());
        let held_unrecorded = node.pass(&alone, &Records::default());
        assert_eq!(
            held_unrecorded.decisions[&vip()].verdict,
            Verdict::HeldAtStartup
        );
        let resumed = node.pass(&alone, &record_on_web(name));
        assert_eq!(
            resumed.decisions[&vip()].verdict,
            Verdict::Announce {
                interfaces: ["eth0".to_owned()].into(),
                start: Start::Resume,
            }
        );
        // Someone may have taken over while this node was down: it probes first.
        assert!(resumed.interfaces["eth0"].takeovers.is_empty());
        assert_eq!(resumed.interfaces["eth0"].wanted, [vip()].into());
    }

    #[test]
    fn releasing_an_address_empties_the_interface_and_keeps_the_record_for_the_new_owner() {
        let [owner, next, _] = ranking()[..] else {
            panic!("three nodes ranked");
        };
        let mut node = Node::new(owner);
        let records = record_on_web(owner);
        node.pass(&l2_of(&NODES), &records);
        // Local policy moved the endpoints away: this node is no longer a candidate.
        let without_us: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
        let released = node.pass(&l2_of(&without_us), &records);
        assert_eq!(
            released.decisions[&vip()].verdict,
            Verdict::OwnedElsewhere {
                owner: next.to_owned()
            }
        );
        assert_eq!(released.interfaces["eth0"], InterfaceAssignment::default());
        assert!(released.record_writes.is_empty());
    }

    #[test]
    fn the_owner_removes_its_record_when_nobody_may_announce_or_the_service_stops_using_it() {
        let owner = ranking()[0];
        let records = record_on_web(owner);
        let removal = vec![RecordWrite {
            service: web(),
            address: vip(),
            record: None,
        }];
        let mut node = Node::new(owner);
        node.pass(&l2_of(&NODES), &records);
        assert_eq!(node.pass(&l2_of(&[]), &records).record_writes, removal);
        assert_eq!(node.pass(&BTreeMap::new(), &records).record_writes, removal);
        // A record naming someone else is not ours to remove, and nothing is removed while
        // holding.
        assert!(
            Node::new(ranking()[1])
                .pass(&BTreeMap::new(), &records)
                .record_writes
                .is_empty()
        );
        let mut holding = Node::new(owner);
        holding.holding = true;
        assert!(
            holding
                .pass(&BTreeMap::new(), &records)
                .record_writes
                .is_empty()
        );
    }

    #[test]
    fn listed_interfaces_are_used_and_an_owner_without_any_interface_says_so() {
        let owner = ranking()[0];
        let mut only_eth1 = l2_of(&NODES);
        if let Some(a) = only_eth1.get_mut(&vip()) {
            a.interfaces = Some(InterfaceSelection::Only(["eth1".to_owned()].into()));
        }
        let mut node = Node::new(owner);
        node.interfaces.push(eth("eth1", &[]));
        let pass = node.pass(&only_eth1, &Records::default());
        assert_eq!(pass.interfaces["eth1"].wanted, [vip()].into());
        assert!(!pass.interfaces.contains_key("eth0"));

        let mut bare = Node::new(owner);
        bare.interfaces = vec![eth("eth9", &["198.51.100.11/24"])];
        let pass = bare.pass(&l2_of(&NODES), &Records::default());
        assert_eq!(pass.decisions[&vip()].verdict, Verdict::NoInterface);
        assert_eq!(pass.decisions[&vip()].owner.as_deref(), Some(owner));
        assert_eq!(pass.owned().count(), 0);
    }

    #[test]
    fn a_dual_stack_service_can_have_a_different_owner_per_address_and_records_each_separately() {
        let v6: IpAddr = "2001:db8:1::100".parse().unwrap_or(vip());
        let l2: BTreeMap<IpAddr, L2Announcement> = [
            (vip(), announcement(&NODES, &[web()])),
            (v6, announcement(&NODES, &[web()])),
        ]
        .into();
        let mut owners = BTreeMap::new();
        let mut writes = Vec::new();
        for name in NODES {
            let mut node = Node::new(name);
            node.pass(&l2, &Records::default());
            let pass = node.pass(&l2, &Records::default());
            for address in pass.owned() {
                assert!(owners.insert(address, name).is_none(), "one owner each");
            }
            writes.extend(pass.record_writes);
        }
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[&vip()], ranking()[0]);
        assert_eq!(owners[&v6], rendezvous_ranking(v6, NODES)[0]);
        let written: BTreeSet<IpAddr> = writes.iter().map(|w| w.address).collect();
        assert_eq!(written, [vip(), v6].into());
    }
}

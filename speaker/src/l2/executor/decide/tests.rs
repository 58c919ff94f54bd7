use super::*;
use crate::l2::executor::address::AddressState;
use crate::l2::frames::MacAddr;
use crate::l2::ownership::rendezvous_ranking;

pub(crate) const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

pub(crate) fn vip() -> IpAddr {
    IpAddr::from([192, 0, 2, 130])
}

pub(crate) fn web() -> ServiceKey {
    ServiceKey::new("lab", "web")
}

pub(crate) fn eth(name: &str, networks: &[&str]) -> InterfaceInfo {
    InterfaceInfo {
        name: name.to_owned(),
        index: 2,
        mac: Some(MacAddr([2, 0, 0x5e, 0, 0x53, 1])),
        up: true,
        loopback: false,
        networks: networks.iter().filter_map(|n| n.parse().ok()).collect(),
    }
}

pub(crate) fn lan() -> Vec<InterfaceInfo> {
    vec![eth("eth0", &["192.0.2.11/24", "2001:db8:1::11/64"])]
}

pub(crate) fn announcement(candidates: &[&str], services: &[ServiceKey]) -> L2Announcement {
    L2Announcement {
        services: services.iter().cloned().collect(),
        candidates: candidates.iter().map(|s| (*s).to_owned()).collect(),
        eligible: NODES.iter().map(|s| (*s).to_owned()).collect(),
        interfaces: Some(InterfaceSelection::Any),
    }
}

/// The nodes in failover order for the test address.
pub(crate) fn ranking() -> Vec<&'static str> {
    rendezvous_ranking(vip(), NODES)
}

/// The three nodes in failover order.
pub(crate) fn ranked() -> [&'static str; 3] {
    let ranking = ranking();
    std::array::from_fn(|i| ranking[i])
}

/// Every node but `node`.
pub(crate) fn all_but(node: &str) -> Vec<&'static str> {
    NODES.iter().copied().filter(|n| *n != node).collect()
}

/// The state one node carries between passes, and a way to run passes on it.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) interfaces: Vec<InterfaceInfo>,
    pub(crate) states: BTreeMap<IpAddr, AddressState>,
    pub(crate) assigned: BTreeMap<String, BTreeSet<IpAddr>>,
    pub(crate) announced: BTreeSet<IpAddr>,
    pub(crate) seen_live: BTreeSet<String>,
    pub(crate) now: Instant,
    pub(crate) holding: bool,
}

impl Node {
    pub(crate) fn new(name: &'static str) -> Self {
        Node {
            name,
            interfaces: lan(),
            states: BTreeMap::new(),
            assigned: BTreeMap::new(),
            announced: BTreeSet::new(),
            seen_live: BTreeSet::new(),
            now: Instant::now(),
            holding: false,
        }
    }

    /// Runs a pass and remembers its result the way the executor does; the announcer
    /// is taken to report every wanted address as announced right after.
    pub(crate) fn pass(
        &mut self,
        l2: &BTreeMap<IpAddr, L2Announcement>,
        records: &Records,
    ) -> Pass {
        self.seen_live
            .extend(l2.values().flat_map(|a| a.candidates.iter().cloned()));
        let known = known_speakers(&self.seen_live, records, l2);
        let pass = decide(
            &PassInput {
                node: self.name,
                l2,
                records,
                interfaces: &self.interfaces,
                assigned: &self.assigned,
                announced: &self.announced,
                holding: self.holding,
                known_speakers: &known,
                record_retry: Duration::from_secs(5),
            },
            &self.states,
            self.now,
        );
        self.states.clone_from(&pass.states);
        self.assigned = pass
            .interfaces
            .iter()
            .filter(|(_, a)| !a.wanted.is_empty())
            .map(|(name, a)| (name.clone(), a.wanted.clone()))
            .collect();
        self.announced = self.assigned.values().flatten().copied().collect();
        pass
    }

    /// The records this node remembers as taken away from it.
    pub(crate) fn lost_to(&self) -> BTreeMap<IpAddr, TakenAway> {
        self.states
            .iter()
            .filter_map(|(address, state)| Some((*address, state.taken_away.clone()?)))
            .collect()
    }
}

/// The records of the test address, per Service.
pub(crate) fn recorded(records: &Records) -> BTreeMap<ServiceKey, Record> {
    records
        .iter()
        .filter(|(_, address, _)| *address == vip())
        .map(|(service, _, record)| (service.clone(), record.clone()))
        .collect()
}

/// [`TakenAway::still_holds`] over every remembered address.
fn still_taken_away(
    remembered: &BTreeMap<IpAddr, TakenAway>,
    l2: &BTreeMap<IpAddr, L2Announcement>,
    records: &Records,
    now: Instant,
) -> BTreeMap<IpAddr, TakenAway> {
    remembered
        .iter()
        .filter_map(|(address, taken)| {
            let held = taken
                .clone()
                .still_holds(l2.get(address), &recorded(records), now)?;
            Some((*address, held))
        })
        .collect()
}

/// [`super::taken_away`] over every announced address.
fn taken_away(
    node: &str,
    announcing: &BTreeSet<IpAddr>,
    l2: &BTreeMap<IpAddr, L2Announcement>,
    before: Option<&Records>,
    after: &Records,
) -> BTreeMap<IpAddr, String> {
    let before = before.map(recorded).unwrap_or_default();
    l2.iter()
        .filter_map(|(address, announcement)| {
            let answering = announcing.contains(address);
            let by = super::taken_away(node, answering, announcement, &before, &recorded(after))?;
            Some((*address, by))
        })
        .collect()
}

pub(crate) fn l2_of(candidates: &[&str]) -> BTreeMap<IpAddr, L2Announcement> {
    [(vip(), announcement(candidates, &[web()]))].into()
}

pub(crate) fn record_on_web(node: &str) -> Records {
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
    let [dead, next, _] = ranked();
    let mut node = Node::new(next);
    let records = record_on_web(dead);
    node.pass(&l2_of(&NODES), &records);
    assert!(node.assigned.is_empty(), "the owner is alive: not ours");
    let survivors = all_but(dead);
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
    let [owner, next, _] = ranked();
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
    let [owner, next, _] = ranked();
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
    let survivors = all_but(owner);
    taker.pass(&l2_of(&NODES), &record_on_web(owner));
    let failover = taker.pass(&l2_of(&survivors), &record_on_web(owner));
    assert_eq!(failover.interfaces["eth0"].takeovers, [vip()].into());
    assert_eq!(failover.interfaces["eth0"].contested, [vip()].into());
    let written = taker.pass(&l2_of(&survivors), &record_on_web(next));
    assert!(written.interfaces["eth0"].contested.is_empty());
}

#[test]
fn a_node_cut_off_whose_record_was_taken_over_announces_on_its_side_but_never_writes_it_back() {
    let [owner, next, _] = ranked();
    let mut node = Node::new(owner);
    let mine = record_on_web(owner);
    node.pass(&l2_of(&NODES), &mine);
    // The node that took over writes its record while this one still announces.
    let taken = record_on_web(next);
    let lost = taken_away(owner, &node.announced, &l2_of(&NODES), Some(&mine), &taken);
    assert_eq!(lost, [(vip(), next.to_owned())].into());
    // (The next pass notices it the same way and remembers it.)
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
    assert_eq!(node.lost_to().len(), 1);
    // Healed: `next` is live again, the address stays there, and the memory is dropped.
    let healed = node.pass(&l2_of(&NODES), &taken);
    assert!(matches!(
        healed.decisions[&vip()].verdict,
        Verdict::OwnedElsewhere { .. }
    ));
    assert!(node.lost_to().is_empty());
}

#[test]
fn a_record_taken_away_is_forgotten_when_its_writer_comes_back_or_was_never_out_of_sight() {
    let [me, other, _] = ranked();
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
    let [me, other, _] = ranked();
    let l2 = l2_of(&NODES);
    let announcing: BTreeSet<IpAddr> = [vip()].into();
    // Unchanged, or naming this node: nothing taken.
    let theirs = record_on_web(other);
    assert!(taken_away(me, &announcing, &l2, Some(&theirs), &theirs).is_empty());
    assert!(taken_away(me, &announcing, &l2, Some(&theirs), &record_on_web(me)).is_empty());
    // Not announced here: nothing taken.
    assert!(taken_away(me, &BTreeSet::new(), &l2, Some(&record_on_web(me)), &theirs).is_empty());
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
    let [owner, next, third] = ranked();
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
    let [owner, next, third] = ranked();
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
    let [first, next, _] = ranked();
    let mut node = Node::new(next);
    node.pass(&l2_of(&NODES), &Records::default());
    let survivors = all_but(first);
    let failover = node.pass(&l2_of(&survivors), &Records::default());
    assert_eq!(failover.interfaces["eth0"].takeovers, [vip()].into());
}

#[test]
fn the_returning_top_node_does_not_take_the_address_back_from_the_recorded_owner() {
    let [top, current, _] = ranked();
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
    let [owner, next, _] = ranked();
    let mut node = Node::new(owner);
    let records = record_on_web(owner);
    node.pass(&l2_of(&NODES), &records);
    // Local policy moved the endpoints away: this node is no longer a candidate.
    let without_us = all_but(owner);
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

//! Transitions of one address, named as sentences. The fixtures (a node carrying its states
//! between passes, with an announcer that announces at once) are those of the pass tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::l2::executor::decide::tests::{
    NODES, Node, all_but, l2_of, lan, ranked, ranking, record_on_web, recorded, vip,
};
use crate::l2::executor::decide::{TAKEN_AWAY_GRACE, Verdict};

fn phase(node: &Node) -> Option<&Phase> {
    node.states.get(&vip()).map(|state| &state.phase)
}

fn eth0() -> BTreeSet<String> {
    ["eth0".to_owned()].into()
}

#[test]
fn a_node_that_hears_a_newer_owner_gives_the_address_up() {
    let [owner, next, _] = ranked();
    let mut node = Node::new(owner);
    node.pass(&l2_of(&NODES), &record_on_web(owner));
    assert!(phase(&node).is_some_and(Phase::is_ours));
    // `next` wrote its record (it took over while this node was out of its sight) and is
    // live: the record is sticky, so this node gives the address up and remembers who took it.
    let pass = node.pass(&l2_of(&NODES), &record_on_web(next));
    assert_eq!(pass.taken_away, [(vip(), next.to_owned())].into());
    assert_eq!(
        phase(&node),
        Some(&Phase::OwnedElsewhere {
            owner: next.to_owned()
        })
    );
    assert!(pass.interfaces["eth0"].wanted.is_empty());
    assert!(pass.record_writes.is_empty());
    assert_eq!(node.lost_to()[&vip()].by, next);
}

#[test]
fn an_acquisition_lasts_until_the_address_is_announced_and_its_record_is_in_place() {
    let owner = ranking()[0];
    let mut node = Node::new(owner);
    node.pass(&l2_of(&NODES), &Records::default());
    let acquiring = |node: &Node| {
        matches!(
            phase(node),
            Some(Phase::Acquiring {
                how: Start::FirstAnnouncement,
                ..
            })
        )
    };
    assert!(acquiring(&node), "probing: {:?}", phase(&node));
    // Announced, its record being written: still acquiring.
    node.pass(&l2_of(&NODES), &Records::default());
    assert!(acquiring(&node), "writing: {:?}", phase(&node));
    // The record is in place: owned.
    node.pass(&l2_of(&NODES), &record_on_web(owner));
    assert_eq!(phase(&node), Some(&Phase::Owned { interfaces: eth0() }));
}

#[test]
fn a_record_write_is_sent_once_and_again_only_after_the_retry_interval() {
    let owner = ranking()[0];
    let mut node = Node::new(owner);
    node.pass(&l2_of(&NODES), &Records::default());
    let first = node.pass(&l2_of(&NODES), &Records::default());
    assert_eq!(first.sends.len(), 1);
    assert_eq!(first.sends[0].write, first.record_writes[0]);
    // The first record of an acquisition comes with its Event.
    assert_eq!(first.sends[0].event, Some(Start::FirstAnnouncement));
    // Not in place yet, but in flight: wanted, not sent again.
    node.now += Duration::from_secs(1);
    let waiting = node.pass(&l2_of(&NODES), &Records::default());
    assert_eq!(waiting.record_writes, first.record_writes);
    assert!(waiting.sends.is_empty());
    // Still missing after the retry interval: sent again, without a second Event.
    node.now += Duration::from_secs(5);
    let again = node.pass(&l2_of(&NODES), &Records::default());
    assert_eq!(again.sends.len(), 1);
    assert_eq!(again.sends[0].event, None);
}

#[test]
fn the_first_record_of_a_takeover_comes_with_an_event_naming_the_previous_owner() {
    let [dead, next, _] = ranked();
    let mut node = Node::new(next);
    let records = record_on_web(dead);
    node.pass(&l2_of(&NODES), &records);
    let survivors = all_but(dead);
    let failover = node.pass(&l2_of(&survivors), &records);
    assert!(failover.changed.contains(&vip()), "a takeover is news");
    let written = node.pass(&l2_of(&survivors), &records);
    assert!(!written.changed.contains(&vip()), "continuing is not");
    assert_eq!(
        written.sends[0].event,
        Some(Start::TakeOver {
            from: dead.to_owned()
        })
    );
}

#[test]
fn an_address_no_longer_planned_is_kept_only_until_its_record_is_removed() {
    let owner = ranking()[0];
    let mut node = Node::new(owner);
    node.pass(&l2_of(&NODES), &record_on_web(owner));
    let gone = node.pass(&BTreeMap::new(), &record_on_web(owner));
    assert!(gone.decisions.is_empty());
    assert_eq!(gone.sends.len(), 1);
    assert_eq!(gone.sends[0].write.record, None);
    assert_eq!(phase(&node), Some(&Phase::Unplanned));
    // Removed: nothing left to remember.
    let clean = node.pass(&BTreeMap::new(), &Records::default());
    assert!(clean.states.is_empty(), "{:?}", clean.states);
}

#[test]
fn a_taken_away_record_is_dated_by_the_time_passed_in() {
    let [me, other, _] = ranked();
    let l2 = l2_of(&NODES);
    let mine = recorded(&record_on_web(me));
    let theirs = record_on_web(other);
    let state = AddressState {
        phase: Phase::Owned { interfaces: eth0() },
        seen: mine,
        ..AddressState::default()
    };
    let known: BTreeSet<String> = NODES.map(str::to_owned).into();
    let then = Instant::now() + Duration::from_secs(3600);
    let step = step(
        &state,
        &Facts {
            node: me,
            address: vip(),
            announcement: l2.get(&vip()),
            records: &theirs,
            recorded: &recorded(&theirs),
            interfaces: &lan(),
            answering_on: &eth0(),
            announced: true,
            holding: false,
            known_speakers: &known,
            record_retry: Duration::from_secs(5),
        },
        then,
    );
    assert_eq!(step.taken_by.as_deref(), Some(other));
    let taken = step.state.taken_away.as_ref().map(|taken| taken.at);
    assert_eq!(taken, Some(then));
    // It lasts the grace counted from that time, not from any clock.
    let kept = step
        .state
        .taken_away
        .clone()
        .and_then(|taken| taken.still_holds(l2.get(&vip()), &recorded(&theirs), then));
    assert!(kept.is_some());
    let expired = step.state.taken_away.and_then(|taken| {
        taken.still_holds(l2.get(&vip()), &recorded(&theirs), then + TAKEN_AWAY_GRACE)
    });
    assert!(expired.is_none());
    assert!(matches!(
        step.decision.map(|d| d.verdict),
        Some(Verdict::OwnedElsewhere { .. })
    ));
}

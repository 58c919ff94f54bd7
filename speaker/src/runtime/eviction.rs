//! Which nodes' endpoints are evicted from forwarding: the membership's verdicts turned into
//! the planner's `dead_nodes` input (pure; the runtime feeds it the live set every pass).
//!
//! A node is dead when its speaker has been seen alive by this speaker's current
//! membership run and is not alive now. Nodes never seen alive (no speaker there, or not yet
//! converged after start) are never dead: eviction must not punish a node for what this
//! speaker does not know. A restart of the membership (new key or address) forgets what was
//! seen, so the empty live set of a fresh run evicts nobody.

use std::collections::BTreeSet;

/// What one observation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictionChange {
    /// Nodes dead now (the planner's input).
    pub dead: BTreeSet<String>,
    /// Nodes that became dead with this observation.
    pub evicted: BTreeSet<String>,
    /// Nodes that came back with this observation.
    pub restored: BTreeSet<String>,
}

/// Remembers which speakers were seen alive and which nodes are currently evicted.
#[derive(Debug, Clone, Default)]
pub struct EvictionTracker {
    seen: BTreeSet<String>,
    dead: BTreeSet<String>,
}

impl EvictionTracker {
    /// Takes the current live set; `this_node` is never dead to itself.
    pub fn observe(&mut self, live: &BTreeSet<String>, this_node: &str) -> EvictionChange {
        self.seen.extend(live.iter().cloned());
        let dead: BTreeSet<String> = self
            .seen
            .iter()
            .filter(|node| node.as_str() != this_node && !live.contains(*node))
            .cloned()
            .collect();
        let evicted = dead.difference(&self.dead).cloned().collect();
        let restored = self.dead.difference(&dead).cloned().collect();
        self.dead = dead.clone();
        EvictionChange {
            dead,
            evicted,
            restored,
        }
    }

    /// Forgets everything (the membership restarted); returns the nodes that were evicted
    /// and are therefore restored.
    pub fn reset(&mut self) -> BTreeSet<String> {
        self.seen.clear();
        std::mem::take(&mut self.dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nodes: &[&str]) -> BTreeSet<String> {
        nodes.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_speaker_seen_alive_and_then_gone_is_dead_and_reported_once() {
        let mut tracker = EvictionTracker::default();
        assert_eq!(
            tracker.observe(&set(&["n1", "n2", "n3"]), "n1"),
            EvictionChange::default()
        );
        let change = tracker.observe(&set(&["n1", "n2"]), "n1");
        assert_eq!(change.dead, set(&["n3"]));
        assert_eq!(change.evicted, set(&["n3"]));
        let again = tracker.observe(&set(&["n1", "n2"]), "n1");
        assert_eq!(again.dead, set(&["n3"]));
        assert!(again.evicted.is_empty() && again.restored.is_empty());
    }

    #[test]
    fn a_dead_speaker_that_comes_back_is_restored() {
        let mut tracker = EvictionTracker::default();
        tracker.observe(&set(&["n1", "n2", "n3"]), "n1");
        tracker.observe(&set(&["n1", "n2"]), "n1");
        let change = tracker.observe(&set(&["n1", "n2", "n3"]), "n1");
        assert!(change.dead.is_empty());
        assert_eq!(change.restored, set(&["n3"]));
    }

    #[test]
    fn a_node_never_seen_alive_is_never_dead() {
        let mut tracker = EvictionTracker::default();
        let change = tracker.observe(&set(&["n1"]), "n1");
        assert!(change.dead.is_empty());
    }

    #[test]
    fn this_node_is_never_dead_even_when_missing_from_the_live_set() {
        let mut tracker = EvictionTracker::default();
        tracker.observe(&set(&["n1", "n2"]), "n1");
        let change = tracker.observe(&set(&["n2"]), "n1");
        assert!(change.dead.is_empty());
    }

    #[test]
    fn a_membership_restart_forgets_what_was_seen_and_restores_the_evicted() {
        let mut tracker = EvictionTracker::default();
        tracker.observe(&set(&["n1", "n2", "n3"]), "n1");
        tracker.observe(&set(&["n1", "n2"]), "n1");
        assert_eq!(tracker.reset(), set(&["n3"]));
        let change = tracker.observe(&set(&["n1"]), "n1");
        assert!(
            change.dead.is_empty(),
            "a fresh run's empty live set evicts nobody"
        );
    }
}

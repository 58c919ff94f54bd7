//! Nodes' own addresses (InternalIP / ExternalIP): reserved out of every pool's free set, and
//! which held or pooled addresses are also nodes'. Pure.

use super::*;

impl Allocator {
    /// Installs the nodes' own addresses (the whole set, as (node, address) pairs): each is
    /// reserved, out of every pool's free set like an address held by no Service, so it is
    /// never allocated and a request for it is refused ([`AllocationError::NodeAddress`]).
    /// Nothing is moved: a Service already holding one keeps it (see
    /// [`Allocator::node_addresses_held`]). An address no node has any more goes back to its
    /// pools unless a Service holds it. Returns the Services holding an address whose nodes
    /// changed (their conditions need a refresh). O(changed addresses × (pools + log n)).
    pub fn set_node_addresses(
        &mut self,
        nodes: impl IntoIterator<Item = (String, IpAddr)>,
    ) -> Vec<ServiceKey> {
        let mut new: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
        for (node, address) in nodes {
            new.entry(address).or_default().insert(node);
        }
        let old = std::mem::take(&mut self.node_addresses);
        let mut changed: Vec<IpAddr> = Vec::new();
        for (address, names) in &old {
            if new.get(address) != Some(names) {
                changed.push(*address);
            }
        }
        changed.extend(new.keys().filter(|a| !old.contains_key(a)).copied());
        for &address in &changed {
            if self.holdings.contains_key(&address) {
                continue; // Out of the free sets while held, either way.
            }
            match (old.contains_key(&address), new.contains_key(&address)) {
                (false, true) => {
                    for pool in self.pools.values_mut() {
                        // Err only for addresses outside the pool: nothing to take there.
                        let _outside_this_pool = pool.free.take(address);
                    }
                }
                (true, false) => {
                    for pool in self.pools.values_mut() {
                        pool.free.release(address);
                    }
                }
                _ => {}
            }
        }
        self.node_addresses = new;
        let affected: BTreeSet<ServiceKey> = changed
            .iter()
            .filter_map(|a| self.holdings.get(a))
            .flat_map(|h| h.holders.keys().map(|(key, _)| key.clone()))
            .collect();
        affected.into_iter().collect()
    }

    /// The nodes having `address` as their own (sorted; empty for none).
    pub fn nodes_having(&self, address: IpAddr) -> Vec<String> {
        self.node_addresses
            .get(&address)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The Service's load-balancer addresses that are also nodes' own addresses (kept, never
    /// moved, but never announced), each with the nodes having it.
    pub fn node_addresses_held(&self, key: &ServiceKey) -> Vec<(IpAddr, Vec<String>)> {
        self.services
            .get(key)
            .into_iter()
            .flat_map(|s| s.addresses.iter())
            .map(|a| (a.address, self.nodes_having(a.address)))
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect()
    }

    /// Node addresses inside pool `name` (for its NodeAddresses condition), each with the
    /// nodes having it. O(pool entries × log n + found).
    pub fn node_addresses_in_pool(&self, name: &str) -> Vec<(IpAddr, Vec<String>)> {
        let Some(pool) = self.pools.get(name) else {
            return Vec::new();
        };
        let found: BTreeMap<IpAddr, Vec<String>> = pool
            .spec
            .addresses
            .iter()
            .flat_map(|range| self.node_addresses.range(range.first()..=range.last()))
            .filter(|(address, _)| pool.free.contains(**address))
            .map(|(address, nodes)| (*address, nodes.iter().cloned().collect()))
            .collect();
        found.into_iter().collect()
    }
}

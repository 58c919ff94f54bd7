//! Who a member is: node name + membership address + generation.
//!
//! Pure data. The generation is the node's incarnation across lives: it is taken from the
//! wall clock when a speaker starts (so a restarted speaker outranks its previous life) and
//! bumped by one whenever the cluster declares this node Down and it rejoins. It is distinct
//! from SWIM's own incarnation number (SWIM §4.2), a small counter foca keeps per identity and
//! bumps to refute a suspicion.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::MembershipError;

/// Longest node name accepted: a Kubernetes node name is a DNS subdomain (RFC 1123, 253
/// characters).
pub const MAX_NODE_NAME_LEN: usize = 253;

/// One life of one speaker. Two members with the same address are the same node in two
/// lives; the higher generation wins (see [`foca::Identity::win_addr_conflict`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    name: String,
    addr: SocketAddr,
    generation: u64,
}

impl MemberId {
    /// A member identity; the name must be a non-empty node name of at most 253 bytes.
    pub fn new(
        name: impl Into<String>,
        addr: SocketAddr,
        generation: u64,
    ) -> Result<Self, MembershipError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NODE_NAME_LEN {
            return Err(MembershipError::InvalidNodeName(name));
        }
        Ok(Self {
            name,
            addr,
            generation,
        })
    }

    /// A stand-in for a node known only by its address (a seed). foca accepts an Announce
    /// addressed to any identity with the receiver's address, so this reaches the node
    /// whatever its name and generation.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            name: String::new(),
            addr,
            generation: 0,
        }
    }

    /// The Kubernetes node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP address the member's speaker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which life of the node this is; higher is newer.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    /// Called by foca when the cluster has declared this identity Down: come back at once as
    /// the next generation instead of staying out.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 11], 7946))
    }

    #[test]
    fn a_renewed_identity_is_the_next_generation_and_wins_the_address() {
        let old = MemberId::new("node-a", addr(), 7).expect("valid identity");
        let new = old.renew().expect("renewable");
        assert_eq!(new.generation(), 8);
        assert_eq!(new.name(), "node-a");
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn empty_and_overlong_node_names_are_rejected() {
        assert!(MemberId::new("", addr(), 1).is_err());
        assert!(MemberId::new("n".repeat(254), addr(), 1).is_err());
        assert!(MemberId::new("n".repeat(253), addr(), 1).is_ok());
    }
}

//! What the speaker wants of each BGP peer and what it reports of one: plain data.
//!
//! Owns [`PeerConfig`] (one session's configuration with its transport settings), the whole
//! [`DesiredBgp`] (peers and their routes) that the executor computes and the driver applies,
//! [`PeerStatus`], and the transport constants they need. No I/O: the pure executor modules
//! (`executor::desired`, `executor::report`) build and read these without depending on the
//! driver that runs them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::codec::RouteAttributes;
use super::fsm::{SessionConfig, SessionStatus};
use crate::bfd::driver::BfdPeerConfig;

/// The well-known BGP port (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// TTL for single-hop eBGP: the peer must be directly connected.
pub const EBGP_SINGLE_HOP_TTL: u32 = 1;
/// TTL for eBGP multihop.
pub const EBGP_MULTIHOP_TTL: u32 = 255;
/// Longest TCP-MD5 key the kernel accepts (TCP_MD5SIG_MAXKEYLEN, RFC 2385 gives no limit).
pub const TCP_MD5_MAX_KEY_LEN: usize = 80;

/// Everything needed to run one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub session: SessionConfig,
    pub peer_address: IpAddr,
    pub peer_port: u16,
    pub source_address: Option<IpAddr>,
    /// TCP-MD5 signature key (RFC 2385).
    pub password: Option<String>,
    /// eBGP peer more than one hop away (TTL 255 instead of 1).
    pub ebgp_multihop: bool,
    /// A BFD session beside this one (RFC 5882); changing only this renegotiates BFD and
    /// leaves the BGP session alone.
    pub bfd: Option<BfdPeerConfig>,
}

impl PeerConfig {
    pub fn new(session: SessionConfig, peer_address: IpAddr) -> Self {
        Self {
            session,
            peer_address,
            peer_port: BGP_PORT,
            source_address: None,
            password: None,
            ebgp_multihop: false,
            bfd: None,
        }
    }

    /// The configuration without its BFD part: what a BGP session restart depends on.
    pub(crate) fn without_bfd(&self) -> PeerConfig {
        PeerConfig {
            bfd: None,
            ..self.clone()
        }
    }

    /// The TTL to send with: 1 for single-hop eBGP, 255 for multihop, the system default for
    /// iBGP.
    pub fn ttl(&self) -> Option<u32> {
        match (self.session.is_ebgp(), self.ebgp_multihop) {
            (false, _) => None,
            (true, false) => Some(EBGP_SINGLE_HOP_TTL),
            (true, true) => Some(EBGP_MULTIHOP_TTL),
        }
    }
}

/// Status of one peer as the manager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer_address: IpAddr,
    pub session: SessionStatus,
}

/// The whole desired BGP state of this speaker: peers by name and the routes for each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredBgp {
    pub peers: BTreeMap<String, PeerConfig>,
    pub routes: BTreeMap<String, BTreeMap<IpNet, RouteAttributes>>,
}

//! Speaker membership: which speakers are alive, learned directly between nodes over UDP,
//! SWIM-style, without the Kubernetes API server (issue 5).
//!
//! The protocol — authentication, the sans-IO state machine over foca, the configuration and
//! the in-memory simulation — is the pure crate `herald-membership`, re-exported here so the
//! speaker's paths stay `crate::membership::...`. Only [`driver`] is here: the I/O edge, a
//! tokio task with one UDP socket and a timer queue, publishing the live set on a `watch`
//! channel.

pub mod driver;

pub use driver::{DEFAULT_MEMBERSHIP_PORT, DriverConfig, MembershipDriver};
pub use herald_membership::{
    ClusterKeys, FrameRejection, MemberId, Membership, MembershipConfig, MembershipCounters,
    MembershipError, MembershipEvent, MembershipTimer, NodeState, Output, auth, config, identity,
    protocol, simulation,
};

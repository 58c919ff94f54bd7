//! herald-membership: which speakers are alive, learned directly between nodes over UDP,
//! SWIM-style, without the Kubernetes API server (a Node turns NotReady only after ~40 s;
//! layer-2 failover needs an answer in a few hundred milliseconds, issue 5).
//!
//! Layout and where I/O stops:
//! - [`config`]: the knobs and their defaults (pure).
//! - [`identity`]: node name + address + generation (pure).
//! - [`auth`]: datagram framing and HMAC-SHA256 authentication with the cluster key (pure).
//! - [`protocol`]: the sans-IO state machine — datagrams and timer firings in, datagrams to
//!   send, timers to schedule and membership events out; time is a parameter.
//! - [`simulation`]: an in-memory network on virtual time (drop, delay, partition) driving
//!   several [`Membership`] instances; used by the tests and the benchmark.
//!
//! No I/O here: this crate's dependency tree holds no tokio, kube or k8s-openapi (CI checks
//! it with `tests/check-protocol-deps.sh`). The only I/O — a tokio task with one UDP socket
//! and a timer queue, publishing the live set on a `watch` channel — is the speaker's
//! `membership::driver`.
//!
//! Why foca rather than our own SWIM: foca (2.x) is a transport-agnostic, `no_std`-capable
//! SWIM implementation whose runtime interface is already "send this", "schedule that",
//! "this changed" — exactly a sans-IO core — and it brings the parts that are easy to get
//! subtly wrong: round-robin probing over a shuffled list, indirect probes (ping-req),
//! suspicion with incarnation-based refutation, piggybacked dissemination with a retransmit
//! limit, identity conflict resolution and automatic rejoin with a renewed identity. What it
//! lacks we add around it: authentication (foca trusts its input), seeds known only by
//! address, a suspicion timeout scaled by cluster size (foca takes a fixed one; we re-set it
//! as the cluster grows or shrinks), a per-node view with Suspect events, and a rejoin
//! hold-down against flapping. Not implemented (known gaps): Lifeguard's local health
//! multiplier (a node that is itself slow stretches its own timeouts) and its dynamic
//! suspicion that shortens with independent confirmations; foca's refutation and our
//! hold-down cover the false-positive side, the size-scaled timeout the speed side.

pub mod auth;
pub mod config;
pub mod identity;
pub mod protocol;
pub mod simulation;

pub use auth::{ClusterKeys, FrameRejection};
pub use config::MembershipConfig;
pub use identity::MemberId;
pub use protocol::{
    Membership, MembershipCounters, MembershipEvent, MembershipTimer, NodeState, Output,
};

/// Errors from building or running the membership protocol.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("invalid membership configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid node name {0:?}: must be 1 to 253 bytes")]
    InvalidNodeName(String),
    #[error("membership key too short: {len} bytes, need at least {min}")]
    KeyTooShort { len: usize, min: usize },
    #[error("membership socket: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;

//! BFD for the BGP sessions (RFC 5880 asynchronous mode, RFC 5881 single hop, RFC 5883
//! multihop, RFC 5882 coupling).
//!
//! - The protocol — packet codec, session state machine, flap damping — is the pure crate
//!   `herald-bfd`; nothing here decides a transition.
//! - [`socket`]: the UDP sockets, TTL / hop limit 255 on send and the TTL check on receive.
//! - [`driver`]: the I/O edge — a task per session, receiving tasks that demultiplex, and the
//!   declarative [`driver::BfdManager`] that the BGP manager owns; the damped state of each
//!   session is what the BGP peer task of the same name follows.
//! - [`metrics`]: state, transitions, packets sent / received / dropped by reason.

pub mod driver;
pub mod metrics;
pub mod socket;

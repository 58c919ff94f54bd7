//! BGP: the protocol (codec, session FSM) is the pure crate `herald-bgp`, re-exported here as
//! [`codec`] and [`fsm`]; this module holds the speaker's side of it.
//!
//! - [`peer`]: what the speaker wants of each peer and what it reports of one (plain data).
//! - [`driver`]: the I/O edge — a tokio task per peer (TCP, MD5, TTL, timers), the passive
//!   listener, and the declarative [`driver::BgpManager`].
//! - [`executor`]: the runtime's BGP executor — plan to sessions and routes, status,
//!   annotations and metrics.

pub use herald_bgp::{codec, fsm};

pub mod driver;
pub mod executor;
pub mod peer;

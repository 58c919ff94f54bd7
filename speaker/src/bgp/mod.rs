//! BGP: message codec wrapper over zettabgp, the sans-IO session FSM (RFC 4271), and the per-peer driver.
//!
//! - [`codec`]: bytes <-> messages. Pure; every input from the network is validated here before
//!   zettabgp sees it.
//! - [`fsm`]: one session's state machine. Pure; time is passed in, I/O is requested as outputs.
//! - [`driver`]: the I/O edge — a tokio task per peer (TCP, MD5, TTL, timers), the passive
//!   listener, and the declarative [`driver::BgpManager`].
//! - [`executor`]: the runtime's BGP executor — plan to sessions and routes, status,
//!   annotations and metrics.

pub mod codec;
pub mod driver;
pub mod executor;
pub mod fsm;

#[cfg(test)]
mod fsm_tests;

//! Layer 2 mode: one node answers for each external address on the local segment.
//!
//! The protocol is the pure crate `herald-l2`, re-exported here: [`frames`] (ARP/NDP build and
//! parse), [`ownership`] (who announces an address), [`interfaces`] (which interfaces announce
//! it) and [`announcer`] (the per-interface probe/announce/answer/defend state machine).
//!
//! - [`io`]: the I/O edge — one pnet thread per interface, solicited-node multicast
//!   memberships. Reading the kernel's interfaces is [`crate::net::interfaces`].
//! - [`executor`]: the runtime's layer-2 executor.

pub use herald_l2::{announcer, frames, interfaces, ownership};

pub mod executor;
pub mod io;

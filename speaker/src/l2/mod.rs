//! Layer 2 mode: one node answers for each external address on the local segment.
//!
//! - [`frames`]: pure build/parse of Ethernet, ARP and IPv6 Neighbor Discovery.
//! - [`ownership`]: pure election of the one node that announces an address.
//! - [`announcer`]: sans-IO per-interface state machine: probe, announce, answer, defend.
//!
//! Everything here is pure except the I/O edge, which says so in its header.

pub mod announcer;
pub mod frames;
pub mod ownership;

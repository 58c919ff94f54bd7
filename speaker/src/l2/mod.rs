//! Layer 2 mode: one node answers for each external address on the local segment.
//!
//! - [`frames`]: pure build/parse of Ethernet, ARP and IPv6 Neighbor Discovery.
//! - [`ownership`]: pure election of the one node that announces an address.
//! - [`interfaces`]: pure choice of the interfaces that announce an address.
//! - [`announcer`]: sans-IO per-interface state machine: probe, announce, answer, defend.
//! - [`io`]: the I/O edge — rtnetlink interface discovery, one pnet thread per interface,
//!   solicited-node multicast memberships.
//!
//! Everything here is pure except [`io`].

pub mod announcer;
pub mod executor;
pub mod frames;
pub mod interfaces;
pub mod io;
pub mod ownership;

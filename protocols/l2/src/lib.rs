//! herald-l2: layer-2 mode without I/O — one node answers for each external address on the
//! local segment.
//!
//! - [`frames`]: build/parse of Ethernet, ARP (RFC 826, RFC 5227) and IPv6 Neighbor Discovery
//!   (RFC 4861).
//! - [`ownership`]: election of the one node that announces an address.
//! - [`interfaces`]: choice of the interfaces that announce an address.
//! - [`announcer`]: per-interface state machine: probe, announce, answer, defend; time is
//!   passed in.
//!
//! This crate's dependency tree holds no tokio, kube or k8s-openapi (CI checks it with
//! `tests/check-protocol-deps.sh`); the sockets, threads and rtnetlink discovery live in the
//! speaker (`l2::io`, `net::interfaces`).

pub mod announcer;
pub mod frames;
pub mod interfaces;
pub mod ownership;

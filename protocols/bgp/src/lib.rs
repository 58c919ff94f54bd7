//! herald-bgp: the BGP protocol without I/O.
//!
//! - [`codec`]: bytes <-> messages (RFC 4271 §4, RFC 4760, RFC 4724, RFC 8092, RFC 8203). Every
//!   input from the network is validated here before zettabgp sees it.
//! - [`fsm`]: one session's state machine (RFC 4271 §8); time is passed in, I/O is requested
//!   as outputs.
//!
//! This crate's dependency tree holds no tokio, kube or k8s-openapi (CI checks it with
//! `tests/check-protocol-deps.sh`); the TCP sessions, MD5 and timers live in the speaker's
//! `bgp::driver`.

pub mod codec;
pub mod fsm;

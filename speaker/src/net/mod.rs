//! Node networking shared by the announcement modes.
//!
//! - [`interfaces`]: the kernel's links and addresses (rtnetlink), as plain values.

pub mod interfaces;

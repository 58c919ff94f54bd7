//! The layer-2 executor: makes this node announce exactly the addresses it owns.
//!
//! - [`record`]: the shared current-announcer record on the Service (pure).
//! - [`decide`]: one pass from plan, records and interfaces to announcer commands and record
//!   writes (pure).

pub mod decide;
pub mod record;

//! Forwarding: Herald's own nftables table (`table inet herald`), which DNATs traffic for
//! external addresses to the Services' ready endpoints, NodePort-style.
//!
//! - [`ruleset`]: the desired table as data, built from the planner's forwarding decisions (pure).
//! - [`render`]: that data as `nft -f` text, full rebuild or minimal update (pure).
//!
//! I/O stops at the executor, which runs `nft`; everything before it is plain functions.

pub mod render;
pub mod ruleset;

pub use render::{UpdateSummary, render_full, render_teardown, render_update};
pub use ruleset::{DEFAULT_MASQUERADE_MARK, Ruleset, TABLE_FAMILY, TABLE_NAME};

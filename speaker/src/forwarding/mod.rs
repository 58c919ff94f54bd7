//! Forwarding: Herald's own nftables table (`table inet herald`), which DNATs traffic for
//! external addresses to the Services' ready endpoints, NodePort-style.
//!
//! - [`ruleset`]: the desired table as data, built from the planner's forwarding decisions (pure).
//! - [`render`]: that data as `nft -f` text, full rebuild or minimal update (pure).
//! - [`observe`]: `nft -j` read-back parsed and compared for drift (pure).
//! - [`executor`]: runs `nft` and keeps the table equal to the desired ruleset; the
//!   runtime's forwarding executor.
//! - [`stale`]: which tracked connections go stale when a backend leaves (pure);
//!   [`conntrack`] deletes them through ctnetlink (I/O).
//!
//! Herald only ever touches its own table; other programs' tables (kube-proxy's, a CNI's,
//! the host firewall's) are never read or written.

pub mod conntrack;
pub mod executor;
pub mod metrics;
pub mod observe;
pub mod render;
pub mod ruleset;
pub mod stale;

pub use executor::{ApplyOutcome, Forwarder, ForwardingExecutor, NftCommand, NftError};
pub use render::{UpdateSummary, render_full, render_teardown, render_update};
pub use ruleset::{DEFAULT_MASQUERADE_MARK, Ruleset, ServiceChain, TABLE_FAMILY, TABLE_NAME};

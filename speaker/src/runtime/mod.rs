//! The speaker's runtime: everything between the Kubernetes API and the executors.
//!
//! - [`watches`]: the kube watches and reflector stores (I/O with the API server).
//! - [`reconcile`]: the loop — snapshot -> `convert` -> `planner::plan` with the live
//!   membership set -> executors; debounced, retried, fully resynced periodically; and the
//!   ordered shutdown. Its per-pass logic is pure ([`reconcile::compute_pass`],
//!   [`reconcile::membership_settings`]).
//! - [`executor`]: the executor pattern (one owned task per executor fed by
//!   [`executor::Command`]s) and the fixed order (BGP, L2, forwarding).
//! - [`membership`]: bind address, seeds and key for the membership protocol, and the
//!   supervisor that (re)starts its driver.
//! - [`api_probe`]: whether the API server answers (stale state since T, for `/readyz` and
//!   metrics); never an input to the desired state.
//! - [`debounce`], [`report`]: pure timing and log-rate decisions.

pub mod api_probe;
pub mod debounce;
pub mod eviction;
pub mod executor;
pub mod membership;
pub mod reconcile;
pub mod report;
pub mod watches;

use std::net::SocketAddr;
use std::time::Duration;

use crate::convert::ConvertOptions;
use crate::membership::MembershipConfig;

pub use executor::{ApplyReport, Executor, ExecutorError, ExecutorHandle, Executors};
pub use membership::KeySource;
pub use reconcile::{RuntimeError, run};

/// Default interval of the full resync (read-back and repair of every executor).
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// How the runtime is set up (from the command line).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// This node's Kubernetes name.
    pub node_name: String,
    /// Namespace of Herald's install (custom resources, memberlist Secret).
    pub install_namespace: String,
    /// Which Services are Herald's.
    pub convert: ConvertOptions,
    /// Where the membership key comes from.
    pub key_source: KeySource,
    /// Membership address; `None`: this Node's InternalIP at `memberlist_port`.
    pub memberlist_bind: Option<SocketAddr>,
    /// Membership UDP port of every speaker (seeds use it too).
    pub memberlist_port: u16,
    /// Membership protocol knobs.
    pub membership: MembershipConfig,
    /// Period of the full resync.
    pub resync_interval: Duration,
    /// Evict endpoints on nodes the membership declares dead from forwarding.
    pub endpoint_eviction: bool,
    /// The on-node checkpoint; `None`: none written, none resumed from.
    pub checkpoint: Option<crate::checkpoint::CheckpointConfig>,
}

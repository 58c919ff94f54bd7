//! herald-speaker: per-node announcement of LoadBalancer addresses.
//!
//! Pure cores (model, planner, BGP FSM, L2 frames and ownership, membership, nftables
//! rendering) with thin I/O edges (kube watches, sockets, `nft`). Each module's header says
//! where its I/O stops.

pub mod api_writer;
pub mod bfd;
pub mod bgp;
pub mod checkpoint;
pub mod convert;
pub mod forwarding;
pub mod l2;
pub mod membership;
pub mod metric_group;
pub mod metrics;
pub mod model;
pub mod net;
pub mod observability;
pub mod planner;
pub mod runtime;
pub mod task;

//! herald-speaker: per-node announcement of LoadBalancer addresses.
//!
//! Pure cores (model, planner, nftables rendering) with thin I/O edges (kube watches,
//! sockets, `nft`). The protocols are crates without I/O, re-exported under their old paths:
//! `herald-bgp` (codec, FSM), `herald-l2` (frames, announcer, ownership), `herald-membership`
//! and `herald-bfd`. Each module's header says where its I/O stops.

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

//! herald-controller: the pure allocator and the kube-runtime reconciler around it.
//!
//! Pure (no I/O, time passed in):
//! - [`allocator`]: which Service holds which address.
//! - [`convert`]: k8s-openapi objects into the allocator's plain input.
//! - [`service_view`]: a Service converted once per reconcile into what the planners read.
//! - [`service_plan`]: one Service reconcile as view in, actions out.
//! - [`conditions`]: `metav1.Condition` list bookkeeping.
//! - [`event_limit`]: at most one identical Event per object per window.
//! - [`pool_plan`]: pool status and finalizer as snapshot in, actions out.
//! - [`state`]: the allocator and bookkeeping shared by one term's reconciles.
//! - [`peer_status`]: which BGPPeer status entries of deleted Nodes to remove, and when
//!   (its `watch` submodule is the I/O edge the leader runs).
//!
//! I/O edges:
//! - [`reconciler`]: watches, the work queue, restore-then-allocate, the writes.
//! - [`leader`]: Lease-based leader election; closes the write gate on loss.
//! - [`http`] and [`metrics`]: `/metrics`, `/healthz`, `/readyz`.

pub mod allocator;
pub mod conditions;
pub mod convert;
pub mod event_limit;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod peer_status;
pub mod pool_plan;
pub mod reconciler;
pub mod service_plan;
pub mod service_view;
pub mod state;

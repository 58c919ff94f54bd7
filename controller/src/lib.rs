//! herald-controller: the pure allocator and the kube-runtime reconciler around it.

pub mod allocator;

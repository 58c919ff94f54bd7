//! herald-crds: the `herald.dev/v1alpha1` API (custom resource types), the well-known
//! annotation/label/finalizer names, and the address math shared by controller and speaker.
//!
//! Pure crate: no I/O happens here. Kubernetes objects are plain serde types.

pub mod address;
pub mod api;
pub mod names;

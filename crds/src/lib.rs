//! herald-crds: the `herald.dev/v1alpha1` API (custom resource types), the well-known
//! annotation/label/finalizer names, and the conversion of the API's shared pieces
//! (`metav1` label selectors) into Herald's vocabulary (`herald-model`).
//!
//! Pure crate: no I/O happens here. Kubernetes objects are plain serde types.

pub mod api;
pub mod convert;
pub mod names;

/// The address math shared by controller and speaker, kept at its old path.
pub use herald_model::address;

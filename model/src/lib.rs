//! herald-model: the vocabulary controller and speaker share, as plain data.
//!
//! - [`ServiceKey`], [`Protocol`], [`TrafficPolicy`] ([`service`]): how a Service is named
//!   and what its ports and `externalTrafficPolicy` mean.
//! - [`LabelSelector`] and its operators with their matching ([`selector`]), the semantics of
//!   `metav1.LabelSelector`.
//! - [`address`]: pool entries (`AddressRange`), address families and the address math on them.
//!
//! No I/O and no Kubernetes types: the API's objects are converted into these at the edges
//! (`herald_crds::convert` for `metav1` selectors). The crate depends on nothing but
//! `thiserror`, so pure protocol crates may use it.

pub mod address;
pub mod selector;
pub mod service;

pub use selector::{
    LabelSelector, Labels, SelectorOperator, SelectorRequirement, UnknownOperator,
    any_selector_matches,
};
pub use service::{Protocol, ServiceKey, TrafficPolicy, UnknownValue};

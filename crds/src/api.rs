//! The `herald.dev/v1alpha1` custom resources: `IPAddressPool`, `L2Advertisement`, `BGPPeer`,
//! `BGPAdvertisement`, `Community` and `BFDProfile`.
//!
//! Owns the Rust types, their OpenAPI schema with the apiserver-side validation (patterns,
//! ranges and CEL rules, see [`schema`]), printer columns and short names, and the rendering of
//! the CRD YAML ([`generate`]). Field names follow MetalLB's so manifests translate one to one.
//! Addresses stay strings here; [`crate::address`] parses them. Pure: no I/O.

pub mod bfd_profile;
pub mod bgp_advertisement;
pub mod bgp_peer;
pub mod bgp_timers;
pub mod community;
pub mod duration;
pub mod generate;
pub mod l2;
pub mod pool;
pub mod schema;

pub use bfd_profile::{BFDProfile, BFDProfileSpec};
pub use bgp_advertisement::{
    BGPAdvertisement, BGPAdvertisementSpec, LinkBandwidth, LinkBandwidthMode,
};
pub use bgp_peer::{
    BFDSessionStatus, BGPPeer, BGPPeerSpec, BGPPeerStatus, BGPSessionState, BGPSessionStatus,
    PasswordSecretRef,
};
pub use bgp_timers::{TimerError, check_timers};
pub use community::{
    Community, CommunityAlias, CommunityError, CommunityRef, CommunitySpec, CommunityValue,
};
pub use duration::{DurationError, format_duration, parse_duration};
pub use l2::{L2Advertisement, L2AdvertisementSpec};
pub use pool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};

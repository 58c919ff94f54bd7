//! MetalLB's API as `herald migrate` reads it: group `metallb.io`, version `v1beta1` for
//! every kind and `v1beta2` for `BGPPeer`; the Service annotations under `metallb.io/` and
//! the older `metallb.universe.tf/`; and Go's duration syntax (`metav1.Duration`) used by the
//! BGP timers.
//!
//! The types were written from MetalLB's documented API (field names and meaning), not from
//! its code. Every spec field MetalLB defines is listed in [`known_spec_fields`], so fields
//! that are not MetalLB's are reported instead of silently dropped. Pure: no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

/// API group of MetalLB's custom resources.
pub const GROUP: &str = "metallb.io";
/// Annotation prefix of current MetalLB releases.
pub const ANNOTATION_PREFIX: &str = "metallb.io/";
/// Annotation prefix of MetalLB releases before 0.13 (still read by later ones).
pub const LEGACY_ANNOTATION_PREFIX: &str = "metallb.universe.tf/";

/// The Service annotations MetalLB reads or writes, by name after the prefix.
pub const SERVICE_ANNOTATIONS: [&str; 4] = [
    "address-pool",
    "loadBalancerIPs",
    "allow-shared-ip",
    "ip-allocated-from-pool",
];

/// A MetalLB object: metadata and a typed spec; other top-level keys (status) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Object<S> {
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: Metadata,
    /// The spec (MetalLB accepts an advertisement without one: it then applies to everything).
    #[serde(default = "Option::default")]
    pub spec: Option<S>,
}

/// The parts of `metadata` the translation carries over.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// Object name.
    #[serde(default)]
    pub name: Option<String>,
    /// Object namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels (pool selectors match on them, so they are kept).
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `IPAddressPool` (v1beta1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs and `a-b` ranges.
    pub addresses: Vec<String>,
    /// Allocate without being asked (default true).
    #[serde(default)]
    pub auto_assign: Option<bool>,
    /// Skip `.0` and `.255`.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: Option<bool>,
    /// Which Services the pool serves.
    #[serde(default)]
    pub service_allocation: Option<ServiceAllocation>,
}

/// `IPAddressPool.spec.serviceAllocation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower is tried first; 0 (or absent) means no priority.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Namespaces served.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Selectors on Namespaces.
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Selectors on Services.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// `L2Advertisement` (v1beta1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name.
    #[serde(default, rename = "ipAddressPools")]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default, rename = "ipAddressPoolSelectors")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// `BGPAdvertisement` (v1beta1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// IPv4 route prefix length (default 32).
    #[serde(default)]
    pub aggregation_length: Option<i64>,
    /// IPv6 route prefix length (default 128).
    #[serde(default, rename = "aggregationLengthV6")]
    pub aggregation_length_v6: Option<i64>,
    /// LOCAL_PREF; 0 means unset.
    #[serde(default)]
    pub local_pref: Option<u32>,
    /// Communities: values or Community alias names.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Pools by name.
    #[serde(default, rename = "ipAddressPools")]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default, rename = "ipAddressPoolSelectors")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Peers by name; empty means all.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `BGPPeer`, the union of v1beta1 and v1beta2 (v1beta1 is a subset; its node selectors
/// have the shape of a label selector).
#[derive(Debug, Clone, Deserialize)]
pub struct BGPPeerSpec {
    /// Local ASN.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// Peer ASN (v1beta2: optional when `dynamicASN` is set).
    #[serde(default, rename = "peerASN")]
    pub peer_asn: Option<u32>,
    /// v1beta2: `internal` or `external` instead of a fixed peer ASN.
    #[serde(default, rename = "dynamicASN")]
    pub dynamic_asn: Option<String>,
    /// Address to dial.
    #[serde(rename = "peerAddress")]
    pub peer_address: String,
    /// Local address to dial from.
    #[serde(default, rename = "sourceAddress")]
    pub source_address: Option<String>,
    /// TCP port (0 or absent: 179).
    #[serde(default, rename = "peerPort")]
    pub peer_port: Option<u16>,
    /// Go duration.
    #[serde(default, rename = "holdTime")]
    pub hold_time: Option<String>,
    /// Go duration.
    #[serde(default, rename = "keepaliveTime")]
    pub keepalive_time: Option<String>,
    /// v1beta2, Go duration.
    #[serde(default, rename = "connectTime")]
    pub connect_time: Option<String>,
    /// BGP identifier.
    #[serde(default, rename = "routerID")]
    pub router_id: Option<String>,
    /// Nodes that peer.
    #[serde(default, rename = "nodeSelectors")]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password in clear.
    #[serde(default)]
    pub password: Option<String>,
    /// v1beta2: Secret with the password (key `password`).
    #[serde(default, rename = "passwordSecret")]
    pub password_secret: Option<SecretReference>,
    /// BFD profile name.
    #[serde(default, rename = "bfdProfile")]
    pub bfd_profile: Option<String>,
    /// v1beta2: graceful restart.
    #[serde(default, rename = "enableGracefulRestart")]
    pub enable_graceful_restart: Option<bool>,
    /// Multi-hop eBGP.
    #[serde(default, rename = "ebgpMultiHop")]
    pub ebgp_multi_hop: Option<bool>,
    /// Host VRF to peer from.
    #[serde(default)]
    pub vrf: Option<String>,
    /// v1beta2: separate sessions per address family.
    #[serde(default, rename = "disableMP")]
    pub disable_mp: Option<bool>,
    /// v1beta2 (FRR mode): unnumbered BGP over this interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// v1beta2 (FRR mode): advertise both families over one session.
    #[serde(default, rename = "dualStackAddressFamily")]
    pub dual_stack_address_family: Option<bool>,
}

/// `core/v1` SecretReference.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretReference {
    /// Secret name.
    #[serde(default)]
    pub name: Option<String>,
    /// Secret namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `BFDProfile` (v1beta1); intervals in milliseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Minimum receive interval, ms.
    #[serde(default)]
    pub receive_interval: Option<u32>,
    /// Minimum transmit interval, ms.
    #[serde(default)]
    pub transmit_interval: Option<u32>,
    /// Detection multiplier.
    #[serde(default)]
    pub detect_multiplier: Option<u32>,
    /// Echo transmit interval, ms.
    #[serde(default)]
    pub echo_interval: Option<u32>,
    /// Echo mode.
    #[serde(default)]
    pub echo_mode: Option<bool>,
    /// Wait for the peer to start.
    #[serde(default)]
    pub passive_mode: Option<bool>,
    /// Minimum incoming TTL (multi-hop).
    #[serde(default)]
    pub minimum_ttl: Option<u32>,
}

/// `Community` (v1beta1).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommunitySpec {
    /// The aliases.
    #[serde(default)]
    pub communities: Vec<CommunityAlias>,
}

/// One alias.
#[derive(Debug, Clone, Deserialize)]
pub struct CommunityAlias {
    /// Alias name.
    pub name: String,
    /// Community value.
    pub value: String,
}

/// The MetalLB kinds `herald migrate` translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IPAddressPool.
    IPAddressPool,
    /// L2Advertisement.
    L2Advertisement,
    /// BGPAdvertisement.
    BGPAdvertisement,
    /// BGPPeer.
    BGPPeer,
    /// BFDProfile.
    BFDProfile,
    /// Community.
    Community,
}

impl Kind {
    /// Every kind, in the order manifests are written (pools first).
    pub const ALL: [Kind; 6] = [
        Kind::IPAddressPool,
        Kind::Community,
        Kind::BFDProfile,
        Kind::BGPPeer,
        Kind::BGPAdvertisement,
        Kind::L2Advertisement,
    ];

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IPAddressPool => "IPAddressPool",
            Kind::L2Advertisement => "L2Advertisement",
            Kind::BGPAdvertisement => "BGPAdvertisement",
            Kind::BGPPeer => "BGPPeer",
            Kind::BFDProfile => "BFDProfile",
            Kind::Community => "Community",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The versions MetalLB serves the kind in.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::BGPPeer => &["v1beta2", "v1beta1"],
            _ => &["v1beta1"],
        }
    }

    /// Lower-case plural (the API resource name).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IPAddressPool => "ipaddresspools",
            Kind::L2Advertisement => "l2advertisements",
            Kind::BGPAdvertisement => "bgpadvertisements",
            Kind::BGPPeer => "bgppeers",
            Kind::BFDProfile => "bfdprofiles",
            Kind::Community => "communities",
        }
    }
}

/// MetalLB kinds that carry state, not configuration: nothing to translate.
pub const STATUS_KINDS: [&str; 4] = [
    "ServiceL2Status",
    "ServiceBGPStatus",
    "ConfigurationState",
    "ConfigurationStatus",
];

/// MetalLB kinds from old releases that Herald has no counterpart for.
pub const RETIRED_KINDS: [(&str, &str); 2] = [
    (
        "AddressPool",
        "the pre-0.13 pool kind: convert it to IPAddressPool plus L2Advertisement/BGPAdvertisement (MetalLB's own upgrade path) and run herald migrate on the result",
    ),
    (
        "IPPool",
        "not a kind of a MetalLB release Herald knows; translate it by hand",
    ),
];

/// The spec fields MetalLB defines for `kind` at `version`.
pub fn known_spec_fields(kind: Kind, version: &str) -> &'static [&'static str] {
    match (kind, version) {
        (Kind::IPAddressPool, _) => &[
            "addresses",
            "autoAssign",
            "avoidBuggyIPs",
            "serviceAllocation",
        ],
        (Kind::L2Advertisement, _) => &[
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "interfaces",
        ],
        (Kind::BGPAdvertisement, _) => &[
            "aggregationLength",
            "aggregationLengthV6",
            "localPref",
            "communities",
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "peers",
        ],
        (Kind::BGPPeer, "v1beta1") => &[
            "myASN",
            "peerASN",
            "peerAddress",
            "sourceAddress",
            "peerPort",
            "holdTime",
            "keepaliveTime",
            "routerID",
            "nodeSelectors",
            "password",
            "bfdProfile",
            "ebgpMultiHop",
            "vrf",
        ],
        (Kind::BGPPeer, _) => &[
            "myASN",
            "peerASN",
            "dynamicASN",
            "peerAddress",
            "sourceAddress",
            "peerPort",
            "holdTime",
            "keepaliveTime",
            "connectTime",
            "routerID",
            "nodeSelectors",
            "password",
            "passwordSecret",
            "bfdProfile",
            "enableGracefulRestart",
            "ebgpMultiHop",
            "vrf",
            "disableMP",
            "interface",
            "dualStackAddressFamily",
        ],
        (Kind::BFDProfile, _) => &[
            "receiveInterval",
            "transmitInterval",
            "detectMultiplier",
            "echoInterval",
            "echoMode",
            "passiveMode",
            "minimumTtl",
        ],
        (Kind::Community, _) => &["communities"],
    }
}

/// Why a Go duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration (write e.g. 90s, 1m30s, 500ms)")]
pub struct GoDurationError {
    /// The text.
    pub text: String,
}

/// Parses Go's `time.ParseDuration` syntax (`90s`, `1m30s`, `1.5h`, `500ms`, `0`) into
/// nanoseconds. Negative durations are refused (no BGP timer is negative).
pub fn parse_go_duration(text: &str) -> Result<u128, GoDurationError> {
    let error = || GoDurationError {
        text: text.to_owned(),
    };
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(error());
    }
    let mut total: u128 = 0;
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let mut whole = String::new();
        while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
            whole.push(c);
            chars.next();
        }
        let mut fraction = String::new();
        if chars.peek() == Some(&'.') {
            chars.next();
            while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
                fraction.push(c);
                chars.next();
            }
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(error());
        }
        let mut unit = String::new();
        while let Some(c) = chars
            .peek()
            .copied()
            .filter(|c| !c.is_ascii_digit() && *c != '.')
        {
            unit.push(c);
            chars.next();
        }
        let scale: u128 = match unit.as_str() {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(error()),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(error)?;
        // Fraction digits beyond nanosecond precision are dropped, as Go does.
        let mut divisor: u128 = 1;
        let mut fraction_value: u128 = 0;
        for digit in fraction.chars().take(30) {
            fraction_value = fraction_value * 10 + u128::from(digit.to_digit(10).unwrap_or(0));
            divisor *= 10;
        }
        part = part
            .checked_add(fraction_value * scale / divisor)
            .ok_or_else(error)?;
        total = total.checked_add(part).ok_or_else(error)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_to_nanoseconds() {
        let s = 1_000_000_000u128;
        assert_eq!(parse_go_duration("90s"), Ok(90 * s));
        assert_eq!(parse_go_duration("1m30s"), Ok(90 * s));
        assert_eq!(parse_go_duration("1.5h"), Ok(5400 * s));
        assert_eq!(parse_go_duration("500ms"), Ok(s / 2));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("2h45m"), Ok((2 * 3600 + 45 * 60) * s));
        assert_eq!(parse_go_duration("1µs"), Ok(1_000));
    }

    #[test]
    fn malformed_go_durations_are_refused() {
        for text in ["", "90", "s", "1x", "-5s", "1..5s", "."] {
            assert!(parse_go_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn bgppeer_v1beta1_is_a_subset_of_v1beta2() {
        let v1 = known_spec_fields(Kind::BGPPeer, "v1beta1");
        let v2 = known_spec_fields(Kind::BGPPeer, "v1beta2");
        assert!(v1.iter().all(|f| v2.contains(f)));
        assert!(!v1.contains(&"connectTime"));
    }
}

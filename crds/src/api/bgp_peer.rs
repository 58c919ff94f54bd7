//! `BGPPeer`: a BGP neighbour (an upstream router) the speakers open sessions to, with the
//! session parameters of RFC 4271, and a per-node session status. Pure data: no I/O.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{DurationError, parse_duration};
use super::schema;

/// Hold time proposed when `holdTime` is unset (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// Time between connection attempts when `connectTime` is unset (RFC 4271 §10 suggests
/// 120 s for ConnectRetryTimer; a data-centre fabric wants the session back much sooner).
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(10);
/// TCP port of BGP (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// Key read from the password Secret when `passwordSecret.key` is unset.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// A BGP neighbour that speakers on the selected nodes peer with.
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    namespaced,
    status = "BGPPeerStatus",
    derive = "PartialEq",
    shortname = "bgpp",
    category = "herald",
    doc = "BGPPeer is a BGP neighbour (usually an upstream router) that the speakers on the selected nodes open sessions to, announcing Service addresses as routes.",
    printcolumn(
        name = "Peer Address",
        type_ = "string",
        json_path = ".spec.peerAddress"
    ),
    printcolumn(name = "Peer ASN", type_ = "integer", json_path = ".spec.peerASN"),
    printcolumn(name = "My ASN", type_ = "integer", json_path = ".spec.myASN"),
    printcolumn(
        name = "Port",
        type_ = "integer",
        json_path = ".spec.peerPort",
        priority = 1
    ),
    printcolumn(
        name = "Hold Time",
        type_ = "string",
        json_path = ".spec.holdTime",
        priority = 1
    ),
    printcolumn(
        name = "Multihop",
        type_ = "boolean",
        json_path = ".spec.ebgpMultiHop",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(extend("x-kubernetes-validations" = schema::bgp_peer_spec_rules()))]
pub struct BGPPeerSpec {
    /// AS number the speakers use for this session (1..4294967295; 4-octet ASNs per RFC 6793).
    #[serde(rename = "myASN")]
    #[schemars(schema_with = "schema::asn")]
    pub my_asn: u32,

    /// AS number of the peer (1..4294967295). Equal to `myASN` for iBGP, different for eBGP.
    #[serde(rename = "peerASN")]
    #[schemars(schema_with = "schema::asn")]
    pub peer_asn: u32,

    /// IPv4 or IPv6 address of the peer.
    #[serde(rename = "peerAddress")]
    #[schemars(schema_with = "schema::ip_address")]
    pub peer_address: String,

    /// TCP port of the peer.
    #[serde(rename = "peerPort", default = "default_bgp_port")]
    #[schemars(range(min = 1), extend("format" = "int32"))]
    pub peer_port: u16,

    /// Local address to open the session from; must be of the peer's family. Unset: the
    /// node's address on the route towards the peer.
    #[serde(
        rename = "sourceAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::optional_ip_address")]
    pub source_address: Option<String>,

    /// BGP identifier (RFC 6286) to use, an IPv4 address. Unset: the node's first IPv4 address.
    #[serde(rename = "routerID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_router_id")]
    pub router_id: Option<String>,

    /// Hold time proposed in OPEN, as a duration in whole seconds (`90s`, `3m`): `0s`
    /// disables keepalives, otherwise 3s..65535s (RFC 4271 §4.2). Unset: 90s. The session
    /// uses the smaller of this and the peer's proposal.
    #[serde(rename = "holdTime", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::hold_time")]
    pub hold_time: Option<String>,

    /// Interval between KEEPALIVE messages, as a duration (`30s`): above 0s and below the
    /// hold time, or `0s` when the hold time is `0s`. Unset: a third of the negotiated hold
    /// time (RFC 4271 §10).
    #[serde(
        rename = "keepaliveTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::keepalive_time")]
    pub keepalive_time: Option<String>,

    /// Wait between attempts to open the TCP connection (ConnectRetryTimer, RFC 4271 §8), as
    /// a duration (`10s`), 1s..65535s. Unset: 10s.
    #[serde(
        rename = "connectTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::connect_time")]
    pub connect_time: Option<String>,

    /// Allow an eBGP peer that is more than one hop away (the TTL is raised to 255 instead
    /// of 1).
    #[serde(rename = "ebgpMultiHop", default)]
    pub ebgp_multi_hop: bool,

    /// Secret (in the peer's namespace) holding the TCP MD5 signature password (RFC 2385).
    /// Unset: no password.
    #[serde(
        rename = "passwordSecret",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub password_secret: Option<PasswordSecretRef>,

    /// Label selectors on Node objects: only speakers on matching nodes peer with this
    /// neighbour. Empty means every node.
    #[serde(
        rename = "nodeSelectors",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(transform = schema::list_atomic)]
    pub node_selectors: Vec<LabelSelector>,

    /// Advertise the Graceful Restart capability (RFC 4724), so the peer keeps our routes
    /// while a speaker restarts.
    #[serde(rename = "enableGracefulRestart", default)]
    pub enable_graceful_restart: bool,

    /// Name of a BFDProfile (in the peer's namespace): run a BFD session (RFC 5880) with the
    /// peer beside the BGP session, and take the BGP session down as soon as BFD sees the path
    /// fail (RFC 5882). Single hop (RFC 5881) unless `ebgpMultiHop` (RFC 5883). Unset: no BFD.
    #[serde(
        rename = "bfdProfile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::optional_object_name")]
    pub bfd_profile: Option<String>,
}

impl BGPPeerSpec {
    /// A spec with the required fields set and every other field at its default.
    pub fn new(my_asn: u32, peer_asn: u32, peer_address: impl Into<String>) -> Self {
        Self {
            my_asn,
            peer_asn,
            peer_address: peer_address.into(),
            peer_port: BGP_PORT,
            source_address: None,
            router_id: None,
            hold_time: None,
            keepalive_time: None,
            connect_time: None,
            ebgp_multi_hop: false,
            password_secret: None,
            node_selectors: Vec::new(),
            enable_graceful_restart: false,
            bfd_profile: None,
        }
    }

    /// The hold time to propose: `holdTime`, or [`DEFAULT_HOLD_TIME`].
    pub fn hold_time(&self) -> Result<Duration, DurationError> {
        self.hold_time
            .as_deref()
            .map_or(Ok(DEFAULT_HOLD_TIME), parse_duration)
    }

    /// The configured keepalive interval, if any. When unset the session uses a third of the
    /// negotiated hold time, which only the session knows.
    pub fn keepalive_time(&self) -> Result<Option<Duration>, DurationError> {
        self.keepalive_time
            .as_deref()
            .map(parse_duration)
            .transpose()
    }

    /// The connect-retry interval: `connectTime`, or [`DEFAULT_CONNECT_TIME`].
    pub fn connect_time(&self) -> Result<Duration, DurationError> {
        self.connect_time
            .as_deref()
            .map_or(Ok(DEFAULT_CONNECT_TIME), parse_duration)
    }

    /// Whether this is an eBGP session (the two AS numbers differ).
    pub fn is_ebgp(&self) -> bool {
        self.my_asn != self.peer_asn
    }
}

/// Where the TCP MD5 password is stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PasswordSecretRef {
    /// Name of the Secret, in the namespace of the BGPPeer.
    #[schemars(schema_with = "schema::object_name")]
    pub name: String,

    /// Key within the Secret's data that holds the password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Session state per node, written by the speakers (each speaker owns its own entry).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct BGPPeerStatus {
    /// One entry per node whose speaker peers with this neighbour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_map_by_node)]
    pub sessions: Vec<BGPSessionStatus>,

    /// One entry per node whose speaker runs a BFD session with this neighbour (the peer
    /// names a BFDProfile). Written by the speakers beside `sessions`, each its own entry.
    #[serde(rename = "bfdSessions", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_map_by_node)]
    pub bfd_sessions: Vec<BFDSessionStatus>,
}

/// The state of one speaker's session with the peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPSessionStatus {
    /// Name of the node whose speaker holds the session.
    pub node: String,

    /// Session state (RFC 4271 §8.2.2).
    pub state: BGPSessionState,

    /// When the session entered this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,

    /// Why the last session ended (a NOTIFICATION, a hold timer expiry, a connection error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,

    /// Number of prefixes currently advertised to the peer over this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_prefixes: Option<i64>,
}

/// One speaker's BFD session with the peer (RFC 5880).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BFDSessionStatus {
    /// Name of the node whose speaker runs the session.
    pub node: String,

    /// Session state (RFC 5880 §4.1): `adminDown`, `down`, `init` or `up`.
    pub state: String,

    /// Diagnostic of the last time the session went down (RFC 5880 §4.1), e.g.
    /// `controlDetectionTimeExpired`, `neighborSignaledSessionDown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,

    /// Negotiated transmit interval in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmit_interval: Option<i64>,

    /// Detection time for the peer in milliseconds (RFC 5880 §6.8.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_time: Option<i64>,
}

/// The states of the BGP finite-state machine (RFC 4271 §8.2.2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BGPSessionState {
    /// Not trying to connect (disabled or backing off).
    Idle,
    /// Waiting for the TCP connection to complete.
    Connect,
    /// Listening for the peer to connect after a failed attempt.
    Active,
    /// OPEN sent, waiting for the peer's OPEN.
    OpenSent,
    /// OPEN exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Session up; routes are exchanged.
    Established,
}

fn default_bgp_port() -> u16 {
    BGP_PORT
}

fn default_password_key() -> String {
    DEFAULT_PASSWORD_KEY.to_owned()
}

//! How a Service is named, and the enums of its spec both binaries read: port protocols and
//! `externalTrafficPolicy`. Pure data; parsed from the API's spelling with `FromStr`.

use std::fmt;
use std::str::FromStr;

/// A Service's identity: namespace and name. Sorts by namespace, then name; displays as
/// `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key of Service `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Service field value Kubernetes does not define (the API server would not accept it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {field} {value:?}")]
pub struct UnknownValue {
    /// The field, e.g. `protocol`.
    pub field: &'static str,
    /// The value found.
    pub value: String,
}

/// Transport protocol of a Service port (the three Kubernetes supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol's name in lower case, as nftables writes it (`inet_proto` values).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The protocol of an nftables name ([`Protocol::nft_name`]), as `nft -j` prints it.
    pub fn from_nft_name(name: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|protocol| protocol.nft_name() == name)
    }
}

impl fmt::Display for Protocol {
    /// The API's spelling: `TCP`, `UDP`, `SCTP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

impl FromStr for Protocol {
    type Err = UnknownValue;

    /// `TCP`, `UDP` or `SCTP`, as the API spells them (an absent protocol means TCP; the
    /// caller decides that).
    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(UnknownValue {
                field: "protocol",
                value: other.to_owned(),
            }),
        }
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrafficPolicy {
    /// Any node may receive the traffic and forward it to any ready endpoint (the source
    /// address may be rewritten).
    #[default]
    Cluster,
    /// Only nodes with a ready local endpoint receive traffic; the client address is kept.
    Local,
}

impl FromStr for TrafficPolicy {
    type Err = UnknownValue;

    /// `Cluster` or `Local`.
    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "Cluster" => Ok(TrafficPolicy::Cluster),
            "Local" => Ok(TrafficPolicy::Local),
            other => Err(UnknownValue {
                field: "externalTrafficPolicy",
                value: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_from_their_api_names_and_display_them_back() {
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            assert_eq!(protocol.to_string().parse(), Ok(protocol));
        }
        assert_eq!(Protocol::Sctp.nft_name(), "sctp");
        assert_eq!(Protocol::from_nft_name("udp"), Some(Protocol::Udp));
        assert_eq!(Protocol::from_nft_name("UDP"), None);
        assert!("tcp".parse::<Protocol>().is_err());
    }

    #[test]
    fn traffic_policies_parse_from_their_api_names_only() {
        assert_eq!("Local".parse(), Ok(TrafficPolicy::Local));
        assert_eq!(
            "local".parse::<TrafficPolicy>(),
            Err(UnknownValue {
                field: "externalTrafficPolicy",
                value: "local".into()
            })
        );
    }

    #[test]
    fn service_keys_sort_by_namespace_then_name() {
        assert!(ServiceKey::new("a", "z") < ServiceKey::new("b", "a"));
        assert_eq!(ServiceKey::new("ns", "web").to_string(), "ns/web");
    }
}

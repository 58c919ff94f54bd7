//! The desired nftables state of Herald's own table, as data.
//!
//! Owns the translation from the planner's forwarding decisions into a [`Ruleset`]: which
//! map elements exist, which per-service chains pick among which per-endpoint chains, and
//! what each endpoint chain does. Chain names are derived from their content, so the same
//! input always yields the same names (golden files and diffs stay stable). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::model::{Protocol, ServiceKey};
use crate::planner::{ForwardKey, ForwardTarget};

/// nftables family of Herald's table: `inet` covers IPv4 and IPv6 in one table.
pub const TABLE_FAMILY: &str = "inet";
/// Herald's table. Herald never touches any other table.
pub const TABLE_NAME: &str = "herald";

/// Packet mark bit that asks the postrouting chain to masquerade. Chosen clear of the bits
/// kube-proxy uses (0x4000 masquerade, 0x8000 drop) and of Cilium's 0x0F00 range; it can
/// be changed per install where another component already uses it.
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x0000_2000;

/// Longest chain name nftables accepts is 256 bytes (NFT_CHAIN_MAXNAMELEN); stay well below.
const MAX_CHAIN_NAME: usize = 200;

/// How a service chain picks one of its endpoints for a new connection. Both are uniform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointPick {
    /// One rule per endpoint: rule k (of N) is `numgen random mod (N-k) 0 goto ep_k`, the
    /// last a plain `goto`. Endpoint k is taken with probability
    /// (1 - 1/N)(1 - 1/(N-1))…(1/(N-k)) = 1/N. No sets, so the kernel's cost stays linear in
    /// the number of Services. Each rule draws afresh, so a new connection evaluates at most
    /// N rules (nat chains only see a connection's first packet).
    #[default]
    Cascade,
    /// `numgen random mod N vmap { 0 : goto ep_0, … }`, as kube-proxy writes it. Every such
    /// rule creates an anonymous set, and the kernel's set naming and lookup walk the list of
    /// the table's sets, so loading grows quadratically: measured here, 4,000 Services took
    /// 2.8 s of kernel time and 8,000 took 20 s (the cascade: 0.4 s and 0.8 s). Kept as the
    /// benchmark's reference.
    NumgenVmap,
}

/// A per-service-port chain: picks one endpoint chain uniformly at random.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChain {
    /// Endpoint chain names, sorted. Never empty (a Service without ready endpoints is
    /// listed in [`Ruleset::no_endpoints`] instead).
    pub endpoint_chains: Vec<String>,
}

/// A per-endpoint chain: optionally marks the packet for masquerade, then DNATs to the
/// endpoint. Its name is derived from exactly these fields, so a name never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointChain {
    pub protocol: Protocol,
    pub address: IpAddr,
    pub port: u16,
    pub masquerade: bool,
}

/// The whole desired content of `table inet herald`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub masquerade_mark: u32,
    pub endpoint_pick: EndpointPick,
    /// Address . protocol . port -> service chain to `goto`.
    pub services: BTreeMap<ForwardKey, String>,
    /// Address . protocol . port of `Cluster` Services with no ready endpoint: rejected.
    pub no_endpoints: BTreeSet<ForwardKey>,
    pub service_chains: BTreeMap<String, ServiceChain>,
    pub endpoint_chains: BTreeMap<String, EndpointChain>,
}

impl Ruleset {
    /// An empty ruleset (the table with its base chains and empty maps).
    pub fn empty(masquerade_mark: u32) -> Self {
        Self {
            masquerade_mark,
            endpoint_pick: EndpointPick::default(),
            services: BTreeMap::new(),
            no_endpoints: BTreeSet::new(),
            service_chains: BTreeMap::new(),
            endpoint_chains: BTreeMap::new(),
        }
    }

    /// Builds the ruleset for the planner's forwarding decisions.
    pub fn from_plan(
        forwarding: &BTreeMap<ForwardKey, ForwardTarget>,
        masquerade_mark: u32,
    ) -> Self {
        let mut ruleset = Self::empty(masquerade_mark);
        for (key, target) in forwarding {
            if target.backends.is_empty() {
                ruleset.no_endpoints.insert(*key);
                continue;
            }
            let chain_name = service_chain_name(
                &target.service,
                &target.port_name,
                key.protocol,
                key.port,
                key.address.is_ipv4(),
            );
            let mut endpoint_chains = Vec::with_capacity(target.backends.len());
            for backend in &target.backends {
                let endpoint = EndpointChain {
                    protocol: key.protocol,
                    address: backend.address,
                    port: backend.port,
                    masquerade: backend.masquerade,
                };
                let name = endpoint_chain_name(&endpoint);
                ruleset.endpoint_chains.insert(name.clone(), endpoint);
                endpoint_chains.push(name);
            }
            endpoint_chains.sort();
            endpoint_chains.dedup();
            ruleset
                .service_chains
                .entry(chain_name.clone())
                .or_insert(ServiceChain { endpoint_chains });
            ruleset.services.insert(*key, chain_name);
        }
        ruleset
    }

    /// The same ruleset with another way of picking endpoints.
    pub fn with_endpoint_pick(mut self, endpoint_pick: EndpointPick) -> Self {
        self.endpoint_pick = endpoint_pick;
        self
    }
}

/// Name of the chain for one Service port of one address family, e.g.
/// `svc4-k3j5x2qa-default/web/tcp/http`. Several addresses of a Service (ingress and
/// externalIPs) share it: their endpoints are the same.
pub fn service_chain_name(
    service: &ServiceKey,
    port_name: &str,
    protocol: Protocol,
    port: u16,
    ipv4: bool,
) -> String {
    let family = if ipv4 { "4" } else { "6" };
    let port_label = if port_name.is_empty() {
        port.to_string()
    } else {
        port_name.to_string()
    };
    let readable = format!(
        "{}/{}/{}/{}",
        service.namespace,
        service.name,
        protocol.nft_name(),
        port_label
    );
    let digest_input = format!("svc{family}\0{readable}\0{port}");
    chain_name(&format!("svc{family}"), &digest_input, &readable)
}

/// Name of an endpoint chain, e.g. `ep-3vq1mxa0-198.18.1.5/tcp/8080/masq`.
pub fn endpoint_chain_name(endpoint: &EndpointChain) -> String {
    let address = endpoint.address.to_string().replace(':', "-");
    let mut readable = format!(
        "{address}/{}/{}",
        endpoint.protocol.nft_name(),
        endpoint.port
    );
    if endpoint.masquerade {
        readable.push_str("/masq");
    }
    let digest_input = format!(
        "ep\0{}\0{}\0{}\0{}",
        endpoint.address, endpoint.protocol, endpoint.port, endpoint.masquerade
    );
    chain_name("ep", &digest_input, &readable)
}

/// `prefix-hash-readable`, with characters nft does not accept in an identifier replaced
/// and the result bounded in length. The hash (over the exact content) keeps names unique
/// even when the readable part is cleaned up or cut.
fn chain_name(prefix: &str, digest_input: &str, readable: &str) -> String {
    let digest = Sha256::digest(digest_input.as_bytes());
    let hash = base32_lower(&digest[..5]);
    let cleaned: String = readable
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{prefix}-{hash}-{cleaned}");
    name.truncate(MAX_CHAIN_NAME);
    name
}

/// RFC 4648 base32 (lower case, no padding) of 5 bytes: 8 characters.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits: u64 = 0;
    for byte in bytes.iter().take(5) {
        bits = (bits << 8) | u64::from(*byte);
    }
    (0..8)
        .rev()
        .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 0x1f) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Backend;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn key(address: &str, protocol: Protocol, port: u16) -> ForwardKey {
        ForwardKey {
            address: ip(address),
            protocol,
            port,
        }
    }

    fn target(name: &str, backends: &[(&str, u16, bool)]) -> ForwardTarget {
        ForwardTarget {
            service: ServiceKey::new("default", name),
            port_name: "http".into(),
            backends: backends
                .iter()
                .map(|(a, p, m)| Backend {
                    address: ip(a),
                    port: *p,
                    masquerade: *m,
                })
                .collect(),
        }
    }

    #[test]
    fn chain_names_are_readable_unique_and_valid_nft_identifiers() {
        let svc = service_chain_name(
            &ServiceKey::new("ns", "web"),
            "http",
            Protocol::Tcp,
            80,
            true,
        );
        assert!(svc.starts_with("svc4-"), "{svc}");
        assert!(svc.ends_with("-ns/web/tcp/http"), "{svc}");
        let v6 = service_chain_name(
            &ServiceKey::new("ns", "web"),
            "http",
            Protocol::Tcp,
            80,
            false,
        );
        assert_ne!(svc, v6);
        let ep = endpoint_chain_name(&EndpointChain {
            protocol: Protocol::Udp,
            address: ip("2001:db8:244:1::5"),
            port: 53,
            masquerade: true,
        });
        assert!(ep.ends_with("-2001-db8-244-1--5/udp/53/masq"), "{ep}");
        for name in [&svc, &v6, &ep] {
            assert!(name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/.-_".contains(c)),
                "{name}"
            );
        }
    }

    #[test]
    fn masquerading_and_direct_endpoint_chains_have_different_names() {
        let direct = EndpointChain {
            protocol: Protocol::Tcp,
            address: ip("198.18.1.5"),
            port: 8080,
            masquerade: false,
        };
        let masq = EndpointChain {
            masquerade: true,
            ..direct
        };
        assert_ne!(endpoint_chain_name(&direct), endpoint_chain_name(&masq));
    }

    #[test]
    fn an_overlong_or_odd_name_is_cleaned_and_bounded() {
        let long = "x".repeat(300);
        let name = service_chain_name(
            &ServiceKey::new("ns", &long),
            "a b",
            Protocol::Sctp,
            9,
            true,
        );
        assert!(name.len() <= MAX_CHAIN_NAME);
        assert!(!name.contains(' '));
    }

    #[test]
    fn base32_of_five_bytes_matches_rfc_4648() {
        // RFC 4648 §10: BASE32("fooba") = "MZXW6YTB".
        assert_eq!(base32_lower(b"fooba"), "mzxw6ytb");
    }

    #[test]
    fn two_addresses_of_one_service_port_share_a_service_chain() {
        let forwarding: BTreeMap<ForwardKey, ForwardTarget> = [
            (
                key("203.0.113.10", Protocol::Tcp, 80),
                target("web", &[("198.18.1.5", 8080, false)]),
            ),
            (
                key("192.0.2.200", Protocol::Tcp, 80),
                target("web", &[("198.18.1.5", 8080, false)]),
            ),
        ]
        .into();
        let ruleset = Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK);
        assert_eq!(ruleset.services.len(), 2);
        assert_eq!(ruleset.service_chains.len(), 1);
        assert_eq!(ruleset.endpoint_chains.len(), 1);
    }

    #[test]
    fn a_service_without_backends_goes_to_the_no_endpoints_set_and_gets_no_chain() {
        let forwarding: BTreeMap<ForwardKey, ForwardTarget> =
            [(key("203.0.113.10", Protocol::Udp, 53), target("dns", &[]))].into();
        let ruleset = Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK);
        assert!(ruleset.services.is_empty());
        assert!(ruleset.service_chains.is_empty());
        assert_eq!(
            ruleset.no_endpoints,
            [key("203.0.113.10", Protocol::Udp, 53)].into()
        );
    }

    #[test]
    fn endpoints_shared_by_two_services_share_one_endpoint_chain() {
        let forwarding: BTreeMap<ForwardKey, ForwardTarget> = [
            (
                key("203.0.113.10", Protocol::Tcp, 80),
                target(
                    "a",
                    &[("198.18.1.5", 8080, true), ("198.18.1.6", 8080, false)],
                ),
            ),
            (
                key("203.0.113.11", Protocol::Tcp, 80),
                target("b", &[("198.18.1.5", 8080, true)]),
            ),
        ]
        .into();
        let ruleset = Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK);
        assert_eq!(ruleset.service_chains.len(), 2);
        assert_eq!(ruleset.endpoint_chains.len(), 2);
    }
}

//! The desired nftables state of Herald's own table, as data.
//!
//! Owns the translation from the planner's forwarding decisions into a [`Ruleset`]: which
//! map elements exist and which endpoints each per-service-port chain picks among. Chain
//! names are derived from the Service port they serve, so the same input always yields the
//! same names (golden files and diffs stay stable). Pure: no I/O.
//!
//! Layout choice, measured (see BENCHMARKS.md): one chain per Service port whose rules pick an
//! endpoint and DNAT to it directly. kube-proxy's layout (a chain per endpoint, picked by
//! `numgen random mod N vmap { … }`) loads quadratically in the kernel (every vmap is an
//! anonymous set; set naming and lookup walk the table's list of sets: 4,000 Services took
//! 2.8 s of kernel time, 8,000 took 20 s), and five times the chains make every incremental
//! `nft -f` slower, because nft 1.0.x lists every chain of the table before applying anything.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::model::{Protocol, ServiceKey};
use crate::planner::{Backend, ForwardKey, ForwardTarget};

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

/// A per-service-port chain: picks one endpoint uniformly at random for each new connection
/// and DNATs to it (marking it for masquerade when the endpoint is remote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChain {
    pub protocol: Protocol,
    /// Sorted, without duplicates, never empty (a Service without ready endpoints is listed
    /// in [`Ruleset::no_endpoints`] instead).
    pub backends: Vec<Backend>,
}

/// The whole desired content of `table inet herald`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub masquerade_mark: u32,
    /// Address . protocol . port -> service chain to `goto`.
    pub services: BTreeMap<ForwardKey, String>,
    /// Address . protocol . port of `Cluster` Services with no ready endpoint: rejected.
    pub no_endpoints: BTreeSet<ForwardKey>,
    pub service_chains: BTreeMap<String, ServiceChain>,
}

impl Ruleset {
    /// An empty ruleset (the table with its base chains and empty maps).
    pub fn empty(masquerade_mark: u32) -> Self {
        Self {
            masquerade_mark,
            services: BTreeMap::new(),
            no_endpoints: BTreeSet::new(),
            service_chains: BTreeMap::new(),
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
            let mut backends = target.backends.clone();
            backends.sort();
            backends.dedup();
            ruleset
                .service_chains
                .entry(chain_name.clone())
                .or_insert(ServiceChain {
                    protocol: key.protocol,
                    backends,
                });
            ruleset.services.insert(*key, chain_name);
        }
        ruleset
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
    use std::net::IpAddr;

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
        let unnamed =
            service_chain_name(&ServiceKey::new("ns", "web"), "", Protocol::Udp, 53, true);
        assert!(unnamed.ends_with("-ns/web/udp/53"), "{unnamed}");
        for name in [&svc, &v6, &unnamed] {
            assert!(name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/.-_".contains(c)),
                "{name}"
            );
        }
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
    fn a_service_chain_keeps_its_backends_sorted_and_once() {
        let forwarding: BTreeMap<ForwardKey, ForwardTarget> = [(
            key("203.0.113.10", Protocol::Tcp, 80),
            target(
                "a",
                &[
                    ("198.18.2.5", 8080, true),
                    ("198.18.1.5", 8080, false),
                    ("198.18.2.5", 8080, true),
                ],
            ),
        )]
        .into();
        let ruleset = Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK);
        let chain = ruleset.service_chains.values().next().expect("one chain");
        let addresses: Vec<String> = chain
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        assert_eq!(addresses, vec!["198.18.1.5", "198.18.2.5"]);
        assert_eq!(chain.protocol, Protocol::Tcp);
    }
}

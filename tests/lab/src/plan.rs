//! The lab's address plan and naming scheme (DESIGN.md, "The test lab"), as pure functions.
//! Nothing here touches the system: the topology builder asks this module which names and
//! addresses to use, and tests can ask it what to expect.
//!
//! | network | IPv4 | IPv6 |
//! |---|---|---|
//! | node LAN (router .1, node i at .10+i) | 192.0.2.0/24 | 2001:db8:1::/64 |
//! | client net (router .1, client .100) | 198.51.100.0/24 | 2001:db8:2::/64 |
//! | pod CIDR of node i (bridge .1, pod j at .10+j) | 198.18.i.0/24 | 2001:db8:244:i::/64 |
//! | control-plane link (apiserver .1, node i at .10+i) | 169.254.100.0/24 | — |
//!
//! IPv6 host parts are written with the same digits as the IPv4 ones (node 1 is
//! `2001:db8:1::11`), so addresses are easy to match up by eye.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{LabError, Result};

/// Every lab object name (namespace, root-namespace link, FRR instance) starts with this,
/// so `herald-lab down` can find what a crashed run left behind.
pub const GLOBAL_PREFIX: &str = "hl";
/// The fixed prefix of the lab that `herald-lab up` leaves running.
pub const UP_PREFIX: &str = "hlup";
/// The root-namespace bridge that carries the control-plane link.
pub const CP_BRIDGE: &str = "hlcp0";
/// The apiserver's address on [`CP_BRIDGE`].
pub const CP_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 1);
/// Prefix length of the control-plane link.
pub const CP_PREFIX_LEN: u8 = 24;
/// The apiserver's port.
pub const CP_PORT: u16 = 6443;
/// The cluster's Service IP ranges: dual-stack (IPv4 primary), so IPv6 and dual-stack
/// Services can be created.
pub const SERVICE_CIDR: &str = "198.19.0.0/16,2001:db8:ffff::/112";

/// The upstream router's ASN in generated FRR configs.
pub const ROUTER_ASN: u32 = 64500;
/// Default port of the echo server in pods.
pub const ECHO_PORT: u16 = 8080;

/// Largest node count a lab supports (keeps node addresses below the L2 pool at .128).
pub const MAX_NODES: usize = 64;
/// Largest pod count per node.
pub const MAX_PODS_PER_NODE: usize = 200;
/// Linux limit on interface name length (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Longest prefix we accept, so that every derived name fits the limits.
pub const PREFIX_MAX: usize = 7;

pub const LAN_V4: &str = "192.0.2.0/24";
pub const LAN_V6: &str = "2001:db8:1::/64";
pub const CLIENT_NET_V4: &str = "198.51.100.0/24";
pub const CLIENT_NET_V6: &str = "2001:db8:2::/64";
pub const POD_SUPERNET_V4: &str = "198.18.0.0/16";
pub const POD_SUPERNET_V6: &str = "2001:db8:244::/48";
pub const L2_POOL_V4: &str = "192.0.2.128/25";
pub const L2_POOL_V6: &str = "2001:db8:1::100/120";
pub const BGP_POOL_V4: &str = "203.0.113.0/24";
pub const BGP_POOL_V6: &str = "2001:db8:100::/120";
/// Every lab IPv6 address is inside this.
pub const DOC_V6: &str = "2001:db8::/32";

pub const ROUTER_LAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ROUTER_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const ROUTER_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const ROUTER_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x100);

/// Reads a decimal number's digits as hexadecimal (11 → 0x11), for the IPv6 host parts.
fn same_digits(n: usize) -> u16 {
    u16::from_str_radix(&n.to_string(), 16).unwrap_or(0)
}

fn check_node(node: usize) -> Result<u8> {
    if (1..=MAX_NODES).contains(&node) {
        u8::try_from(node).map_err(|_| LabError::Invalid(format!("node index {node}")))
    } else {
        Err(LabError::Invalid(format!(
            "node index {node} outside 1..={MAX_NODES}"
        )))
    }
}

fn check_pod(pod: usize) -> Result<u8> {
    if (1..=MAX_PODS_PER_NODE).contains(&pod) {
        u8::try_from(pod).map_err(|_| LabError::Invalid(format!("pod index {pod}")))
    } else {
        Err(LabError::Invalid(format!(
            "pod index {pod} outside 1..={MAX_PODS_PER_NODE}"
        )))
    }
}

/// Node `node`'s (1-based) address on the LAN.
pub fn node_lan_v4(node: usize) -> Result<Ipv4Addr> {
    Ok(Ipv4Addr::new(192, 0, 2, 10 + check_node(node)?))
}

/// Node `node`'s IPv6 address on the LAN.
pub fn node_lan_v6(node: usize) -> Result<Ipv6Addr> {
    check_node(node)?;
    Ok(Ipv6Addr::new(
        0x2001,
        0xdb8,
        1,
        0,
        0,
        0,
        0,
        same_digits(10 + node),
    ))
}

/// Node `node`'s address on the control-plane link.
pub fn node_cp_v4(node: usize) -> Result<Ipv4Addr> {
    Ok(Ipv4Addr::new(169, 254, 100, 10 + check_node(node)?))
}

/// Node `node`'s IPv4 pod CIDR, e.g. `198.18.1.0/24`.
pub fn pod_cidr_v4(node: usize) -> Result<String> {
    Ok(format!("198.18.{}.0/24", check_node(node)?))
}

/// Node `node`'s IPv6 pod CIDR, e.g. `2001:db8:244:1::/64`.
pub fn pod_cidr_v6(node: usize) -> Result<String> {
    Ok(format!("2001:db8:244:{}::/64", check_node(node)?))
}

/// The node-side gateway (pod bridge address) of node `node`'s pods.
pub fn pod_gateway_v4(node: usize) -> Result<Ipv4Addr> {
    Ok(Ipv4Addr::new(198, 18, check_node(node)?, 1))
}

/// IPv6 pod gateway of node `node`.
pub fn pod_gateway_v6(node: usize) -> Result<Ipv6Addr> {
    let n = check_node(node)?;
    Ok(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x244,
        same_digits(n.into()),
        0,
        0,
        0,
        1,
    ))
}

/// Pod `pod`'s (1-based, per node) IPv4 address on node `node`.
pub fn pod_v4(node: usize, pod: usize) -> Result<Ipv4Addr> {
    let n = check_node(node)?;
    let p = check_pod(pod)?;
    let host = 10u8
        .checked_add(p)
        .filter(|h| *h < 255)
        .ok_or_else(|| LabError::Invalid(format!("pod index {pod} too large")))?;
    Ok(Ipv4Addr::new(198, 18, n, host))
}

/// Pod `pod`'s IPv6 address on node `node`.
pub fn pod_v6(node: usize, pod: usize) -> Result<Ipv6Addr> {
    let n = check_node(node)?;
    check_pod(pod)?;
    Ok(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x244,
        same_digits(n.into()),
        0,
        0,
        0,
        same_digits(10 + pod),
    ))
}

/// Names of everything one lab creates, derived from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Validates `prefix`: starts with [`GLOBAL_PREFIX`], lowercase letters and digits only,
    /// at most [`PREFIX_MAX`] characters (so derived interface names fit in 15).
    pub fn new(prefix: &str) -> Result<Names> {
        let valid = prefix.starts_with(GLOBAL_PREFIX)
            && prefix.len() > GLOBAL_PREFIX.len()
            && prefix.len() <= PREFIX_MAX
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !CP_BRIDGE.starts_with(prefix)
            && !prefix.starts_with("hlcp");
        if valid {
            Ok(Names {
                prefix: prefix.to_string(),
            })
        } else {
            Err(LabError::Invalid(format!(
                "lab prefix {prefix:?}: must be `{GLOBAL_PREFIX}` + lowercase letters/digits, \
                 at most {PREFIX_MAX} characters, and not clash with {CP_BRIDGE}"
            )))
        }
    }

    /// A fresh prefix for a test lab: `hl` + a digit + 3 base-36 characters, derived from
    /// the process id, the time and a counter (unique among concurrent labs on one machine).
    pub fn unique() -> Names {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut seed = nanos
            ^ (u64::from(std::process::id()) << 20)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut prefix = String::from(GLOBAL_PREFIX);
        prefix.push(char::from(b'0' + (seed % 10) as u8));
        seed /= 10;
        for _ in 0..3 {
            prefix.push(char::from(ALPHABET[(seed % 36) as usize]));
            seed /= 36;
        }
        Names { prefix }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The switch namespace (holds the LAN bridge).
    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The router namespace; also the FRR instance name.
    pub fn router_ns(&self) -> String {
        format!("{}-r", self.prefix)
    }

    /// The client namespace.
    pub fn client_ns(&self) -> String {
        format!("{}-c", self.prefix)
    }

    /// Node `node`'s namespace; also its Kubernetes Node name.
    pub fn node_ns(&self, node: usize) -> String {
        format!("{}-n{node}", self.prefix)
    }

    /// Namespace of pod `pod` on node `node`.
    pub fn pod_ns(&self, node: usize, pod: usize) -> String {
        format!("{}-n{node}p{pod}", self.prefix)
    }

    /// The root-namespace end of node `node`'s control-plane veth (a port of [`CP_BRIDGE`]).
    pub fn cp_port(&self, node: usize) -> String {
        format!("{}c{node}", self.prefix)
    }

    /// The FRR instance (`-N`) name of the router.
    pub fn frr_instance(&self) -> String {
        self.router_ns()
    }
}

/// True if `name` is a namespace name this naming scheme produces
/// (`P-sw`, `P-r`, `P-c`, `P-nI`, `P-nIpJ` for a valid prefix `P`). Cleanup only ever
/// touches names that pass this check, so other programs' `hl…` names are safe.
pub fn is_lab_namespace(name: &str) -> bool {
    let Some((prefix, role)) = name.split_once('-') else {
        return false;
    };
    if Names::new(prefix).is_err() {
        return false;
    }
    match role {
        "sw" | "r" | "c" => true,
        _ => role.strip_prefix('n').is_some_and(|rest| {
            let (node, pod) = match rest.split_once('p') {
                Some((node, pod)) => (node, Some(pod)),
                None => (rest, None),
            };
            is_number(node) && pod.is_none_or(is_number)
        }),
    }
}

/// True if `name` is a root-namespace link of the lab: [`CP_BRIDGE`] or a control-plane
/// port `PcI` of a valid prefix `P`.
pub fn is_lab_root_link(name: &str) -> bool {
    if name == CP_BRIDGE {
        return true;
    }
    let without_index = name.trim_end_matches(|c: char| c.is_ascii_digit());
    without_index.len() < name.len()
        && without_index
            .strip_suffix('c')
            .is_some_and(|prefix| Names::new(prefix).is_ok())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// Interface names inside the lab's namespaces (they only need to be unique per namespace).
pub mod ifname {
    /// The switch's bridge.
    pub const SWITCH_BRIDGE: &str = "br0";
    /// The switch's port towards the router.
    pub const SWITCH_ROUTER_PORT: &str = "r";
    /// The router's LAN interface.
    pub const ROUTER_LAN: &str = "lan";
    /// The router's interface towards the client.
    pub const ROUTER_CLIENT: &str = "cli";
    /// The client's (and every pod's) interface.
    pub const ETH0: &str = "eth0";
    /// A node's LAN interface.
    pub const NODE_LAN: &str = "eth0";
    /// A node's control-plane interface.
    pub const NODE_CP: &str = "cp0";
    /// A node's pod bridge.
    pub const NODE_POD_BRIDGE: &str = "pods0";

    /// The switch's port towards node `node`.
    pub fn switch_node_port(node: usize) -> String {
        format!("n{node}")
    }

    /// Node-side port of pod `pod` on the pod bridge.
    pub fn node_pod_port(pod: usize) -> String {
        format!("p{pod}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_design_plan() -> Result<()> {
        assert_eq!(node_lan_v4(1)?.to_string(), "192.0.2.11");
        assert_eq!(node_lan_v6(1)?.to_string(), "2001:db8:1::11");
        assert_eq!(node_lan_v6(3)?.to_string(), "2001:db8:1::13");
        assert_eq!(node_cp_v4(2)?.to_string(), "169.254.100.12");
        assert_eq!(pod_cidr_v4(2)?, "198.18.2.0/24");
        assert_eq!(pod_cidr_v6(2)?, "2001:db8:244:2::/64");
        assert_eq!(pod_gateway_v4(2)?.to_string(), "198.18.2.1");
        assert_eq!(pod_gateway_v6(2)?.to_string(), "2001:db8:244:2::1");
        assert_eq!(pod_v4(2, 1)?.to_string(), "198.18.2.11");
        assert_eq!(pod_v6(2, 1)?.to_string(), "2001:db8:244:2::11");
        Ok(())
    }

    #[test]
    fn node_addresses_stay_below_the_l2_pool() -> Result<()> {
        assert!(node_lan_v4(MAX_NODES)?.octets()[3] < 128);
        assert!(node_lan_v4(0).is_err());
        assert!(node_lan_v4(MAX_NODES + 1).is_err());
        Ok(())
    }

    #[test]
    fn pod_indexes_outside_the_range_are_rejected() {
        assert!(pod_v4(1, 0).is_err());
        assert!(pod_v4(1, MAX_PODS_PER_NODE + 1).is_err());
        assert!(pod_v4(1, MAX_PODS_PER_NODE).is_ok());
    }

    #[test]
    fn every_derived_name_fits_the_kernel_limits_for_the_longest_prefix() -> Result<()> {
        let names = Names::new("hlabcde")?;
        assert!(names.cp_port(MAX_NODES).len() <= IFNAME_MAX);
        // Namespace names are not limited to 15, but keep them short anyway.
        assert!(names.pod_ns(MAX_NODES, MAX_PODS_PER_NODE).len() <= 20);
        assert!(ifname::node_pod_port(MAX_PODS_PER_NODE).len() <= IFNAME_MAX);
        Ok(())
    }

    #[test]
    fn prefixes_must_be_short_lowercase_and_start_with_hl() {
        assert!(Names::new("hlup").is_ok());
        assert!(Names::new("hl").is_err());
        assert!(Names::new("xx12").is_err());
        assert!(Names::new("hlABC").is_err());
        assert!(Names::new("hl-1").is_err());
        assert!(Names::new("hl123456").is_err());
        assert!(Names::new("hlcp").is_err(), "would match the hlcp0 bridge");
    }

    #[test]
    fn lab_names_are_recognised_and_other_hl_names_are_not() -> Result<()> {
        let names = Names::new("hl1abc")?;
        for ns in [
            names.switch_ns(),
            names.router_ns(),
            names.client_ns(),
            names.node_ns(3),
            names.pod_ns(3, 12),
        ] {
            assert!(is_lab_namespace(&ns), "{ns}");
        }
        for other in [
            "hl2t-a-4365",
            "hl-cp-man",
            "hlup",
            "hlup-x",
            "hlup-n",
            "hlup-n1p",
            "hl1abc-n1q2",
        ] {
            assert!(!is_lab_namespace(other), "{other}");
        }
        assert!(is_lab_root_link(CP_BRIDGE));
        assert!(is_lab_root_link(&names.cp_port(2)));
        assert!(is_lab_root_link("hlupc12"));
        for other in ["hl-cp0", "hlupc", "eth0", "hl2t0", "hlc1"] {
            assert!(!is_lab_root_link(other), "{other}");
        }
        Ok(())
    }

    #[test]
    fn unique_prefixes_are_valid_and_differ() {
        let a = Names::unique();
        let b = Names::unique();
        assert_ne!(a, b);
        for names in [a, b] {
            assert!(Names::new(names.prefix()).is_ok(), "{}", names.prefix());
            assert!(
                names.prefix().as_bytes()[2].is_ascii_digit(),
                "test labs never clash with the fixed `up` prefix"
            );
        }
    }
}

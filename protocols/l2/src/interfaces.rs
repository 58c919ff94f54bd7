//! Which local interfaces announce an address. Pure.
//!
//! Owns the rule "an interface announces an address when its subnet covers the address, or when
//! the L2Advertisement lists it by name", over plain [`InterfaceInfo`] values. Reading the
//! interfaces from the kernel (rtnetlink) is the speaker's `net::interfaces`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::frames::MacAddr;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub index: u32,
    /// The Ethernet address; `None` for interfaces without a 6-byte hardware address
    /// (loopback, tunnels), which cannot carry ARP/NDP.
    pub mac: Option<MacAddr>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub loopback: bool,
    /// The interface's addresses with their prefix lengths.
    pub networks: Vec<IpNet>,
}

impl InterfaceInfo {
    /// Can carry ARP/NDP at all: up, not loopback, with an Ethernet address.
    pub fn can_announce(&self) -> bool {
        self.up && !self.loopback && self.mac.is_some()
    }

    /// Has a subnet (not just a host address) that contains `address`.
    pub fn covers(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|net| net.prefix_len() < net.max_prefix_len() && net.contains(&address))
    }
}

/// The interfaces that should announce `address`: those named in `listed` (an
/// L2Advertisement's `interfaces`) if it is not empty, otherwise those whose subnet covers the
/// address; in both cases only interfaces that can carry ARP/NDP. Sorted by name.
pub fn announce_interfaces<'a>(
    address: IpAddr,
    interfaces: &'a [InterfaceInfo],
    listed: &[String],
) -> Vec<&'a InterfaceInfo> {
    let mut chosen: Vec<&InterfaceInfo> = interfaces
        .iter()
        .filter(|interface| interface.can_announce())
        .filter(|interface| {
            if listed.is_empty() {
                interface.covers(address)
            } else {
                listed.contains(&interface.name)
            }
        })
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, networks: &[&str]) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index: 2,
            mac: Some(MacAddr([2, 0, 0x5e, 0, 0x53, 1])),
            up: true,
            loopback: false,
            networks: networks.iter().filter_map(|n| n.parse().ok()).collect(),
        }
    }

    fn names(chosen: &[&InterfaceInfo]) -> Vec<String> {
        chosen.iter().map(|i| i.name.clone()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn the_interface_whose_subnet_covers_the_address_announces_it() {
        let interfaces = [
            interface("eth0", &["192.0.2.11/24", "2001:db8:1::11/64"]),
            interface("eth1", &["198.51.100.11/24"]),
        ];
        assert_eq!(
            names(&announce_interfaces(ip("192.0.2.200"), &interfaces, &[])),
            ["eth0"]
        );
        assert_eq!(
            names(&announce_interfaces(
                ip("2001:db8:1::200"),
                &interfaces,
                &[]
            )),
            ["eth0"]
        );
        assert!(announce_interfaces(ip("203.0.113.5"), &interfaces, &[]).is_empty());
    }

    #[test]
    fn a_host_address_equal_to_the_service_address_does_not_count_as_a_subnet() {
        let interfaces = [interface("eth0", &["192.0.2.200/32"])];
        assert!(announce_interfaces(ip("192.0.2.200"), &interfaces, &[]).is_empty());
    }

    #[test]
    fn listed_interfaces_announce_even_without_a_covering_subnet_and_others_do_not() {
        let interfaces = [
            interface("eth0", &["192.0.2.11/24"]),
            interface("eth1", &[]),
        ];
        let listed = ["eth1".to_owned()];
        assert_eq!(
            names(&announce_interfaces(
                ip("192.0.2.200"),
                &interfaces,
                &listed
            )),
            ["eth1"]
        );
    }

    #[test]
    fn down_loopback_and_non_ethernet_interfaces_never_announce() {
        let down = InterfaceInfo {
            up: false,
            ..interface("down0", &["192.0.2.1/24"])
        };
        let lo = InterfaceInfo {
            loopback: true,
            ..interface("lo", &["192.0.2.2/24"])
        };
        let tun = InterfaceInfo {
            mac: None,
            ..interface("tun0", &["192.0.2.3/24"])
        };
        let interfaces = [down, lo, tun];
        assert!(announce_interfaces(ip("192.0.2.200"), &interfaces, &[]).is_empty());
        let all = ["down0".to_owned(), "lo".to_owned(), "tun0".to_owned()];
        assert!(announce_interfaces(ip("192.0.2.200"), &interfaces, &all).is_empty());
    }
}

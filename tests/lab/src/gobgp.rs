//! GoBGP (`gobgpd`, Debian package) as a stand-in BGP speaker inside a node namespace:
//! proves the router side of the lab (FRR peering, route installation) independently of
//! Herald's own speaker, and gives BGP tests a known-good reference peer.
//! Config rendering is pure; [`GobgpPeer`] runs the daemon and drives it with the
//! `gobgp` CLI over its gRPC API on the namespace's loopback.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::{LabProcess, Netns};
use crate::plan;
use crate::topology::Lab;
use crate::wait::{Poll, poll_until_ok};

/// gobgpd's gRPC API port inside the namespace (loopback only).
pub const API_PORT: u16 = 50051;

/// A gobgpd configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GobgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// `(neighbor address, neighbor ASN)`; IPv4 and IPv6 unicast are enabled on each.
    pub neighbors: Vec<(IpAddr, u32)>,
}

impl GobgpConfig {
    /// The TOML config file text.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[global.config]");
        let _ = writeln!(t, "  as = {}", self.asn);
        let _ = writeln!(t, "  router-id = \"{}\"", self.router_id);
        for (address, asn) in &self.neighbors {
            let _ = writeln!(t);
            let _ = writeln!(t, "[[neighbors]]");
            let _ = writeln!(t, "  [neighbors.config]");
            let _ = writeln!(t, "    neighbor-address = \"{address}\"");
            let _ = writeln!(t, "    peer-as = {asn}");
            let _ = writeln!(t, "  [neighbors.timers.config]");
            let _ = writeln!(t, "    connect-retry = 5");
            for family in ["ipv4-unicast", "ipv6-unicast"] {
                let _ = writeln!(t, "  [[neighbors.afi-safis]]");
                let _ = writeln!(t, "    [neighbors.afi-safis.config]");
                let _ = writeln!(t, "      afi-safi-name = \"{family}\"");
            }
        }
        t
    }
}

/// A running gobgpd in a node namespace, peering with the lab router.
#[derive(Debug)]
pub struct GobgpPeer {
    process: LabProcess,
    netns: Netns,
    node_v6: std::net::Ipv6Addr,
}

impl GobgpPeer {
    /// Starts gobgpd in node `node` of `lab` with AS `asn`, peering with the router
    /// (192.0.2.1, AS 64500). Waits until its API answers.
    pub fn start(lab: &Lab, node: usize, asn: u32) -> Result<GobgpPeer> {
        let lab_node = lab.node(node)?;
        let config = GobgpConfig {
            asn,
            router_id: lab_node.lan_v4,
            neighbors: vec![(IpAddr::V4(plan::ROUTER_LAN_V4), plan::ROUTER_ASN)],
        };
        let path = lab.log_dir().join(format!("gobgpd-n{node}.toml"));
        std::fs::write(&path, config.render())
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        let path_text = path.to_string_lossy().into_owned();
        let api = format!("127.0.0.1:{API_PORT}");
        let process = lab.spawn_in_node(
            node,
            &format!("gobgpd-n{node}"),
            &[
                "gobgpd",
                "-f",
                &path_text,
                "-t",
                "toml",
                "--api-hosts",
                &api,
                "--pprof-disable",
                "-p",
            ],
        )?;
        let peer = GobgpPeer {
            process,
            netns: lab_node.netns.clone(),
            node_v6: lab_node.lan_v6,
        };
        poll_until_ok(
            "gobgpd's API",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || peer.cli(&["global"]).map(Poll::Ready),
        )?;
        Ok(peer)
    }

    /// Runs `gobgp ARGS...` against this daemon; returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let port = API_PORT.to_string();
        let mut argv = vec!["gobgp", "-u", "127.0.0.1", "-p", &port];
        argv.extend_from_slice(args);
        self.netns.exec(&argv)
    }

    /// Announces `prefix` (e.g. `203.0.113.10/32` or `2001:db8:100::10/128`); IPv6
    /// prefixes carry the node's global LAN address as next hop.
    pub fn announce(&self, prefix: &str) -> Result<()> {
        if prefix.contains(':') {
            let next_hop = self.node_v6.to_string();
            self.cli(&[
                "global", "rib", "add", "-a", "ipv6", prefix, "nexthop", &next_hop,
            ])
        } else {
            self.cli(&["global", "rib", "add", "-a", "ipv4", prefix])
        }
        .map(|_| ())
    }

    /// Withdraws `prefix`.
    pub fn withdraw(&self, prefix: &str) -> Result<()> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.cli(&["global", "rib", "del", "-a", family, prefix])
            .map(|_| ())
    }

    /// The daemon's process (kill it as a fault).
    pub fn process(&mut self) -> &mut LabProcess {
        &mut self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_peers_with_each_neighbor_in_both_families() {
        let text = GobgpConfig {
            asn: 64501,
            router_id: Ipv4Addr::new(192, 0, 2, 11),
            neighbors: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64500)],
        }
        .render();
        assert!(text.contains("as = 64501\n"));
        assert!(text.contains("router-id = \"192.0.2.11\""));
        assert!(text.contains("neighbor-address = \"192.0.2.1\""));
        assert!(text.contains("peer-as = 64500"));
        assert_eq!(text.matches("afi-safi-name").count(), 2);
    }
}

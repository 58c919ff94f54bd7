//! Typed views of what `ip -j` prints (routes, neighbours, addresses), so tests can ask
//! "is there a route to X via Y" without string matching. Pure parsing; the commands are
//! run by [`crate::netns::Netns`].

use serde::Deserialize;

/// One route from `ip -j route`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Route {
    /// Destination: `default`, `192.0.2.0/24`, or a bare address for host routes.
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    /// `kernel`, `boot`, `static`, `bgp`, ... (numbers for unnamed protocols).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub metric: Option<u32>,
    #[serde(default)]
    pub prefsrc: Option<String>,
    /// ECMP next hops (empty for a single-path route).
    #[serde(default)]
    pub nexthops: Vec<NextHop>,
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct NextHop {
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
}

impl Route {
    /// True if this route's destination is `prefix` (a host route may be printed without
    /// its `/32` or `/128`).
    pub fn is_for(&self, prefix: &str) -> bool {
        let bare = |p: &str| {
            p.strip_suffix("/32")
                .or_else(|| p.strip_suffix("/128"))
                .unwrap_or(p)
                .to_string()
        };
        bare(&self.dst) == bare(prefix)
    }

    /// Every gateway the route uses: the single gateway, or each next hop's.
    pub fn gateways(&self) -> Vec<String> {
        let mut gateways: Vec<String> = self.gateway.iter().cloned().collect();
        gateways.extend(self.nexthops.iter().filter_map(|nh| nh.gateway.clone()));
        gateways
    }
}

/// Finds the route for `prefix` in `routes`.
pub fn route_for<'a>(routes: &'a [Route], prefix: &str) -> Option<&'a Route> {
    routes.iter().find(|r| r.is_for(prefix))
}

/// One entry from `ip -j neigh`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Neighbour {
    pub dst: String,
    #[serde(default)]
    pub dev: Option<String>,
    /// The link-layer (MAC) address, absent while incomplete or failed.
    #[serde(default)]
    pub lladdr: Option<String>,
    /// `REACHABLE`, `STALE`, `FAILED`, ...
    #[serde(default)]
    pub state: Vec<String>,
}

impl Neighbour {
    /// True if the entry has a MAC and is not FAILED/INCOMPLETE.
    pub fn is_resolved(&self) -> bool {
        self.lladdr.is_some()
            && !self
                .state
                .iter()
                .any(|s| s == "FAILED" || s == "INCOMPLETE")
    }
}

/// One link with its addresses from `ip -j addr`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LinkAddresses {
    pub ifname: String,
    /// The MAC address.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub operstate: Option<String>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

/// One address of a link.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AddrInfo {
    /// `inet` or `inet6`.
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub prefixlen: Option<u8>,
}

/// The MAC address of interface `ifname` in `links`.
pub fn mac_of<'a>(links: &'a [LinkAddresses], ifname: &str) -> Option<&'a str> {
    links
        .iter()
        .find(|l| l.ifname == ifname)
        .and_then(|l| l.address.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecmp_route_from_ip_json_lists_every_gateway() -> Result<(), serde_json::Error> {
        let routes: Vec<Route> = serde_json::from_str(
            r#"[{"dst":"203.0.113.10","protocol":"bgp","metric":20,"flags":[],
                 "nexthops":[{"gateway":"192.0.2.11","dev":"lan","weight":1,"flags":[]},
                             {"gateway":"192.0.2.12","dev":"lan","weight":1,"flags":[]}]},
                {"dst":"192.0.2.0/24","dev":"lan","protocol":"kernel","scope":"link",
                 "prefsrc":"192.0.2.1","flags":[]}]"#,
        )?;
        let route = route_for(&routes, "203.0.113.10/32");
        assert_eq!(
            route.map(Route::gateways),
            Some(vec!["192.0.2.11".to_string(), "192.0.2.12".to_string()])
        );
        assert_eq!(route.and_then(|r| r.protocol.as_deref()), Some("bgp"));
        assert!(route_for(&routes, "192.0.2.0/24").is_some());
        assert!(route_for(&routes, "192.0.2.0/25").is_none());
        Ok(())
    }

    #[test]
    fn a_failed_neighbour_is_not_resolved() -> Result<(), serde_json::Error> {
        let neighbours: Vec<Neighbour> = serde_json::from_str(
            r#"[{"dst":"192.0.2.11","dev":"lan","lladdr":"02:00:00:00:00:01","state":["REACHABLE"]},
                {"dst":"192.0.2.12","dev":"lan","state":["FAILED"]}]"#,
        )?;
        assert!(neighbours[0].is_resolved());
        assert!(!neighbours[1].is_resolved());
        Ok(())
    }

    #[test]
    fn the_mac_of_an_interface_is_found_by_name() -> Result<(), serde_json::Error> {
        let links: Vec<LinkAddresses> = serde_json::from_str(
            r#"[{"ifindex":2,"ifname":"eth0","address":"02:aa:bb:cc:dd:ee","operstate":"UP",
                 "addr_info":[{"family":"inet","local":"192.0.2.11","prefixlen":24}]}]"#,
        )?;
        assert_eq!(mac_of(&links, "eth0"), Some("02:aa:bb:cc:dd:ee"));
        assert_eq!(links[0].addr_info[0].local.as_deref(), Some("192.0.2.11"));
        assert_eq!(mac_of(&links, "eth1"), None);
        Ok(())
    }
}

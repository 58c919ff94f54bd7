//! FRR as the lab's upstream router: config generation (pure) and instance control.
//!
//! Several FRR instances live side by side on one machine through FRR's path space
//! (`-N NAME`): config in `/etc/frr/NAME/`, sockets and pid files in `/var/run/frr/NAME/`.
//! An [`FrrInstance`] runs `zebra`, `bgpd` and `bfdd` inside a namespace, loads its config with
//! `vtysh -N NAME -b`, answers `vtysh` queries (JSON where FRR offers it), and can be
//! stopped and started again as a fault. [`RouterConfig`] renders a standard eBGP router
//! config (ASN 64500, multipath, IPv4 and IPv6 unicast) — pure, unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::cmd::{self, SHORT};
use crate::error::{LabError, Result};
use crate::netns::{self, Family, Netns};
use crate::plan;
use crate::wait::{Poll, poll_until};

/// Where FRR's daemons are installed on Debian.
pub const FRR_DAEMON_DIR: &str = "/usr/lib/frr";
/// The daemons each lab router runs, in start order. `bfdd` idles unless the config has a
/// `bfd` block or `neighbor X bfd` lines (BFD scenarios).
pub const DAEMONS: [&str; 3] = ["zebra", "bgpd", "bfdd"];

/// How a neighbor's AS is specified (`neighbor X remote-as ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteAs {
    /// A fixed ASN.
    Number(u32),
    /// Any ASN other than ours (eBGP).
    External,
    /// Our own ASN (iBGP).
    Internal,
}

impl std::fmt::Display for RemoteAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAs::Number(asn) => write!(f, "{asn}"),
            RemoteAs::External => write!(f, "external"),
            RemoteAs::Internal => write!(f, "internal"),
        }
    }
}

/// One BGP neighbor of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpNeighbor {
    pub address: IpAddr,
    pub remote_as: RemoteAs,
    /// TCP-MD5 password (RFC 2385).
    pub password: Option<String>,
    /// Activate the IPv4 unicast address family for this neighbor.
    pub ipv4_unicast: bool,
    /// Activate the IPv6 unicast address family (over an IPv4 session too: RFC 4760).
    pub ipv6_unicast: bool,
    /// `timers KEEPALIVE HOLD`, if not FRR's defaults (60/180).
    pub timers: Option<(u16, u16)>,
    /// `timers connect SECONDS` (FRR's default is 120, too slow for tests).
    pub connect_retry: Option<u16>,
    /// `port N`, if the neighbor listens on a port other than 179.
    pub port: Option<u16>,
    /// `ebgp-multihop N`.
    pub ebgp_multihop: Option<u8>,
}

impl BgpNeighbor {
    /// An eBGP neighbor with both unicast families and a 5 s connect retry.
    pub fn external(address: IpAddr) -> BgpNeighbor {
        BgpNeighbor {
            address,
            remote_as: RemoteAs::External,
            password: None,
            ipv4_unicast: true,
            ipv6_unicast: true,
            timers: None,
            connect_retry: Some(5),
            port: None,
            ebgp_multihop: None,
        }
    }

    /// Sets the remote AS.
    pub fn remote_as(mut self, remote_as: RemoteAs) -> Self {
        self.remote_as = remote_as;
        self
    }

    /// Sets a TCP-MD5 password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Sets keepalive and hold timers.
    pub fn timers(mut self, keepalive: u16, hold: u16) -> Self {
        self.timers = Some((keepalive, hold));
        self
    }
}

/// A router configuration, rendered to `frr.conf` text by [`RouterConfig::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub hostname: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<BgpNeighbor>,
    /// ECMP width (`maximum-paths`, eBGP and iBGP).
    pub maximum_paths: u8,
    /// `bgp bestpath as-path multipath-relax`: ECMP across neighbors with different ASNs.
    pub multipath_relax: bool,
    /// Log file path (written by the frr user).
    pub log_file: Option<PathBuf>,
    /// Extra text appended verbatim at the end (route-maps, prefix-lists, ...).
    pub extra: String,
}

impl RouterConfig {
    /// The lab's standard upstream router: ASN 64500, router id 192.0.2.1, one eBGP
    /// neighbor per address in `neighbors` (any remote ASN, IPv4 and IPv6 unicast),
    /// `maximum-paths 8`, multipath across ASNs, no policy required.
    pub fn standard(hostname: &str, neighbors: &[IpAddr]) -> RouterConfig {
        RouterConfig {
            hostname: hostname.to_string(),
            asn: plan::ROUTER_ASN,
            router_id: plan::ROUTER_LAN_V4,
            neighbors: neighbors
                .iter()
                .map(|a| BgpNeighbor::external(*a))
                .collect(),
            maximum_paths: 8,
            multipath_relax: true,
            log_file: None,
            extra: String::new(),
        }
    }

    /// Adds a neighbor.
    pub fn neighbor(mut self, neighbor: BgpNeighbor) -> Self {
        self.neighbors.push(neighbor);
        self
    }

    /// Applies `change` to every neighbor (e.g. set a password on all of them).
    pub fn each_neighbor(mut self, mut change: impl FnMut(&mut BgpNeighbor)) -> Self {
        self.neighbors.iter_mut().for_each(&mut change);
        self
    }

    /// Appends raw configuration text.
    pub fn extra(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The `frr.conf` text.
    pub fn render(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "frr defaults traditional");
        let _ = writeln!(c, "hostname {}", self.hostname);
        if let Some(log) = &self.log_file {
            let _ = writeln!(c, "log file {} informational", log.display());
        }
        let _ = writeln!(c, "ip forwarding");
        let _ = writeln!(c, "ipv6 forwarding");
        let _ = writeln!(c, "!");
        let _ = writeln!(c, "router bgp {}", self.asn);
        let _ = writeln!(c, " bgp router-id {}", self.router_id);
        // Accept and send eBGP routes without route-maps (RFC 8212 default is off here).
        let _ = writeln!(c, " no bgp ebgp-requires-policy");
        let _ = writeln!(c, " no bgp default ipv4-unicast");
        let _ = writeln!(c, " bgp log-neighbor-changes");
        if self.multipath_relax {
            let _ = writeln!(c, " bgp bestpath as-path multipath-relax");
        }
        for n in &self.neighbors {
            let a = n.address;
            let _ = writeln!(c, " neighbor {a} remote-as {}", n.remote_as);
            if let Some(password) = &n.password {
                let _ = writeln!(c, " neighbor {a} password {password}");
            }
            if let Some((keepalive, hold)) = n.timers {
                let _ = writeln!(c, " neighbor {a} timers {keepalive} {hold}");
            }
            if let Some(connect) = n.connect_retry {
                let _ = writeln!(c, " neighbor {a} timers connect {connect}");
            }
            if let Some(port) = n.port {
                let _ = writeln!(c, " neighbor {a} port {port}");
            }
            if let Some(hops) = n.ebgp_multihop {
                let _ = writeln!(c, " neighbor {a} ebgp-multihop {hops}");
            }
        }
        for family in ["ipv4", "ipv6"] {
            let enabled = |n: &&BgpNeighbor| match family {
                "ipv4" => n.ipv4_unicast,
                _ => n.ipv6_unicast,
            };
            let _ = writeln!(c, " !");
            let _ = writeln!(c, " address-family {family} unicast");
            for n in self.neighbors.iter().filter(enabled) {
                let _ = writeln!(c, "  neighbor {} activate", n.address);
            }
            let _ = writeln!(c, "  maximum-paths {}", self.maximum_paths);
            let _ = writeln!(c, "  maximum-paths ibgp {}", self.maximum_paths);
            let _ = writeln!(c, " exit-address-family");
        }
        let _ = writeln!(c, "exit");
        let _ = writeln!(c, "!");
        c.push_str(&self.extra);
        c
    }
}

/// `show bgp summary json`, the parts tests use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpSummary {
    #[serde(rename = "ipv4Unicast", default)]
    pub ipv4: Option<AfSummary>,
    #[serde(rename = "ipv6Unicast", default)]
    pub ipv6: Option<AfSummary>,
}

/// One address family of [`BgpSummary`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AfSummary {
    #[serde(rename = "routerId", default)]
    pub router_id: Option<String>,
    #[serde(rename = "as", default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub peers: BTreeMap<String, PeerSummary>,
}

/// One peer of [`AfSummary`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeerSummary {
    #[serde(rename = "remoteAs", default)]
    pub remote_as: Option<u32>,
    /// `Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`, `Established`.
    #[serde(default)]
    pub state: String,
    /// Prefixes received (accepted).
    #[serde(rename = "pfxRcd", default)]
    pub prefixes_received: Option<u64>,
    /// Prefixes sent.
    #[serde(rename = "pfxSnt", default)]
    pub prefixes_sent: Option<u64>,
}

impl BgpSummary {
    /// The peer `address` in the IPv4 (else IPv6) unicast table.
    pub fn peer(&self, address: &str) -> Option<&PeerSummary> {
        self.ipv4
            .as_ref()
            .and_then(|af| af.peers.get(address))
            .or_else(|| self.ipv6.as_ref().and_then(|af| af.peers.get(address)))
    }

    /// True if `address` is Established.
    pub fn is_established(&self, address: &str) -> bool {
        self.peer(address).is_some_and(|p| p.state == "Established")
    }
}

/// One path of a prefix in `show bgp ipv4|ipv6 unicast json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpPath {
    #[serde(default)]
    pub valid: Option<bool>,
    #[serde(default)]
    pub bestpath: Option<bool>,
    #[serde(default)]
    pub multipath: Option<bool>,
    /// The AS path as text (`64501`).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(rename = "peerId", default)]
    pub peer_id: Option<String>,
    #[serde(default)]
    pub nexthops: Vec<BgpNextHop>,
}

/// A next hop of a [`BgpPath`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpNextHop {
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Deserialize)]
struct BgpTable {
    #[serde(default)]
    routes: BTreeMap<String, Vec<BgpPath>>,
}

/// A running FRR instance (zebra + bgpd) inside a namespace. Stopped, with its directories
/// removed, when dropped; its log is copied to the lab's log directory first.
#[derive(Debug)]
pub struct FrrInstance {
    name: String,
    netns: Netns,
    config: String,
    log_dir: PathBuf,
}

impl FrrInstance {
    /// Writes `config` as `/etc/frr/NAME/frr.conf`, starts zebra and bgpd inside `netns`
    /// and loads the config. `log_dir` receives a copy of FRR's log on stop.
    pub fn start(netns: &Netns, name: &str, config: &str, log_dir: &Path) -> Result<FrrInstance> {
        if !Path::new(FRR_DAEMON_DIR).join("bgpd").exists() {
            return Err(LabError::MissingTool {
                tool: "frr".into(),
                hint: "install the Debian package frr (tests/setup.sh does)".into(),
            });
        }
        let instance = FrrInstance {
            name: name.to_string(),
            netns: netns.clone(),
            config: config.to_string(),
            log_dir: log_dir.to_path_buf(),
        };
        instance.launch()?;
        Ok(instance)
    }

    /// The instance name (`-N`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config last loaded.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// `/etc/frr/NAME`.
    pub fn config_dir(&self) -> PathBuf {
        Path::new("/etc/frr").join(&self.name)
    }

    /// `/var/run/frr/NAME`.
    pub fn run_dir(&self) -> PathBuf {
        Path::new("/var/run/frr").join(&self.name)
    }

    /// The log file FRR writes (inside the run dir, owned by frr).
    pub fn log_file(&self) -> PathBuf {
        self.run_dir().join("frr.log")
    }

    fn launch(&self) -> Result<()> {
        let config_dir = self.config_dir();
        let run_dir = self.run_dir();
        for dir in [&config_dir, &run_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        }
        let config = with_log_file(&self.config, &self.log_file());
        write_file(&config_dir.join("frr.conf"), &config)?;
        write_file(
            &config_dir.join("vtysh.conf"),
            "service integrated-vtysh-config\n",
        )?;
        write_file(
            &config_dir.join("daemons"),
            "zebra=yes\nbgpd=yes\nbfdd=yes\n",
        )?;
        cmd::sh(
            "chown",
            &[
                "-R",
                "frr:frr",
                &config_dir.to_string_lossy(),
                &run_dir.to_string_lossy(),
            ],
        )?;
        for daemon in DAEMONS {
            let program = Path::new(FRR_DAEMON_DIR).join(daemon);
            cmd::run_checked(
                self.netns.command(&program).args([
                    "-d",
                    "-N",
                    &self.name,
                    "-F",
                    "traditional",
                    "-A",
                    "127.0.0.1",
                ]),
                None,
                SHORT,
            )?;
        }
        // The daemons' vty sockets appear shortly after they fork into the background.
        poll_until(
            &format!("FRR {} vty sockets", self.name),
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                let missing: Vec<&str> = DAEMONS
                    .iter()
                    .copied()
                    .filter(|d| !run_dir.join(format!("{d}.vty")).exists())
                    .collect();
                Ok(if missing.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("missing {missing:?}"))
                })
            },
        )?;
        self.vtysh_args(&["-b"]).map(|_| ())
    }

    /// Pids of the running daemons (from their pid files).
    pub fn daemon_pids(&self) -> Vec<u32> {
        DAEMONS
            .iter()
            .filter_map(|d| std::fs::read_to_string(self.run_dir().join(format!("{d}.pid"))).ok())
            .filter_map(|text| text.trim().parse().ok())
            .filter(|pid| netns::is_alive(*pid))
            .collect()
    }

    /// True while every daemon runs.
    pub fn is_running(&self) -> bool {
        self.daemon_pids().len() == DAEMONS.len()
    }

    /// Stops the daemons (SIGTERM, then SIGKILL after 5 s) — a router failure as seen by
    /// its peers. The config stays; [`FrrInstance::start_again`] brings it back.
    pub fn stop(&mut self) -> Result<()> {
        self.save_log();
        let pids = self.daemon_pids();
        for pid in &pids {
            let _ = netns::signal(*pid, "TERM");
        }
        if netns::wait_gone(&pids, Duration::from_secs(5)).is_err() {
            for pid in &pids {
                let _ = netns::signal(*pid, "KILL");
            }
            netns::wait_gone(&pids, Duration::from_secs(5))?;
        }
        for daemon in DAEMONS {
            let _ = std::fs::remove_file(self.run_dir().join(format!("{daemon}.pid")));
        }
        Ok(())
    }

    /// Starts the daemons again with the current config.
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.launch()
    }

    /// Replaces the whole config: stop, write, start.
    pub fn reload(&mut self, config: &str) -> Result<()> {
        self.stop()?;
        self.config = config.to_string();
        self.launch()
    }

    /// Runs configuration commands (`configure terminal` mode), e.g.
    /// `["router bgp 64500", "neighbor 192.0.2.14 remote-as external"]`.
    pub fn configure(&self, commands: &[&str]) -> Result<String> {
        let mut args = vec!["-c", "configure terminal"];
        for command in commands {
            args.push("-c");
            args.push(command);
        }
        self.vtysh_args(&args)
    }

    /// One `vtysh -c COMMAND`; returns its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        self.vtysh_args(&["-c", command])
    }

    /// One `vtysh -c COMMAND` whose output is JSON (add ` json` yourself).
    pub fn vtysh_json<T: serde::de::DeserializeOwned>(&self, command: &str) -> Result<T> {
        let text = self.vtysh(command)?;
        serde_json::from_str(&text).map_err(|e| LabError::parse(format!("vtysh `{command}`"), e))
    }

    fn vtysh_args(&self, args: &[&str]) -> Result<String> {
        let output = cmd::run_checked(
            Command::new("vtysh").args(["-N", &self.name]).args(args),
            None,
            SHORT,
        )?;
        // vtysh reports some errors on stdout with status 0 (e.g. "% Unknown command").
        if output.stdout.lines().any(|l| l.starts_with("% ")) && !args.contains(&"-b") {
            return Err(LabError::CommandFailed {
                command: format!("vtysh -N {} {}", self.name, args.join(" ")),
                status: output.status.to_string(),
                stdout: output.stdout,
                stderr: output.stderr,
            });
        }
        Ok(output.stdout)
    }

    /// `show bgp summary json`.
    pub fn bgp_summary(&self) -> Result<BgpSummary> {
        self.vtysh_json("show bgp summary json")
    }

    /// The BGP table of one family: prefix → paths.
    pub fn bgp_routes(&self, family: Family) -> Result<BTreeMap<String, Vec<BgpPath>>> {
        let afi = match family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        let table: BgpTable = self.vtysh_json(&format!("show bgp {afi} unicast json"))?;
        Ok(table.routes)
    }

    /// Waits (bounded) until the session with `peer` is Established.
    pub fn wait_established(&self, peer: IpAddr, timeout: Duration) -> Result<()> {
        let peer = peer.to_string();
        poll_until(
            &format!("BGP session with {peer} Established in {}", self.name),
            timeout,
            Duration::from_millis(250),
            || {
                let summary = self.bgp_summary()?;
                Ok(if summary.is_established(&peer) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!(
                        "state {:?}",
                        summary.peer(&peer).map(|p| p.state.clone())
                    ))
                })
            },
        )
    }

    /// FRR's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn save_log(&self) {
        let _ = std::fs::create_dir_all(&self.log_dir);
        let _ = std::fs::copy(
            self.log_file(),
            self.log_dir.join(format!("frr-{}.log", self.name)),
        );
    }
}

impl Drop for FrrInstance {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(self.config_dir());
        let _ = std::fs::remove_dir_all(self.run_dir());
    }
}

/// Puts `log file PATH` into a config that has no `log file` line of its own.
fn with_log_file(config: &str, log: &Path) -> String {
    if config
        .lines()
        .any(|l| l.trim_start().starts_with("log file"))
    {
        config.to_string()
    } else {
        format!("log file {} informational\n{config}", log.display())
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn the_standard_config_peers_with_every_node_in_both_families() {
        let text = RouterConfig::standard("r", &[ip("192.0.2.11"), ip("192.0.2.12")]).render();
        assert!(text.contains("router bgp 64500\n"));
        assert!(text.contains(" no bgp ebgp-requires-policy\n"));
        assert!(text.contains(" neighbor 192.0.2.11 remote-as external\n"));
        assert!(text.contains(" neighbor 192.0.2.12 timers connect 5\n"));
        let v4 = text
            .split("address-family ipv4 unicast")
            .nth(1)
            .unwrap_or("");
        let v4 = v4.split("exit-address-family").next().unwrap_or("");
        assert!(v4.contains("neighbor 192.0.2.11 activate"));
        assert!(v4.contains("neighbor 192.0.2.12 activate"));
        assert!(v4.contains("maximum-paths 8"));
        let v6 = text
            .split("address-family ipv6 unicast")
            .nth(1)
            .unwrap_or("");
        assert!(v6.contains("neighbor 192.0.2.12 activate"));
        assert!(v6.contains("maximum-paths 8"));
    }

    #[test]
    fn neighbor_options_are_rendered() {
        let text = RouterConfig::standard("r", &[])
            .neighbor(
                BgpNeighbor::external(ip("2001:db8:1::11"))
                    .remote_as(RemoteAs::Number(64501))
                    .password("s3cret")
                    .timers(3, 9),
            )
            .extra("ip prefix-list any permit any")
            .render();
        assert!(text.contains(" neighbor 2001:db8:1::11 remote-as 64501\n"));
        assert!(text.contains(" neighbor 2001:db8:1::11 password s3cret\n"));
        assert!(text.contains(" neighbor 2001:db8:1::11 timers 3 9\n"));
        assert!(text.ends_with("ip prefix-list any permit any\n"));
    }

    #[test]
    fn a_neighbor_without_ipv6_is_not_activated_there() {
        let mut neighbor = BgpNeighbor::external(ip("192.0.2.11"));
        neighbor.ipv6_unicast = false;
        let text = RouterConfig::standard("r", &[]).neighbor(neighbor).render();
        let v6 = text
            .split("address-family ipv6 unicast")
            .nth(1)
            .unwrap_or("");
        assert!(!v6.contains("activate"));
    }

    #[test]
    fn a_log_file_line_is_added_unless_the_config_has_one() {
        let log = Path::new("/var/run/frr/x/frr.log");
        assert!(
            with_log_file("router bgp 1\n", log).starts_with("log file /var/run/frr/x/frr.log")
        );
        let own = "log file /tmp/mine.log\nrouter bgp 1\n";
        assert_eq!(with_log_file(own, log), own);
    }

    #[test]
    fn the_bgp_summary_json_of_frr_is_understood() -> Result<()> {
        let summary: BgpSummary = serde_json::from_str(
            r#"{"ipv4Unicast":{"routerId":"192.0.2.1","as":64500,"peers":{
                 "192.0.2.11":{"remoteAs":64501,"state":"Established","pfxRcd":1,"pfxSnt":0}}},
                "ipv6Unicast":{"routerId":"192.0.2.1","as":64500,"peers":{
                 "192.0.2.11":{"remoteAs":64501,"state":"Established","pfxRcd":0}}}}"#,
        )
        .map_err(|e| LabError::parse("summary", e))?;
        assert!(summary.is_established("192.0.2.11"));
        assert!(!summary.is_established("192.0.2.12"));
        assert_eq!(
            summary.peer("192.0.2.11").and_then(|p| p.prefixes_received),
            Some(1)
        );
        Ok(())
    }
}

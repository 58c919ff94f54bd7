//! What the BGP end-to-end tests and benchmark add to `common::World`: a lab whose router
//! runs FRR and has no static routes to the pods or Services (the speakers' routes are the
//! only way there), speakers with BGP and forwarding on and layer 2 off, the BGP pool `bgp`
//! in the install namespace with peers, advertisements and Secrets, and readers of the
//! router's routes, the BGPPeer status and the Services' carrier annotations.
//!
//! I/O: kubectl, FRR (`vtysh`) and `ip` in the router's namespace, through the lab.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_lab::frr::RouterConfig;
use herald_lab::herald::CARRIER_PREFIX;
use herald_lab::inspect::{Route, route_for};
use herald_lab::wait::{Poll, poll_until, time_both};
use herald_lab::{Family, Result};
use serde_json::{Value, json};

use crate::common::{Setup, World};

/// Our nodes' AS for eBGP; the router is AS 64500 (`herald_lab::plan::ROUTER_ASN`).
pub const NODE_ASN: u32 = 64512;
pub const ROUTER_ASN: u32 = 64500;
/// The TCP-MD5 password of the MD5 scenarios.
pub const PASSWORD: &str = "herald-lab-md5";
/// Generous bound for sessions to come up and routes to reach the router's kernel.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// Generous bound for a change (pod readiness, a killed speaker) to reach the router.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a new Service's EndpointSlice may take.
const ENDPOINTS_TIMEOUT: Duration = Duration::from_secs(60);

impl World {
    /// A lab with `nodes` nodes (no pods yet, no FRR yet), registered as Nodes; an install
    /// namespace with the memberlist Secret and the BGP pool `bgp` (203.0.113.0/24,
    /// 2001:db8:100::/120); an apps namespace. The router hashes ECMP on ports (L4), so
    /// one client's connections spread over the next hops.
    pub fn bgp(hint: &str, nodes: usize) -> Result<World> {
        let world = World::create(
            hint,
            nodes,
            Setup {
                router_pod_routes: false,
                speaker_flags: &["--forwarding", "on", "--layer2", "off", "--bgp", "on"],
                resync_interval: "2s",
                niced: false,
                endpoints_timeout: ENDPOINTS_TIMEOUT,
            },
        )?;
        world.lab.router().sysctl(&[
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv6.fib_multipath_hash_policy", "1"),
        ])?;
        world.install_object(
            "IPAddressPool",
            "bgp",
            json!({"addresses": ["203.0.113.0/24", "2001:db8:100::/120"]}),
        )?;
        Ok(world)
    }

    /// The router's config: every node's LAN IPv4 address as an eBGP neighbor.
    pub fn router_config(&self) -> RouterConfig {
        self.lab.standard_router_config()
    }

    pub fn start_frr(&mut self, config: &RouterConfig) -> Result<()> {
        self.lab.load_frr_config(&config.render())
    }

    /// A Secret in the install namespace with key `password`.
    pub fn password_secret(&self, name: &str, password: &str) -> Result<()> {
        self.install
            .apply(
                &json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": self.install.name()},
                    "stringData": {"password": password},
                })
                .to_string(),
            )
            .map(|_| ())
    }

    /// A BGPPeer; `spec` is merged over `myASN`/`peerASN`/`peerAddress`, a 9 s hold time and
    /// a 2 s connect time.
    pub fn peer(&self, name: &str, address: &str, spec: Value) -> Result<()> {
        let defaults = json!({
            "myASN": NODE_ASN,
            "peerASN": ROUTER_ASN,
            "peerAddress": address,
            "holdTime": "9s",
            "connectTime": "2s",
        });
        self.install_object("BGPPeer", name, merged(defaults, &spec))
    }

    /// A BGPAdvertisement of the pool `bgp` to every peer; `spec` is merged over it.
    pub fn advertise(&self, spec: Value) -> Result<()> {
        self.install_object(
            "BGPAdvertisement",
            "bgp",
            merged(json!({"pools": ["bgp"]}), &spec),
        )
    }

    /// The router's kernel route for `prefix`, if any.
    pub fn router_route(&self, prefix: &str) -> Result<Option<Route>> {
        let family = if prefix.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        let routes = self.lab.router_routes(family)?;
        Ok(route_for(&routes, prefix).cloned())
    }

    /// Waits until the router's kernel route for `prefix` goes exactly via `gateways`
    /// (empty: no route at all); returns how long it took.
    pub fn wait_gateways(
        &self,
        prefix: &str,
        gateways: &[String],
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let want: BTreeSet<String> = gateways.iter().cloned().collect();
        poll_until(
            &format!("the router's route for {prefix} via {want:?}"),
            timeout,
            Duration::from_millis(20),
            || {
                let route = self.router_route(prefix)?;
                let have: BTreeSet<String> = route
                    .as_ref()
                    .map(|r| r.gateways().into_iter().collect())
                    .unwrap_or_default();
                let present = route.is_some();
                Ok(if have == want && present != want.is_empty() {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{route:?}"))
                })
            },
        )
    }

    /// This node's entry in the BGPPeer's status, if any.
    pub fn session_entry(&self, peer: &str, node: usize) -> Result<Option<Value>> {
        let node_name = self.node_name(node)?;
        let object = self.install.get("bgppeer", peer)?;
        Ok(object.and_then(|peer| {
            peer["status"]["sessions"]
                .as_array()
                .and_then(|sessions| {
                    sessions
                        .iter()
                        .find(|s| s["node"].as_str() == Some(&node_name))
                })
                .cloned()
        }))
    }

    /// Waits until `condition` holds for node `node`'s entry in the peer's status.
    pub fn wait_session_entry(
        &self,
        peer: &str,
        node: usize,
        what: &str,
        condition: impl Fn(Option<&Value>) -> bool,
    ) -> Result<Option<Value>> {
        poll_until(
            &format!("BGPPeer {peer}, node {node}: {what}"),
            CONVERGE,
            Duration::from_millis(250),
            || {
                let entry = self.session_entry(peer, node)?;
                Ok(if condition(entry.as_ref()) {
                    Poll::Ready(entry)
                } else {
                    Poll::Pending(format!("{entry:?}"))
                })
            },
        )
    }

    /// The Service's `bgp-peers.herald.dev/<node>` annotation of node `node`.
    pub fn carriers(&self, service: &str, node: usize) -> Result<Option<String>> {
        let key = format!("{CARRIER_PREFIX}{}", self.node_name(node)?);
        Ok(self.apps.get("service", service)?.and_then(|s| {
            s["metadata"]["annotations"][&key]
                .as_str()
                .map(str::to_string)
        }))
    }

    /// Waits until the carrier annotations of every node are as given (`None`: absent).
    pub fn wait_carriers(&self, service: &str, expected: &[Option<&str>]) -> Result<()> {
        poll_until(
            &format!("the carrier annotations of Service {service} to be {expected:?}"),
            CONVERGE,
            Duration::from_millis(250),
            || {
                let have: Vec<Option<String>> = (1..=expected.len())
                    .map(|node| self.carriers(service, node))
                    .collect::<Result<_>>()?;
                let want: Vec<Option<String>> =
                    expected.iter().map(|v| v.map(str::to_string)).collect();
                Ok(if have == want {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{have:?}"))
                })
            },
        )
    }
}

/// `extra`'s top-level keys set over `base` (objects only; anything else leaves `base`).
fn merged(mut base: Value, extra: &Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    base
}

pub fn state_of(entry: Option<&Value>) -> Option<&str> {
    entry.and_then(|e| e["state"].as_str())
}

pub fn error_of(entry: Option<&Value>) -> String {
    entry
        .and_then(|e| e["lastError"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Polls the API (`api_shows`) and the router (`router_shows`) side by side after a
/// change; returns when each showed it, counted from `started`.
pub fn measure_api_and_router(
    what: &str,
    started: Instant,
    api_shows: impl Fn() -> Result<bool> + Send,
    router_shows: impl Fn() -> Result<bool>,
) -> Result<(Duration, Duration)> {
    let shown = |yes: bool| {
        if yes {
            Poll::Ready(())
        } else {
            Poll::Pending(String::new())
        }
    };
    time_both(
        started,
        CHANGE_DEADLINE,
        Duration::from_millis(20),
        &format!("{what}: the API to show the change"),
        move || api_shows().map(shown),
        &format!("{what}: the router to follow"),
        || router_shows().map(shown),
    )
}

//! What the layer-2 end-to-end tests (`speaker_l2.rs`) and the failover benchmark
//! (`l2_failover_bench.rs`) add to `common::World`: speakers with layer 2 and forwarding on
//! (membership authenticated with the Secret's key, run under `nice`), the pool `l2` in the
//! LAN's L2 range (192.0.2.128/25, 2001:db8:1::100/120) with an L2Advertisement for it, and
//! the readers of who owns an address.
//!
//! The tests play the controller (they write `status.loadBalancer.ingress` themselves) so the
//! address is known in advance. The router has the L2 range on-link, so it resolves every
//! address with ARP / Neighbor Solicitations and learns whatever MAC the owning speaker
//! answers with; the owner's nftables DNAT then carries the traffic to the pods.
//!
//! What "who owns it" means here, three independent ways: the current-announcer record on
//! the Service (`l2-announcer.herald.dev/<address>` annotation), the MAC in the router's
//! neighbour table, and — with `externalTrafficPolicy: Local` and one pod per node — the node
//! the echo reply comes from.
//!
//! I/O: kubectl, the router's neighbour table, and HTTP requests from the client namespace
//! (each probe in a thread of its own), through the lab.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_lab::echo::EchoReply;
use herald_lab::herald::{record_key, record_node};
use herald_lab::plan;
use herald_lab::topology::http_get_from;
use herald_lab::wait::{Poll, poll_until, poll_until_ok};
use herald_lab::{LabError, Result};
use serde_json::json;

use crate::common::{SERVICE_PORT, SETUP_TIMEOUT, Setup, World};

/// The L2-mode pool of the address plan (inside the node LAN).
pub const L2_POOL: [&str; 2] = [plan::L2_POOL_V4, plan::L2_POOL_V6];
/// Generous bound for a failover (the goal is under one second).
/// Speakers with layer 2 and forwarding on (the owner's DNAT carries the traffic to the
/// pods: no kube-proxy in the lab), resyncing every 5 s, niced.
pub fn l2_setup() -> Setup {
    Setup {
        router_pod_routes: true,
        speaker_flags: &["--layer2", "on", "--forwarding", "on"],
        resync_interval: "5s",
        niced: true,
        endpoints_timeout: SETUP_TIMEOUT,
    }
}

/// Failover benchmarks: the probed address, the probe's pace and time-out, and the bound
/// on one failover (generous for the reference detection, 5–8 s measured).
pub const BENCH_V4: &str = "192.0.2.160";
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
pub const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// Runs per fault of a failover benchmark: `HERALD_L2_BENCH_RUNS`, else `default`.
pub fn runs_from_env(default: usize) -> usize {
    std::env::var("HERALD_L2_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(10);

pub fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

impl World {
    /// A lab with `nodes` nodes (no pods yet, no FRR: the router only routes and resolves
    /// neighbours), registered as Nodes; the install namespace with the memberlist Secret,
    /// the pool `l2` (the address plan's L2 range) and an L2Advertisement for it; an apps
    /// namespace.
    pub fn l2(hint: &str, nodes: usize) -> Result<World> {
        let world = World::create(hint, nodes, l2_setup())?;
        world.install_object("IPAddressPool", "l2", json!({"addresses": L2_POOL}))?;
        world.install_object("L2Advertisement", "l2", json!({"pools": ["l2"]}))?;
        Ok(world)
    }

    /// The node the current-announcer record on Service `service` names for `address`.
    pub fn recorded_owner(&self, service: &str, address: IpAddr) -> Result<Option<String>> {
        let Some(object) = self.apps.get("service", service)? else {
            return Ok(None);
        };
        Ok(object["metadata"]["annotations"][record_key(address)]
            .as_str()
            .and_then(record_node))
    }

    /// Waits until some node's record for `address` is on Service `service`; returns that
    /// node (1-based).
    pub fn wait_any_record(&self, service: &str, address: IpAddr) -> Result<usize> {
        let recorded = poll_until(
            &format!("a record for {address}"),
            FAILOVER_DEADLINE,
            Duration::from_millis(100),
            || {
                Ok(match self.recorded_owner(service, address)? {
                    Some(node) => Poll::Ready(node),
                    None => Poll::Pending("no record".into()),
                })
            },
        )?;
        self.node_index(&recorded)
    }

    /// SIGKILL of node `owner`'s speaker, then requests to `address` until one is answered
    /// through another node; returns that node, the time from the kill, and the kill's
    /// instant.
    pub fn kill_owner_until_another_answers(
        &mut self,
        owner: usize,
        address: IpAddr,
        interval: Duration,
        request_timeout: Duration,
    ) -> Result<(usize, Duration, Instant)> {
        let owner_name = self.node_name(owner)?;
        let killed = Instant::now();
        self.kill_speaker(owner)?;
        let (reply, failover) =
            self.probe_until(address, killed, interval, request_timeout, |r| {
                r.node != owner_name
            })?;
        Ok((self.node_index(&reply.node)?, failover, killed))
    }

    /// Waits until the record for `address` names `node` (1-based); returns how long it took.
    pub fn wait_record(&self, service: &str, address: IpAddr, node: usize) -> Result<Duration> {
        let started = Instant::now();
        let wanted = self.node_name(node)?;
        poll_until(
            &format!("the record for {address} to name {wanted}"),
            FAILOVER_DEADLINE,
            Duration::from_millis(50),
            || {
                let owner = self.recorded_owner(service, address)?;
                Ok(if owner.as_deref() == Some(wanted.as_str()) {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{owner:?}"))
                })
            },
        )
    }

    /// The MAC the router's neighbour table holds for `address`, if resolved.
    pub fn router_mac_for(&self, address: IpAddr) -> Result<Option<String>> {
        let wanted = address.to_string();
        Ok(self
            .lab
            .router_neighbours()?
            .into_iter()
            .find(|n| n.dst == wanted && n.is_resolved())
            .and_then(|n| n.lladdr)
            .map(|mac| mac.to_ascii_lowercase()))
    }

    /// The node whose LAN MAC the router holds for `address`.
    pub fn router_owner(&self, address: IpAddr) -> Result<Option<usize>> {
        let Some(mac) = self.router_mac_for(address)? else {
            return Ok(None);
        };
        for node in 1..=self.lab.nodes().len() {
            if self.lab.node_lan_mac(node)?.eq_ignore_ascii_case(&mac) {
                return Ok(Some(node));
            }
        }
        Err(LabError::Invalid(format!(
            "the router maps {address} to {mac}, which is no node's LAN MAC"
        )))
    }

    /// One request from the client to `address:80`.
    pub fn get(&self, address: IpAddr) -> Result<EchoReply> {
        self.lab.client_get(address, SERVICE_PORT)
    }

    /// One request with a short timeout.
    pub fn get_within(&self, address: IpAddr, timeout: Duration) -> Result<EchoReply> {
        http_get_from(self.lab.client(), address, SERVICE_PORT, timeout)
    }

    /// Retries requests until one succeeds (bounded).
    pub fn wait_get(&self, address: IpAddr) -> Result<EchoReply> {
        poll_until_ok(
            &format!("the client to reach {address}"),
            SETUP_TIMEOUT,
            Duration::from_millis(200),
            || {
                self.get_within(address, Duration::from_secs(2))
                    .map(Poll::Ready)
            },
        )
    }

    /// Waits until the speakers on `nodes` each see `count` live members.
    pub fn wait_membership(&self, nodes: &[usize], count: usize) -> Result<Duration> {
        let started = Instant::now();
        poll_until(
            &format!("speakers {nodes:?} to see {count} live members"),
            SETUP_TIMEOUT,
            Duration::from_millis(100),
            || {
                let mut seen = Vec::new();
                for &node in nodes {
                    seen.push(
                        self.metric(node, "herald_speaker_membership_live_members")
                            .unwrap_or(-1.0),
                    );
                }
                Ok(if seen.iter().all(|&live| live == count as f64) {
                    Poll::Ready(started.elapsed())
                } else {
                    Poll::Pending(format!("{seen:?}"))
                })
            },
        )
    }

    /// Probes `address` from the client every `interval` (each probe in its own thread with
    /// `request_timeout`, so a probe lost to a stale neighbour entry does not delay the next)
    /// until a reply satisfies `accept`; returns it with the time from `since` to its arrival.
    /// Bounded by [`FAILOVER_DEADLINE`] and so by `FAILOVER_DEADLINE / interval` probes.
    pub fn probe_until(
        &self,
        address: IpAddr,
        since: Instant,
        interval: Duration,
        request_timeout: Duration,
        accept: impl Fn(&EchoReply) -> bool,
    ) -> Result<(EchoReply, Duration)> {
        self.probe_until_within(
            address,
            since,
            interval,
            request_timeout,
            FAILOVER_DEADLINE,
            accept,
        )
    }

    /// [`World::probe_until`] with another deadline.
    /// Failover benchmarks: probes `address` at the bench pace until a reply comes through a
    /// node other than `owner_name`; returns the time since `since` and that node's index.
    pub fn bench_failover(
        &self,
        address: IpAddr,
        since: Instant,
        owner_name: &str,
    ) -> Result<(Duration, usize)> {
        let (reply, failover) = self.probe_until_within(
            address,
            since,
            PROBE_INTERVAL,
            PROBE_TIMEOUT,
            RUN_DEADLINE,
            |r| r.node != owner_name,
        )?;
        Ok((failover, self.node_index(&reply.node)?))
    }

    pub fn probe_until_within(
        &self,
        address: IpAddr,
        since: Instant,
        interval: Duration,
        request_timeout: Duration,
        deadline: Duration,
        accept: impl Fn(&EchoReply) -> bool,
    ) -> Result<(EchoReply, Duration)> {
        let (tx, rx) = mpsc::channel::<(Instant, Result<EchoReply>)>();
        let client = self.lab.client().clone();
        let mut last = String::from("no reply yet");
        let mut next_probe = Instant::now();
        let mut in_flight = 0usize;
        let outcome = loop {
            let now = Instant::now();
            if now.duration_since(since) > deadline {
                break Err(LabError::WaitTimedOut {
                    what: format!("a request to {address} to be answered as expected"),
                    timeout: deadline,
                    last: Some(last.clone()),
                });
            }
            if now >= next_probe {
                let tx = tx.clone();
                let client = client.clone();
                in_flight += 1;
                std::thread::spawn(move || {
                    let reply = http_get_from(&client, address, SERVICE_PORT, request_timeout);
                    let _ = tx.send((Instant::now(), reply));
                });
                next_probe = now + interval;
            }
            let wait = next_probe.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((arrived, reply)) => {
                    in_flight -= 1;
                    match reply {
                        Ok(reply) if accept(&reply) => {
                            break Ok((reply, arrived.duration_since(since)));
                        }
                        Ok(reply) => last = format!("answered by {} ({})", reply.pod, reply.node),
                        Err(error) => last = short(&error.to_string()),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(LabError::Invalid("probe channel closed".into()));
                }
            }
        };
        // Let the probes still running finish (each is bounded by its own timeout).
        drop(tx);
        let drain_until = Instant::now() + request_timeout + Duration::from_secs(6);
        while in_flight > 0 && Instant::now() < drain_until {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(_) => in_flight -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        outcome
    }
}

/// The first line of an error, clipped (for "last seen" reports).
pub fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

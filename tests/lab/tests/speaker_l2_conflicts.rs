//! herald-speaker end to end, layer 2: a host that is not a speaker uses a Service address.
//!
//! The router's kernel plays the other host: with the address configured on its LAN
//! interface it answers ARP for it (RFC 5227 probes included) and, when it sends from that
//! address, its ARP requests carry the address as their sender — another MAC claiming it
//! (RFC 5227 §2.4). The tests check what an operator sees: the Service's
//! `herald.dev/L2Conflict` condition, a Warning Event, the speaker's metrics, and that
//! traffic flows once the other host lets go.
//!
//! I/O: the lab (namespaces, the router's addresses), kubectl, HTTP from the client.
//! Must run as root: `cargo test -p herald-lab --test speaker_l2_conflicts`.

mod common;
mod l2_support;

use std::net::IpAddr;
use std::time::Duration;

use herald_lab::Result;
use herald_lab::plan::ifname::ROUTER_LAN;
use herald_lab::wait::{Poll, poll_until};
use l2_support::FAILOVER_DEADLINE;
use serde_json::Value;

use crate::common::{SETUP_TIMEOUT, World, parse_ip};

/// The Service's `herald.dev/L2Conflict` condition, if any.
fn conflict_condition(world: &World, service: &str) -> Result<Option<Value>> {
    Ok(world.apps.get("service", service)?.and_then(|object| {
        object["status"]["conditions"]
            .as_array()
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c["type"] == "herald.dev/L2Conflict")
            })
            .cloned()
    }))
}

/// Waits until the condition has `status` and `reason`; returns its message.
fn wait_conflict_condition(
    world: &World,
    service: &str,
    status: &str,
    reason: &str,
) -> Result<String> {
    poll_until(
        &format!("condition herald.dev/L2Conflict={status} ({reason}) on Service {service}"),
        SETUP_TIMEOUT,
        Duration::from_millis(250),
        || {
            let condition = conflict_condition(world, service)?;
            Ok(match &condition {
                Some(c) if c["status"] == status && c["reason"] == reason => {
                    Poll::Ready(c["message"].as_str().unwrap_or_default().to_owned())
                }
                other => Poll::Pending(format!("{other:?}")),
            })
        },
    )
}

/// Waits for a Warning Event with `reason` on Service `service`; returns its message.
fn wait_warning_event(world: &World, service: &str, reason: &str) -> Result<String> {
    poll_until(
        &format!("a Warning Event {reason} on Service {service}"),
        SETUP_TIMEOUT,
        Duration::from_millis(250),
        || {
            let text =
                world
                    .kubectl
                    .run(&["-n", world.apps.name(), "get", "events", "-o", "json"])?;
            let events: Value = serde_json::from_str(&text)
                .map_err(|e| herald_lab::LabError::parse("events", e))?;
            let found = events["items"].as_array().and_then(|items| {
                items.iter().find(|e| {
                    e["reason"] == reason
                        && e["type"] == "Warning"
                        && e["involvedObject"]["name"] == service
                })
            });
            Ok(match found {
                Some(event) => Poll::Ready(event["message"].as_str().unwrap_or_default().into()),
                None => Poll::Pending("no such Event".into()),
            })
        },
    )
}

/// The router's LAN MAC, as the speakers will report it.
fn router_mac(world: &World) -> Result<String> {
    let links = world.lab.router().addresses()?;
    links
        .iter()
        .find(|l| l.ifname == ROUTER_LAN)
        .and_then(|l| l.address.clone())
        .ok_or_else(|| herald_lab::LabError::Invalid("the router has no LAN MAC".into()))
}

fn sum_over_nodes(world: &World, metric: &str) -> Result<f64> {
    let mut total = 0.0;
    for node in 1..=2 {
        total += world.metric_sum(node, metric)?;
    }
    Ok(total)
}

/// Two speakers, a pod on each, membership settled.
fn two_node_world(hint: &str) -> Result<World> {
    let mut world = World::l2(hint, 2)?;
    for node in 1..=2 {
        world.add_pod(node, &format!("{hint}-{node}"), "web")?;
    }
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2], 2)?;
    Ok(world)
}

#[test]
fn a_host_already_using_the_address_is_reported_and_the_address_is_taken_once_it_lets_go()
-> Result<()> {
    let address: IpAddr = parse_ip("192.0.2.150")?;
    let world = two_node_world("l2-inuse")?;
    let mac = router_mac(&world)?;
    // The other host holds the address before the Service gets it.
    world
        .lab
        .router()
        .ip(&["addr", "add", "192.0.2.150/32", "dev", ROUTER_LAN])?;
    world.apply_service(&world.service("svc", "web", "Cluster"), &["192.0.2.150"])?;
    world.wait_ready_endpoints("svc", 2)?;

    // The elected speaker's probe is answered: it reports and does not take the address.
    let message = wait_conflict_condition(&world, "svc", "True", "AddressInUse")?;
    assert!(message.contains(&mac), "{message}");
    let event = wait_warning_event(&world, "svc", "AddressInUse")?;
    assert!(event.contains(&mac), "{event}");
    assert!(sum_over_nodes(&world, "herald_speaker_l2_conflicts_total")? >= 1.0);
    // Frame counters are sampled from the announcer about once a second.
    poll_until(
        "the probes to show in the metrics",
        FAILOVER_DEADLINE,
        Duration::from_millis(250),
        || {
            let probes = sum_over_nodes(&world, "herald_speaker_l2_probes_sent_total")?;
            Ok(if probes >= 1.0 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{probes} probes"))
            })
        },
    )?;
    assert_eq!(
        sum_over_nodes(&world, "herald_speaker_l2_announcements_sent_total")?,
        0.0,
        "nobody announces an address another host answers for"
    );
    assert!(world.recorded_owner("svc", address)?.is_none());

    // The other host lets go: a later probe finds the address free, the speaker announces
    // it and the Service is reachable; the condition clears.
    world
        .lab
        .router()
        .ip(&["addr", "del", "192.0.2.150/32", "dev", ROUTER_LAN])?;
    let released = std::time::Instant::now();
    let reply = world.wait_get(address)?;
    assert!(reply.pod.starts_with("l2-inuse-"), "{reply:?}");
    wait_conflict_condition(&world, "svc", "False", "NoConflict")?;
    eprintln!(
        "speaker_l2_conflicts: the other host let go; reachable and condition cleared {} ms later",
        released.elapsed().as_millis()
    );
    Ok(())
}

#[test]
fn another_mac_claiming_an_owned_address_is_defended_and_reported() -> Result<()> {
    let address: IpAddr = parse_ip("192.0.2.151")?;
    let world = two_node_world("l2-claim")?;
    let mac = router_mac(&world)?;
    world.apply_service(&world.service("svc", "web", "Cluster"), &["192.0.2.151"])?;
    world.wait_ready_endpoints("svc", 2)?;
    world.wait_get(address)?;
    let owner = world.wait_any_record("svc", address)?;
    let defences_before = world.metric_sum(owner, "herald_speaker_l2_defences_sent_total")?;

    // The other host claims it: sending from the address, its ARP requests carry the
    // address as their sender (the kernel picks a local source address for them).
    let router = world.lab.router();
    router.ip(&["addr", "add", "192.0.2.151/32", "dev", ROUTER_LAN])?;
    let _ = router.exec_unchecked(
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
            "-I",
            "192.0.2.151",
            "192.0.2.99",
        ],
        Duration::from_secs(10),
    )?;
    router.ip(&["addr", "del", "192.0.2.151/32", "dev", ROUTER_LAN])?;

    let message = wait_conflict_condition(&world, "svc", "True", "AddressClaimedByAnotherMAC")?;
    assert!(message.contains(&mac), "{message}");
    wait_warning_event(&world, "svc", "AddressClaimedByAnotherMAC")?;
    assert!(
        world.metric_sum(owner, "herald_speaker_l2_defences_sent_total")? > defences_before,
        "the owner defends its address (RFC 5227 §2.4 (b))"
    );
    // It kept it: the record, and traffic through it.
    assert_eq!(
        world.recorded_owner("svc", address)?,
        Some(world.node_name(owner)?)
    );
    router.ip(&["neigh", "flush", "dev", ROUTER_LAN, "to", "192.0.2.151"])?;
    let reply = world.wait_get(address)?;
    assert!(reply.pod.starts_with("l2-claim-"), "{reply:?}");
    assert_eq!(world.router_owner(address)?, Some(owner));
    Ok(())
}

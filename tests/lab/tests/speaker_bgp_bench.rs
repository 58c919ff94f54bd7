//! Benchmark: a LoadBalancer Service created → its route in FRR's BGP table, through the
//! whole real path: kube-apiserver, the real `herald-controller` (allocates the address),
//! the real `herald-speaker` (watch, plan, BGP UPDATE) and FRR on the router.
//!
//! Two measurements per run, on a one-node lab with one eBGP session:
//! - sequential: N Services created one after another, each waited for; per Service the
//!   time from `kubectl create` until the prefix is in FRR's table (`show bgp ipv4 unicast
//!   json`, polled), and until a watch saw the controller's address on the Service;
//! - burst: N more Services created at once (one `kubectl create` of a List); the time until
//!   each prefix, and the last, is in FRR's table.
//!
//! Reference, same run: how long `kubectl create` of one Service takes (the apiserver's
//! write latency as a client sees it); the ratio says how much Herald and FRR add.
//!
//! - quick mode (default test run, proves the benchmark works; no timing assertion): 10
//! - full mode: `cargo test -p herald-lab --test speaker_bgp_bench -- --ignored --nocapture`
//!   (100 Services each way). `HERALD_CONTROLLER=path` picks another controller binary.
//!
//! The 10,000-prefix figure (time to converge and UPDATE messages sent) is measured at the
//! session level by `cargo test -p herald-speaker --test bgp_frr ten_thousand -- --nocapture`.

mod bgp_support;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bgp_support::CONVERGE;
use common::{World, parse_ip};
use herald_crds::names::ANNOTATION_LOAD_BALANCER_IPS;
use herald_lab::bench::{ServiceWatch, percentile};
use herald_lab::{Family, LabError, Result};
use serde_json::{Value, json};

/// Longest one Service may take to reach FRR before the run fails.
const PER_SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

/// p50 / p99 / max of some durations, in milliseconds.
fn summary(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&values, 50.0).as_secs_f64() * 1e3,
        percentile(&values, 99.0).as_secs_f64() * 1e3,
        values.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    )
}

/// The manifest of bench Service `name` pinned to `address`.
fn service_manifest(world: &World, name: &str, address: &str) -> Value {
    world
        .service(name, "none", "Cluster")
        .annotation(ANNOTATION_LOAD_BALANCER_IPS, address)
        .without_node_ports()
        .manifest(world.apps.name())
}

/// The prefixes in FRR's IPv4 table.
fn frr_prefixes(world: &World) -> Result<Vec<String>> {
    Ok(world
        .lab
        .frr()?
        .bgp_routes(Family::V4)?
        .into_keys()
        .collect())
}

struct Figures {
    services: usize,
    create: Vec<Duration>,
    addressed: Vec<Duration>,
    in_frr: Vec<Duration>,
    burst_in_frr: Vec<Duration>,
    burst_all: Duration,
    burst_create: Duration,
}

fn run(services: usize) -> Result<Figures> {
    if services > 120 {
        return Err(LabError::Invalid(
            "at most 120 Services each way (a /24)".into(),
        ));
    }
    let mut world = World::bgp(&format!("bgp-bench-{services}"), 1)?;
    let config = world.router_config();
    world.start_frr(&config)?;
    world.peer("router", "192.0.2.1", json!({}))?;
    world.advertise(json!({}))?;
    world.start_all_speakers()?;
    world
        .lab
        .frr()?
        .wait_established(parse_ip(&world.lan_v4(1)?)?, CONVERGE)?;
    let _controller = world.start_controller(1)?;
    // Let the watch's initial list pass.
    let watch = ServiceWatch::start(
        &world.kubectl,
        world.apps.name(),
        Duration::from_millis(500),
    )?;

    // Warm-up: one Service through the whole path (the controller's first list, ...).
    world
        .apps
        .apply(&service_manifest(&world, "warmup", "203.0.113.250").to_string())?;
    world.wait_gateways("203.0.113.250/32", &[world.lan_v4(1)?], CONVERGE)?;

    let mut figures = Figures {
        services,
        create: Vec::new(),
        addressed: Vec::new(),
        in_frr: Vec::new(),
        burst_in_frr: Vec::new(),
        burst_all: Duration::ZERO,
        burst_create: Duration::ZERO,
    };
    for i in 0..services {
        let name = format!("seq-{i:03}");
        let address = format!("203.0.113.{}", i + 1);
        let prefix = format!("{address}/32");
        let manifest = service_manifest(&world, &name, &address).to_string();
        let started = Instant::now();
        world
            .kubectl
            .run_with_stdin(&["create", "-f", "-"], &manifest)?;
        figures.create.push(started.elapsed());
        let deadline = started + PER_SERVICE_TIMEOUT;
        loop {
            if frr_prefixes(&world)?.contains(&prefix) {
                figures.in_frr.push(started.elapsed());
                break;
            }
            if Instant::now() > deadline {
                return Err(LabError::Invalid(format!(
                    "{name} ({prefix}) not in FRR's table after {PER_SERVICE_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(at) = watch.addressed_at(&name) {
            figures
                .addressed
                .push(at.saturating_duration_since(started));
        }
    }

    // Burst: all at once.
    let items: Vec<Value> = (0..services)
        .map(|i| {
            service_manifest(
                &world,
                &format!("burst-{i:03}"),
                &format!("203.0.113.{}", 121 + i),
            )
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let mut waiting: BTreeSet<String> = (0..services)
        .map(|i| format!("203.0.113.{}/32", 121 + i))
        .collect();
    let started = Instant::now();
    world
        .kubectl
        .run_with_stdin(&["create", "-f", "-"], &list)?;
    figures.burst_create = started.elapsed();
    let deadline = started + PER_SERVICE_TIMEOUT * 2;
    while !waiting.is_empty() {
        let now = started.elapsed();
        for prefix in frr_prefixes(&world)? {
            if waiting.remove(&prefix) {
                figures.burst_in_frr.push(now);
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::Invalid(format!(
                "{} burst prefixes not in FRR's table after {:?}",
                waiting.len(),
                PER_SERVICE_TIMEOUT * 2
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    figures.burst_all = started.elapsed();
    Ok(figures)
}

fn report(figures: &Figures) {
    let median = |values: &[Duration]| {
        let mut sorted = values.to_vec();
        sorted.sort();
        percentile(&sorted, 50.0)
    };
    println!(
        "Service created -> route in FRR's BGP table, {} Services one at a time:",
        figures.services
    );
    println!(
        "  kubectl create returned (reference): {}",
        summary(figures.create.clone())
    );
    println!(
        "  address on the Service (controller): {}",
        summary(figures.addressed.clone())
    );
    println!(
        "  prefix in FRR's table:               {}",
        summary(figures.in_frr.clone())
    );
    let reference = median(&figures.create).as_secs_f64();
    if reference > 0.0 {
        println!(
            "  ratio p50 in-FRR / kubectl create: {:.1}x",
            median(&figures.in_frr).as_secs_f64() / reference
        );
    }
    println!(
        "{} Services created at once (kubectl create took {:?}): all in FRR's table after {:?}; per prefix {}",
        figures.services,
        figures.burst_create,
        figures.burst_all,
        summary(figures.burst_in_frr.clone())
    );
}

#[test]
fn quick_mode_ten_services_reach_frr_one_at_a_time_and_at_once() -> Result<()> {
    let figures = run(10)?;
    report(&figures);
    assert_eq!(figures.in_frr.len(), 10);
    assert_eq!(figures.burst_in_frr.len(), 10);
    Ok(())
}

#[test]
#[ignore = "full benchmark: a few minutes on 2 cores; run with --ignored --nocapture"]
fn full_mode_one_hundred_services_reach_frr_one_at_a_time_and_at_once() -> Result<()> {
    let figures = run(100)?;
    report(&figures);
    assert_eq!(figures.in_frr.len(), 100);
    Ok(())
}

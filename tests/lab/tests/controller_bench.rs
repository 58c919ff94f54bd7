//! Benchmark: through the real kube-apiserver, how long N Services take to all have an
//! address from the real `herald-controller`, and the p50/p99 of "Service created → status
//! written" as one watch sees them (the ADDED event, then the first MODIFIED event carrying
//! an ingress address; both timestamped on arrival by the same watch).
//!
//! Reference measured in the same run: the time kubectl needs to create the N Services
//! (the apiserver's own write throughput here); the ratio says how much the controller adds.
//!
//! - quick mode (default test run, proves the benchmark works; no timing assertion): 100
//! - full mode: `cargo test -p herald-lab --test controller_bench -- --ignored --nocapture`
//!   runs 1,000 and 10,000 (minutes on a 2-core machine). `HERALD_CONTROLLER=path` picks
//!   another binary (e.g. target/release/herald-controller).

mod controller_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use controller_support::{ControllerProcess, Lab, serial};
use herald_lab::bench::{ServiceWatch, percentile};
use herald_lab::{LabError, Result};
use serde_json::{Value, json};

/// Results of one run.
struct Figures {
    services: usize,
    create: Duration,
    all_addressed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn run(services: usize, timeout: Duration) -> Result<Figures> {
    let lab = Lab::new(&format!("ctl-bench-{services}"))?;
    lab.pool("bench", &["198.18.128.0/17"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "bench")?;
    controller.wait_leading(Duration::from_secs(60))?;

    // The watch that timestamps everything.
    let watch = ServiceWatch::start(&lab.kubectl, lab.apps.name(), Duration::from_secs(1))?;

    // Create all Services with `kubectl create` in a few parallel batches.
    let started = Instant::now();
    let batches = 4;
    let mut creators = Vec::new();
    for batch in 0..batches {
        let items: Vec<Value> = (0..services)
            .filter(|i| i % batches == batch)
            .map(|i| {
                // 10,000 Services would exhaust the NodePort range (2,768 ports).
                lab.service(&format!("s{i:05}"), 80)
                    .without_node_ports()
                    .manifest(lab.apps.name())
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        let mut child = lab
            .kubectl
            .command()
            .args(["create", "-f", "-", "-o", "name"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::io("starting kubectl create", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(list.to_string().as_bytes())
                .map_err(|e| LabError::io("feeding kubectl create", e))?;
        }
        creators.push(child);
    }
    for child in creators {
        let output = child
            .wait_with_output()
            .map_err(|e| LabError::io("waiting for kubectl create", e))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first: Vec<&str> = stderr.lines().take(3).collect();
            return Err(LabError::Invalid(format!(
                "kubectl create failed ({} error lines), first: {}",
                stderr.lines().count(),
                first.join(" | ")
            )));
        }
    }
    let create = started.elapsed();

    // Wait (bounded) until every Service has an address.
    let deadline = Instant::now() + timeout;
    loop {
        let addressed = watch.addressed_count();
        if addressed >= services {
            break;
        }
        if Instant::now() > deadline {
            // (The watch ends when it drops.)
            return Err(LabError::Invalid(format!(
                "only {addressed} of {services} Services had an address after {timeout:?}; \
                 controller log {}",
                controller.log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_addressed = started.elapsed();
    let seen = watch.stop()?;
    let mut latencies: Vec<Duration> = seen
        .addressed
        .iter()
        .filter_map(|(name, at)| {
            seen.added
                .get(name)
                .map(|a| at.saturating_duration_since(*a))
        })
        .collect();
    latencies.sort();
    let figures = Figures {
        services,
        create,
        all_addressed,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
    };
    // Every address is distinct.
    let list = lab.kubectl.list("services", Some(lab.apps.name()), None)?;
    let mut addresses: Vec<String> = list
        .iter()
        .flat_map(controller_support::ingress_of)
        .collect();
    let total = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), total, "an address was given twice");
    assert_eq!(total, services);
    drop(controller);
    Ok(figures)
}

fn report(figures: &Figures) {
    println!(
        "controller_bench: {} Services: created in {:.2?} (reference), all addressed after \
         {:.2?} (ratio {:.2}); created→status p50 {:.0?} p99 {:.0?} max {:.0?}; {:.0} Services/s",
        figures.services,
        figures.create,
        figures.all_addressed,
        figures.all_addressed.as_secs_f64() / figures.create.as_secs_f64().max(1e-9),
        figures.p50,
        figures.p99,
        figures.max,
        figures.services as f64 / figures.all_addressed.as_secs_f64().max(1e-9),
    );
}

#[test]
fn quick_mode_one_hundred_services_all_get_distinct_addresses() -> Result<()> {
    let _serial = serial();
    let figures = run(100, Duration::from_secs(120))?;
    report(&figures);
    Ok(())
}

#[test]
#[ignore = "full benchmark: minutes on 2 cores; run with --ignored --nocapture"]
fn full_mode_one_thousand_and_ten_thousand_services() -> Result<()> {
    let _serial = serial();
    for services in [1_000, 10_000] {
        let figures = run(services, Duration::from_secs(1_800))?;
        report(&figures);
    }
    Ok(())
}

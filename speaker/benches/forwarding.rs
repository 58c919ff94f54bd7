//! Forwarding benchmark: how long the nftables ruleset takes to plan, render and apply at
//! 1k, 10k and 50k Services × 4 endpoints, and how long one Service's change takes as an
//! incremental update, against rebuilding the whole table (the reference, measured in the
//! same run at the same size).
//!
//! Everything is applied in a scratch network namespace the benchmark creates and deletes
//! (needs root, iproute2 and nft; without them only the pure steps are timed).
//!
//! `cargo bench -p herald-speaker --bench forwarding` (add `-- --quick`, or set CI, for the
//! small mode CI uses to prove it still works).

#[path = "../tests/support/forwarding_fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fixture::ScratchNetns;
use herald_speaker::forwarding::{
    ApplyOutcome, DEFAULT_MASQUERADE_MARK, Forwarder, NftCommand, Ruleset, render_full,
    render_update,
};
use herald_speaker::model::Model;
use herald_speaker::planner::plan;

const ENDPOINTS_PER_SERVICE: usize = 4;

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick") || std::env::var_os("CI").is_some();
    let sizes: &[usize] = if quick {
        &[100, 1000]
    } else {
        &[1000, 10_000, 50_000]
    };
    let updates = if quick { 3 } else { 7 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let kernel = fixture::nft_available();
    println!(
        "# forwarding: nftables ruleset at N Services x {ENDPOINTS_PER_SERVICE} endpoints{}",
        if quick { " (quick mode)" } else { "" }
    );
    if !kernel {
        println!("# applying skipped: needs root, iproute2 and nft; timing the pure steps only");
    }
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11} {:>9} {:>8}",
        "services",
        "chains",
        "plan",
        "build",
        "render",
        "script",
        "full apply",
        "1-svc diff",
        "1-svc apply",
        "ratio"
    );
    for &services in sizes {
        runtime.block_on(measure(services, updates, kernel));
    }
    println!(
        "# plan = planner over the model; build = ruleset data; render = full nft text; \
         full apply = nft -f of the whole table (delete + create, one transaction); \
         1-svc = one Service's endpoint replaced: diff rendering, and its nft -f apply (median \
         of {updates}); ratio = full apply / 1-svc apply."
    );
}

fn ruleset_of(model: &Model) -> (Ruleset, Duration, Duration) {
    let live: BTreeSet<String> = model.nodes.keys().cloned().collect();
    let started = Instant::now();
    let node_plan = plan(model, fixture::THIS_NODE, &live);
    let planned = started.elapsed();
    let started = Instant::now();
    let ruleset = Ruleset::from_plan(&node_plan.forwarding, DEFAULT_MASQUERADE_MARK);
    (ruleset, planned, started.elapsed())
}

async fn measure(services: usize, updates: usize, kernel: bool) {
    let mut model = fixture::synthetic_model(services, ENDPOINTS_PER_SERVICE);
    let (ruleset, planned, built) = ruleset_of(&model);
    let chains = ruleset.service_chains.len() + ruleset.endpoint_chains.len();
    let started = Instant::now();
    let script = render_full(&ruleset);
    let rendered = started.elapsed();

    let mut full_apply = None;
    let mut update_applies = Vec::new();
    let mut diff_times = Vec::new();
    let namespace = kernel.then(|| ScratchNetns::create("bench"));
    let mut forwarder = namespace
        .as_ref()
        .map(|ns| Forwarder::new(NftCommand::in_netns(&ns.name)));
    if let Some(forwarder) = forwarder.as_mut() {
        match forwarder.apply(ruleset.clone()).await {
            Ok(ApplyOutcome::Rebuilt { took, .. }) => full_apply = Some(took),
            Ok(other) => println!("unexpected first apply outcome: {other:?}"),
            Err(error) => println!("full apply failed at {services}: {error}"),
        }
    }
    let mut current = ruleset;
    for round in 0..updates {
        // A different Service each round, spread over the whole set.
        let index = (round * 7919 + 13) % services;
        fixture::replace_one_endpoint(&mut model, index);
        let (next, _, _) = ruleset_of(&model);
        let started = Instant::now();
        let diff = render_update(&current, &next);
        diff_times.push(started.elapsed());
        if diff.is_none() {
            println!("round {round}: no change produced (benchmark fixture problem)");
        }
        if let (Some(forwarder), true) = (forwarder.as_mut(), full_apply.is_some()) {
            match forwarder.apply(next.clone()).await {
                Ok(ApplyOutcome::Updated { took, .. }) => update_applies.push(took),
                Ok(other) => println!("round {round}: expected an update, got {other:?}"),
                Err(error) => println!("round {round}: update failed: {error}"),
            }
        }
        current = next;
    }
    if let Some(forwarder) = forwarder.as_mut()
        && let Err(error) = forwarder.remove().await
    {
        println!("removing the table failed: {error}");
    }
    drop(namespace);

    let update_apply = median(&mut update_applies);
    let ratio = match (full_apply, update_apply) {
        (Some(full), Some(one)) => {
            format!("{:.0}x", full.as_secs_f64() / one.as_secs_f64().max(1e-9))
        }
        _ => "-".to_string(),
    };
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11} {:>9} {:>8}",
        services,
        chains,
        show(Some(planned)),
        show(Some(built)),
        show(Some(rendered)),
        format!("{:.1} MiB", script.len() as f64 / (1024.0 * 1024.0)),
        show(full_apply),
        show(median(&mut diff_times)),
        show(update_apply),
        ratio
    );
}

fn median(samples: &mut [Duration]) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

fn show(duration: Option<Duration>) -> String {
    match duration {
        None => "-".to_string(),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2} s", d.as_secs_f64()),
        Some(d) if d >= Duration::from_millis(1) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0} us", d.as_secs_f64() * 1e6),
    }
}

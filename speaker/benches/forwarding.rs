//! Forwarding benchmark: how long the nftables ruleset takes to plan, render and apply at
//! 1k, 10k and 50k Services × 4 endpoints, and how long one Service's change takes as an
//! incremental update, against rebuilding the whole table (the reference, measured in the
//! same run at the same size).
//!
//! Then the data path: latency (connect + request + reply) and throughput through Herald's
//! DNAT (Local, and Cluster with masquerade) against going straight to the pod over the same
//! namespace hops, as ratios measured in the same run.
//!
//! Everything is applied in scratch network namespaces the benchmark creates and deletes
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
    if fixture::run_traffic_helper() {
        return;
    }
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
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11} {:>11} {:>8} {:>11} {:>7}",
        "services",
        "chains",
        "plan",
        "build",
        "render",
        "script",
        "full apply",
        "1-svc diff",
        "1-svc apply",
        "ratio",
        "vmap apply",
        "ratio"
    );
    // The vmap reference loads quadratically; past this size it would take many minutes.
    let reference_limit = if quick { 1000 } else { 10_000 };
    for &services in sizes {
        runtime.block_on(measure(
            services,
            updates,
            kernel,
            services <= reference_limit,
        ));
    }
    println!(
        "# plan = planner over the model; build = ruleset data; render = full nft text; \
         full apply = nft -f of the whole table (delete + create, one transaction); \
         1-svc = one Service's endpoint replaced: diff rendering, and its nft -f apply (median \
         of {updates}); ratio = full apply / 1-svc apply; vmap apply = the same table in \
         kube-proxy's layout (a chain per endpoint, numgen vmap pick; reference), ratio = vmap \
         apply / full apply."
    );
    if kernel {
        runtime.block_on(dnat_path(quick));
    }
}

/// Latency and throughput through Herald's DNAT against going straight to the pod over the
/// same hops (client -> node -> pod namespaces), with a large table loaded on the node.
async fn dnat_path(quick: bool) {
    let (requests, bytes, background) = if quick {
        (50, 16 << 20, 100)
    } else {
        (2000, 512 << 20, 10_000)
    };
    let lab = match fixture::TrafficLab::create(&[]) {
        Ok(lab) => lab,
        Err(error) => {
            println!("DNAT path skipped: {error}");
            return;
        }
    };
    let model = fixture::synthetic_model(background, ENDPOINTS_PER_SERVICE);
    // The synthetic Services use 203.0.113.x:1000+; the lab's two use port 80.
    let (mut ruleset, _, _) = ruleset_of(&model);
    let lab_ruleset = lab_services();
    ruleset.services.extend(lab_ruleset.services);
    ruleset.service_chains.extend(lab_ruleset.service_chains);
    let mut forwarder = Forwarder::new(NftCommand::in_netns(&lab.node.name));
    if let Err(error) = forwarder.apply(ruleset).await {
        println!("DNAT path skipped: {error}");
        return;
    }
    let direct = format!("{}:{}", fixture::LAB_POD_ADDRESS, fixture::LAB_POD_PORT);
    println!(
        "# DNAT path: client -> node -> pod over veth, {background} other Services in the table; \
         {requests} sequential connect+request+reply round trips, {} MiB over one connection \
         (median of 3)",
        bytes >> 20
    );
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "path", "p50", "p99", "MiB/s", "p50 x", "MiB/s x"
    );
    let reference = measure_path(&lab, &direct, requests, bytes);
    report_path("direct to pod (reference)", &reference, &reference);
    for (label, target) in [
        ("via 203.0.113.11 Local (DNAT)", "203.0.113.11:80"),
        ("via 203.0.113.10 Cluster (DNAT+masq)", "203.0.113.10:80"),
    ] {
        let measured = measure_path(&lab, target, requests, bytes);
        report_path(label, &measured, &reference);
    }
}

/// Two Services pointing at the lab's pod: a Local one (no masquerade) and a Cluster one
/// whose endpoint counts as remote (masqueraded).
fn lab_services() -> Ruleset {
    use herald_speaker::model::{Protocol, ServiceKey};
    use herald_speaker::planner::{Backend, ForwardKey, ForwardTarget};
    let backend = |masquerade| Backend {
        address: fixture::LAB_POD_ADDRESS.parse().expect("lab address"),
        port: fixture::LAB_POD_PORT,
        masquerade,
    };
    let entry = |address: &str, name: &str, masquerade| {
        (
            ForwardKey {
                address: address.parse().expect("lab address"),
                protocol: Protocol::Tcp,
                port: 80,
            },
            ForwardTarget {
                service: ServiceKey::new("lab", name),
                port_name: "http".into(),
                backends: vec![backend(masquerade)],
            },
        )
    };
    let forwarding = [
        entry("203.0.113.11", "local", false),
        entry("203.0.113.10", "cluster", true),
    ]
    .into();
    Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK)
}

#[derive(Debug, Default)]
struct PathFigures {
    p50: Option<Duration>,
    p99: Option<Duration>,
    mib_per_sec: Option<f64>,
}

fn measure_path(
    lab: &fixture::TrafficLab,
    target: &str,
    requests: usize,
    bytes: usize,
) -> PathFigures {
    let line = lab.client(&format!("latency:{target}:{requests}"));
    let mut samples: Vec<Duration> = line
        .strip_prefix("LAT")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect();
    samples.sort();
    if samples.len() < requests {
        println!(
            "  {target}: {} of {requests} requests answered",
            samples.len()
        );
    }
    let at = |q: usize| {
        samples
            .get((samples.len() * q / 100).min(samples.len().saturating_sub(1)))
            .copied()
    };
    let mut rates: Vec<f64> = (0..3)
        .filter_map(|_| {
            let line = lab.client(&format!("throughput:{target}:{bytes}"));
            let seconds: f64 = line.strip_prefix("TPUT ")?.trim().parse().ok()?;
            Some(bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9))
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    PathFigures {
        p50: at(50),
        p99: at(99),
        mib_per_sec: rates.get(rates.len() / 2).copied(),
    }
}

fn report_path(label: &str, figures: &PathFigures, reference: &PathFigures) {
    let latency_ratio = match (figures.p50, reference.p50) {
        (Some(a), Some(b)) => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-9)),
        _ => "-".into(),
    };
    let throughput_ratio = match (figures.mib_per_sec, reference.mib_per_sec) {
        (Some(a), Some(b)) => format!("{:.2}", a / b.max(1e-9)),
        _ => "-".into(),
    };
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>9} {:>9}",
        label,
        show(figures.p50),
        show(figures.p99),
        figures
            .mib_per_sec
            .map_or("-".into(), |r| format!("{r:.0}")),
        latency_ratio,
        throughput_ratio
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

async fn measure(services: usize, updates: usize, kernel: bool, with_reference: bool) {
    let mut model = fixture::synthetic_model(services, ENDPOINTS_PER_SERVICE);
    let (ruleset, planned, built) = ruleset_of(&model);
    let chains = ruleset.service_chains.len();
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
    let reference = kube_proxy_layout(&ruleset);
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
    let mut reference_apply = None;
    if kernel && with_reference {
        let namespace = ScratchNetns::create("bench-ref");
        let nft = NftCommand::in_netns(&namespace.name);
        let started = Instant::now();
        match nft.apply(&reference).await {
            Ok(()) => reference_apply = Some(started.elapsed()),
            Err(error) => println!("reference apply failed at {services}: {error}"),
        }
    }

    let update_apply = median(&mut update_applies);
    let ratio = match (full_apply, update_apply) {
        (Some(full), Some(one)) => {
            format!("{:.0}x", full.as_secs_f64() / one.as_secs_f64().max(1e-9))
        }
        _ => "-".to_string(),
    };
    let reference_ratio = match (reference_apply, full_apply) {
        (Some(reference), Some(ours)) => format!(
            "{:.1}x",
            reference.as_secs_f64() / ours.as_secs_f64().max(1e-9)
        ),
        _ => "-".to_string(),
    };
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11} {:>11} {:>8} {:>11} {:>7}",
        services,
        chains,
        show(Some(planned)),
        show(Some(built)),
        show(Some(rendered)),
        format!("{:.1} MiB", script.len() as f64 / (1024.0 * 1024.0)),
        show(full_apply),
        show(median(&mut diff_times)),
        show(update_apply),
        ratio,
        show(reference_apply),
        reference_ratio
    );
}

/// The reference: the same table in kube-proxy's nftables layout, one chain per endpoint
/// (mark + DNAT) and service chains picking among them with `numgen random mod N vmap`.
fn kube_proxy_layout(ruleset: &Ruleset) -> String {
    use std::fmt::Write as _;
    let full = render_full(ruleset);
    let (head, rest) = full
        .split_once("table inet herald {\n")
        .unwrap_or((&full, ""));
    let tail = rest
        .find("\tmap service-ips-v4")
        .map_or(rest, |at| &rest[at..]);
    let mut out = format!("{head}table inet herald {{\n");
    for (index, (name, chain)) in ruleset.service_chains.iter().enumerate() {
        let mut arms = Vec::new();
        for (k, backend) in chain.backends.iter().enumerate() {
            let endpoint = format!("ep-{index}-{k}");
            let _ = writeln!(out, "\tchain {endpoint} {{");
            if backend.masquerade {
                let _ = writeln!(
                    out,
                    "\t\tmeta mark set meta mark | {:#010x}",
                    ruleset.masquerade_mark
                );
            }
            let target = match backend.address {
                std::net::IpAddr::V4(a) => format!("ip to {a}:{}", backend.port),
                std::net::IpAddr::V6(a) => format!("ip6 to [{a}]:{}", backend.port),
            };
            let _ = writeln!(
                out,
                "\t\tmeta l4proto {} dnat {target}\n\t}}",
                chain.protocol.nft_name()
            );
            arms.push(format!("{k} : goto {endpoint}"));
        }
        let _ = writeln!(
            out,
            "\tchain {name} {{\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
            arms.len(),
            arms.join(", ")
        );
    }
    out.push_str(tail);
    out
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

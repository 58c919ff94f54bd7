//! `herald-controller`: hands out LoadBalancer addresses from IPAddressPools.
//!
//! The binary's shell: flags, logging, the Kubernetes client, the HTTP endpoint, leader
//! election, signals. Each leadership term runs [`herald_controller::reconciler::run_term`];
//! losing the lease closes the write gate at once and ends the term.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use herald_controller::convert::ClassFilter;
use herald_controller::http::{self, Health};
use herald_controller::leader::{self, LeaseSettings};
use herald_controller::metrics::Metrics;
use herald_controller::reconciler::{self, Settings, WriteGate};
use herald_process::LogFormat;
use tokio::sync::watch;

mod pre_delete;

/// Herald's controller: gives every Service of type LoadBalancer (class herald.dev/lb, and
/// class-less ones unless --ignore-classless) an address from the IPAddressPools in its
/// namespace, and keeps it across restarts.
#[derive(Debug, Parser)]
#[command(name = "herald-controller", version)]
struct Args {
    /// Kubeconfig file; without it the in-cluster config (or $KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// The install namespace: where IPAddressPools and the leader Lease live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    namespace: String,

    /// Leave Services of type LoadBalancer without a loadBalancerClass alone.
    #[arg(long)]
    ignore_classless: bool,

    /// Also read MetalLB's Service annotations (metallb.io/address-pool, loadBalancerIPs,
    /// allow-shared-ip, and their metallb.universe.tf/ forms) so Services need no edit while
    /// switching from MetalLB. A herald.dev/ annotation wins over MetalLB's; metallb.io/ wins
    /// over metallb.universe.tf/.
    #[arg(long)]
    metallb_annotations: bool,

    /// The spec.loadBalancerClass this instance serves.
    #[arg(long, default_value = herald_crds::names::LOAD_BALANCER_CLASS)]
    load_balancer_class: String,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,

    /// Elect a leader among replicas through a Lease; only the leader writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "herald-controller")]
    lease_name: String,

    /// Lease validity in seconds after each renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,

    /// This replica's identity in the Lease (the pod name); default: the host name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// At most one identical Event per object within this many seconds.
    #[arg(long, default_value_t = 600)]
    event_window_seconds: u64,

    /// Service reconciles in flight at once (decisions stay serialized).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald-controller".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(result) = pre_delete::dispatch().await {
        return result;
    }
    let args = Args::parse();
    herald_process::logging::init(args.log_format);
    let identity = args.identity.clone().unwrap_or_else(host_name);
    let client = herald_process::client::connect(args.kubeconfig.as_deref()).await?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let gate = Arc::new(WriteGate::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let http_task = http::serve(listener, Arc::clone(&health), Arc::clone(&metrics));

    let (leading_tx, mut leading) = watch::channel(false);
    let elector = if args.leader_elect {
        Some(tokio::spawn(leader::elect(
            client.clone(),
            LeaseSettings {
                namespace: args.namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: args.lease_duration.max(2),
                grace: (args.lease_duration / 3).clamp(1, args.lease_duration.max(2) - 1),
            },
            Arc::clone(&gate),
            leading_tx,
            shutdown_rx.clone(),
        )))
    } else {
        gate.open();
        leading_tx.send_replace(true);
        None
    };

    let settings = Settings {
        namespace: args.namespace.clone(),
        filter: ClassFilter {
            class: args.load_balancer_class.clone(),
            ignore_classless: args.ignore_classless,
        },
        metallb_annotations: args.metallb_annotations,
        identity: identity.clone(),
        event_window: Duration::from_secs(args.event_window_seconds),
        concurrency: args.concurrency.max(1),
    };
    tracing::info!(
        %identity,
        namespace = %args.namespace,
        ignore_classless = args.ignore_classless,
        metallb_annotations = args.metallb_annotations,
        class = %args.load_balancer_class,
        leader_elect = args.leader_elect,
        metrics_addr = %args.metrics_addr,
        "herald-controller starting"
    );

    let terminated = herald_process::signals::termination();
    tokio::pin!(terminated);
    let mut failures: u32 = 0;
    let signal = 'outer: loop {
        // Stand by until this replica leads.
        tokio::select! {
            result = leading.wait_for(|lead| *lead) => {
                if result.is_err() {
                    break 'outer "leader election ended";
                }
            }
            signal = &mut terminated => break 'outer signal,
        }
        health.leader.store(true, Ordering::Release);
        health.restored.store(false, Ordering::Release);
        metrics.leader.set(1);
        tracing::info!("leading: restoring, then reconciling");
        let term = reconciler::run_term(
            client.clone(),
            settings.clone(),
            Arc::clone(&metrics),
            Arc::clone(&gate),
            Arc::clone(&health),
        );
        let mut ended_by_error = false;
        tokio::select! {
            result = term => {
                ended_by_error = true;
                if let Err(error) = result {
                    tracing::error!(%error, "the term ended; starting a new one");
                }
            }
            _ = leading.wait_for(|lead| !*lead) => {
                tracing::warn!("leadership lost: the term is stopped");
            }
            signal = &mut terminated => {
                gate.close();
                break 'outer signal;
            }
        }
        health.leader.store(false, Ordering::Release);
        health.restored.store(false, Ordering::Release);
        metrics.leader.set(0);
        if ended_by_error {
            failures = failures.saturating_add(1);
            let delay = Duration::from_secs(1u64 << failures.min(5));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                signal = &mut terminated => break 'outer signal,
            }
        } else {
            failures = 0;
        }
    };
    tracing::info!(%signal, "shutting down");
    gate.close();
    shutdown_tx.send_replace(true);
    if let Some(elector) = elector {
        // Releases the Lease so a standby takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    }
    http_task.abort();
    Ok(())
}

//! `herald-speaker`: the per-node agent.
//!
//! The binary's shell: flags, logging, the Kubernetes client, the HTTP endpoint, the
//! executors chosen by flags, and signals. Everything else is
//! [`herald_speaker::runtime::run`]. SIGTERM or SIGINT stops the watches, shuts the
//! executors down in reverse order (forwarding removes Herald's nftables table), leaves
//! the membership cluster and exits 0.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use herald_crds::names::LOAD_BALANCER_CLASS;
use herald_process::LogFormat;
use herald_speaker::api_writer::{ApiAccess, ApiWriter, queue::QueueLimits};
use herald_speaker::bgp::driver::ListenConfig;
use herald_speaker::bgp::executor::{BgpExecutor, BgpExecutorConfig};
use herald_speaker::checkpoint::CheckpointConfig;
use herald_speaker::convert::ConvertOptions;
use herald_speaker::forwarding::{ForwardingExecutor, NftCommand, render_teardown};
use herald_speaker::l2::executor::{L2Executor, L2ExecutorConfig};
use herald_speaker::membership::{DEFAULT_MEMBERSHIP_PORT, MembershipConfig};
use herald_speaker::metrics::Metrics;
use herald_speaker::observability::{self, Health};
use herald_speaker::runtime::{
    self, DEFAULT_RESYNC_INTERVAL, ExecutorHandle, Executors, KeySource, RuntimeConfig,
};

/// How long the exit waits for queued API writes.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Membership failure-detection timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MembershipTiming {
    /// Herald's defaults (`MembershipConfig::default()`): a dead speaker is noticed in
    /// roughly half a second.
    Herald,
    /// memberlist's LAN defaults (probe every 1 s, 500 ms probe timeout, suspicion ×4), what
    /// MetalLB ships: for measuring the difference (the layer-2 failover benchmark).
    MemberlistLan,
}

impl MembershipTiming {
    fn config(self) -> MembershipConfig {
        match self {
            MembershipTiming::Herald => MembershipConfig::default(),
            MembershipTiming::MemberlistLan => MembershipConfig::memberlist_lan(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// Herald's speaker: runs on every node, watches the cluster and makes this node announce
/// and forward the LoadBalancer addresses it is responsible for.
#[derive(Debug, Parser)]
#[command(name = "herald-speaker", version)]
struct Args {
    /// This node's Kubernetes name (from the downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,

    /// The install namespace: Herald's custom resources and the memberlist Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    namespace: String,

    /// Kubeconfig file; without it the in-cluster config (or $KUBECONFIG, ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7473")]
    metrics_addr: SocketAddr,

    /// nftables DNAT from external addresses to endpoints (Herald's own table). Leave off
    /// where kube-proxy already handles LoadBalancer addresses.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    forwarding: Switch,

    /// With --forwarding on: stop sending new connections to endpoints on nodes the
    /// membership declares dead, without waiting for the API (docs/endpoint-eviction.md).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    endpoint_eviction: Switch,

    /// With --forwarding on: delete tracked connections DNATed to a backend that left
    /// (UDP always; TCP/SCTP when the endpoint is gone for good).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    conntrack_cleanup: Switch,

    /// Membership address, `IP` or `IP:PORT` (default: this Node's InternalIP at
    /// --memberlist-port). A port given here also becomes the seeds' port.
    #[arg(long, value_parser = parse_bind)]
    memberlist_bind: Option<BindArg>,

    /// Membership UDP port of every speaker, used with the Node's InternalIP when
    /// --memberlist-bind is not given (and for the seeds).
    #[arg(long, default_value_t = DEFAULT_MEMBERSHIP_PORT)]
    memberlist_port: u16,

    /// Name of the Secret (in the install namespace) whose key `secretkey` authenticates
    /// membership messages.
    #[arg(long, env = "MEMBERLIST_SECRET")]
    memberlist_secret: Option<String>,

    /// Run membership without authentication when no --memberlist-secret is given.
    #[arg(long)]
    insecure_memberlist: bool,

    /// Period of the full resync that reads the real state back and repairs drift
    /// (e.g. `30s`, `2m`, or plain seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resync_interval: Duration,

    /// Directory of the on-node checkpoint of the desired state (a hostPath): written on
    /// every applied change, resumed from when the speaker starts while the API server does
    /// not answer. Unset: no checkpoint (a restart during an API outage announces nothing).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,

    /// A checkpoint last known current longer ago than this is refused.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    checkpoint_max_age: Duration,

    /// The `spec.loadBalancerClass` Herald serves.
    #[arg(long, default_value = LOAD_BALANCER_CLASS)]
    load_balancer_class: String,

    /// Leave Services of type LoadBalancer without a loadBalancerClass alone.
    #[arg(long)]
    ignore_classless: bool,

    /// Layer-2 mode: answer ARP/NDP for the addresses this node owns (needs CAP_NET_RAW).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    layer2: Switch,

    /// Membership failure-detection timing (comparisons only).
    #[arg(long, value_enum, default_value_t = MembershipTiming::Herald, hide = true)]
    membership_timing: MembershipTiming,

    /// BGP mode: sessions with the BGPPeers selecting this node, announcing its routes.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    bgp: Switch,

    /// BGP Identifier for peers without `routerID` (e.g. the node's IP from the downward
    /// API). An IPv6 address is ignored: identifiers are IPv4 (RFC 6286). Unset: the IPv4
    /// address the session is sent from, else the node's first global IPv4 address.
    #[arg(long, env = "BGP_ROUTER_ID")]
    bgp_router_id: Option<IpAddr>,

    /// TCP port to accept BGP connections from peers on (0: connect out only).
    #[arg(long, default_value_t = herald_speaker::bgp::driver::BGP_PORT)]
    bgp_listen_port: u16,
}

/// `--memberlist-bind`: an address, with or without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BindArg {
    ip: IpAddr,
    port: Option<u16>,
}

fn parse_bind(text: &str) -> Result<BindArg, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(BindArg {
            ip: address.ip(),
            port: Some(address.port()),
        });
    }
    text.parse::<IpAddr>()
        .map(|ip| BindArg { ip, port: None })
        .map_err(|_| format!("{text:?} is neither IP nor IP:PORT"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        other => return Err(format!("unknown duration unit {other:?} (ms, s, m, h)")),
    };
    if duration.is_zero() {
        return Err("the duration must be above zero".to_string());
    }
    Ok(duration)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald_process::logging::init(args.log_format);

    let key_source = match (&args.memberlist_secret, args.insecure_memberlist) {
        (Some(name), _) if !name.is_empty() => KeySource::Secret(name.clone()),
        (_, true) => {
            tracing::warn!("membership runs WITHOUT authentication (--insecure-memberlist)");
            KeySource::Insecure
        }
        _ => bail!(
            "no --memberlist-secret given: membership messages must be authenticated with a \
             shared key (a Secret with key `secretkey` in the install namespace); pass \
             --insecure-memberlist to run without authentication"
        ),
    };
    if args.node_name.is_empty() {
        bail!("--node-name (NODE_NAME) must not be empty");
    }

    let forwarding = args.forwarding == Switch::On;
    let nft = NftCommand::default();
    if !forwarding {
        // An install that turned forwarding off must not keep DNATing with old rules.
        match nft.list_table().await {
            Ok(Some(_)) => match nft.apply(&render_teardown()).await {
                Ok(()) => tracing::info!("forwarding is off: removed a leftover nftables table"),
                Err(error) => {
                    tracing::warn!(%error, "forwarding is off but a leftover nftables table could not be removed")
                }
            },
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%error, "forwarding is off; could not check for a leftover nftables table")
            }
        }
    }

    let memberlist_port = args
        .memberlist_bind
        .and_then(|bind| bind.port)
        .unwrap_or(args.memberlist_port);
    let config = RuntimeConfig {
        node_name: args.node_name.clone(),
        install_namespace: args.namespace.clone(),
        convert: ConvertOptions {
            load_balancer_class: args.load_balancer_class.clone(),
            serve_classless: !args.ignore_classless,
            install_namespace: args.namespace.clone(),
        },
        key_source,
        memberlist_port,
        memberlist_bind: args
            .memberlist_bind
            .map(|bind| SocketAddr::new(bind.ip, memberlist_port)),
        membership: args.membership_timing.config(),
        resync_interval: if args.resync_interval.is_zero() {
            DEFAULT_RESYNC_INTERVAL
        } else {
            args.resync_interval
        },
        endpoint_eviction: forwarding && args.endpoint_eviction == Switch::On,
        checkpoint: args
            .checkpoint_dir
            .clone()
            .map(|directory| CheckpointConfig {
                directory,
                max_age: args.checkpoint_max_age,
            }),
    };

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (bound, http) =
        observability::serve(args.metrics_addr, Arc::clone(&metrics), Arc::clone(&health))
            .await
            .with_context(|| format!("binding the metrics endpoint {}", args.metrics_addr))?;
    tracing::info!(address = %bound, "serving /metrics, /healthz, /readyz");

    let client = herald_process::client::connect(args.kubeconfig.as_deref()).await?;
    // One queued writer for every executor's status, annotations and Events.
    let writer = ApiWriter::start(QueueLimits::default(), metrics.api_writer.clone());
    let api = ApiAccess {
        client: client.clone(),
        writer: writer.clone(),
    };
    let bgp = if args.bgp == Switch::On {
        let mut bgp_config =
            BgpExecutorConfig::new(config.node_name.clone(), args.namespace.clone());
        bgp_config.router_id = match args.bgp_router_id {
            Some(IpAddr::V4(id)) => Some(id),
            Some(IpAddr::V6(address)) => {
                tracing::info!(%address, "--bgp-router-id is IPv6; BGP identifiers are IPv4, so the node's IPv4 address is used");
                None
            }
            None => None,
        };
        bgp_config.listen = (args.bgp_listen_port != 0).then(|| ListenConfig {
            port: args.bgp_listen_port,
            ..ListenConfig::default()
        });
        let executor = BgpExecutor::start(bgp_config, Some(api.clone()), metrics.bgp.clone())
            .context("starting the BGP executor")?;
        Some(ExecutorHandle::from(executor))
    } else {
        None
    };
    let executors = Executors {
        bgp,
        l2: (args.layer2 == Switch::On).then(|| {
            let l2_config = L2ExecutorConfig::new(config.node_name.clone());
            L2Executor::start(l2_config, Some(api.clone()), metrics.l2.clone())
        }),
        forwarding: forwarding.then(|| {
            let executor = ForwardingExecutor::new(nft);
            let executor = if args.conntrack_cleanup == Switch::On {
                executor.with_conntrack_cleanup(metrics.forwarding.clone())
            } else {
                executor
            };
            ExecutorHandle::spawn(executor)
        }),
    };
    tracing::info!(node = %config.node_name, forwarding, "herald-speaker starting");
    let termination = async {
        let signal = herald_process::signals::termination().await;
        tracing::info!("{signal} received");
    };
    let result = runtime::run(client, config, executors, metrics, health, termination).await;
    // Writes still queued (records, Events) get a bounded chance to reach the API.
    if !writer.flush(WRITER_DRAIN_TIMEOUT).await {
        tracing::warn!("some API writes were not sent before exit");
    }
    http.abort();
    result.context("the speaker's runtime stopped")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_plain_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_bind_address_may_carry_a_port_or_leave_it_to_memberlist_port() {
        assert_eq!(
            parse_bind("192.0.2.11"),
            Ok(BindArg {
                ip: "192.0.2.11".parse().expect("ip"),
                port: None
            })
        );
        assert_eq!(
            parse_bind("[2001:db8:1::11]:7000"),
            Ok(BindArg {
                ip: "2001:db8:1::11".parse().expect("ip"),
                port: Some(7000)
            })
        );
        assert!(parse_bind("node-1").is_err());
    }

    #[test]
    fn the_memberlist_lan_timing_is_a_valid_slower_membership_and_not_the_default() {
        let args = Args::try_parse_from(["herald-speaker", "--node-name", "n1"]).expect("parses");
        assert_eq!(args.membership_timing, MembershipTiming::Herald);
        let lan = MembershipTiming::MemberlistLan.config();
        assert!(lan.validate().is_ok());
        assert!(lan.probe_period > MembershipConfig::default().probe_period);
    }

    #[test]
    fn the_command_line_parses_with_the_documented_defaults() {
        let args = Args::try_parse_from(["herald-speaker", "--node-name", "n1"]).expect("parses");
        assert_eq!(args.forwarding, Switch::Off);
        assert_eq!(args.metrics_addr, "0.0.0.0:7473".parse().expect("addr"));
        assert_eq!(args.resync_interval, Duration::from_secs(30));
        assert_eq!(args.checkpoint_dir, None);
        assert_eq!(
            args.checkpoint_max_age,
            herald_speaker::checkpoint::DEFAULT_MAX_AGE
        );
        assert!(
            Args::try_parse_from([
                "herald-speaker",
                "--forwarding",
                "maybe",
                "--node-name",
                "n1"
            ])
            .is_err()
        );
    }
}

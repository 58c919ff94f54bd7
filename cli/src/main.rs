//! The `herald` binary: argument parsing, reading files/stdin/the cluster, printing. The
//! logic lives in the library's pure modules; this file is the I/O edge.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use herald_cli::metallb::{self, Kind};
use herald_cli::source::{self, Document};
use herald_cli::translate::{self, DEFAULT_NAMESPACE, Options, Severity};
use herald_cli::{check, status};
use herald_crds::api::{BGPPeer, IPAddressPool};
use herald_crds::names;
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Herald's command-line tool: switch from MetalLB in one step, see who announces what, and
/// check a cluster for problems. Also usable as `kubectl herald` (install the binary as
/// `kubectl-herald` on the PATH).
#[derive(Parser, Debug)]
#[command(name = "herald", version, propagate_version = true)]
struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Translate MetalLB manifests into Herald manifests, pinning every Service to the
    /// address MetalLB gave it.
    ///
    /// Reads MetalLB objects (metallb.io/v1beta1: IPAddressPool, L2Advertisement,
    /// BGPAdvertisement, BFDProfile, Community; BGPPeer in v1beta1 and v1beta2) and
    /// LoadBalancer Services with metallb.io/ or metallb.universe.tf/ annotations, from
    /// files, directories (every .yaml/.yml/.json file inside, recursively), stdin (`-`) or
    /// the live cluster (--from-cluster). Writes the Herald manifests (herald.dev/v1alpha1,
    /// in --namespace) and the Services with herald.dev/ annotations: a Service that has an
    /// address in status gets herald.dev/loadBalancerIPs set to it, so applying the output
    /// moves no address. MetalLB's annotations are left in place so going back needs no edit.
    ///
    /// Every field is either translated or listed in the report (on stderr, or --report)
    /// with what it meant in MetalLB and what to do with Herald.
    ///
    /// Exit status: 0 translated; 1 invalid input (each error names the file and line);
    /// 2 with --strict when some field could not be translated.
    Migrate(MigrateArgs),
    /// Show, per Service, its addresses, pool, which node announces each address over
    /// layer 2, which peers carry its route from which nodes, its conditions and last
    /// Events; per pool its usage; per BGP peer the session state per node.
    Status(StatusArgs),
    /// Read the live cluster and report problems: overlapping pools, pools containing node
    /// addresses, Services without an address (and why), BGP sessions not Established,
    /// layer-2 address conflicts. Exit status 1 when a problem is found.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// Files or directories to read; `-` reads stdin. Without inputs and without
    /// --from-cluster, reads stdin.
    inputs: Vec<PathBuf>,
    /// Read the MetalLB objects and LoadBalancer Services from the cluster of the kubeconfig.
    #[arg(long)]
    from_cluster: bool,
    /// With --from-cluster: the namespace MetalLB runs in. MetalLB reads its configuration
    /// from there only, so objects in other namespaces are not read either.
    #[arg(long, value_name = "NAMESPACE", default_value = "metallb-system")]
    metallb_namespace: String,
    /// With --from-cluster: read Services from this namespace only (repeatable). Default:
    /// every namespace.
    #[arg(long = "service-namespace", value_name = "NAMESPACE")]
    service_namespaces: Vec<String>,
    /// Write the manifests to this file instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Write the report to this file instead of stderr.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Namespace of the Herald objects (Herald's install namespace).
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Exit with status 2 when some field could not be translated.
    #[arg(long)]
    strict: bool,
    /// Pass over objects that are neither MetalLB objects nor Services (noted in the
    /// report) instead of failing on them.
    #[arg(long)]
    skip_unknown: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// One Service, as NAME (in --service-namespace) or NAMESPACE/NAME. Without it, every
    /// LoadBalancer Service.
    service: Option<String>,
    /// Namespace of SERVICE when it is given without one.
    #[arg(long, default_value = "default")]
    service_namespace: String,
    /// Herald's install namespace (where pools and peers live).
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// How many of each Service's last Events to show.
    #[arg(long, default_value_t = 5)]
    events: usize,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Herald's install namespace (where pools and peers live).
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// The load-balancer class Herald's controller serves.
    #[arg(long, default_value = names::LOAD_BALANCER_CLASS)]
    load_balancer_class: String,
    /// The controller runs with --ignore-classless (class-less Services are not Herald's).
    #[arg(long)]
    ignore_classless: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Migrate(args) => migrate(&cli, args).await,
        Command::Status(args) => show_status(&cli, args).await,
        Command::Check(args) => run_check(&cli, args).await,
    }
}

async fn client(cli: &Cli) -> Result<Client> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

fn read_inputs(inputs: &[PathBuf]) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    let stdin_only = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &stdin_only[..]
    } else {
        inputs
    };
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            documents.extend(source::split_documents("<stdin>", &text)?);
            continue;
        }
        let mut files = Vec::new();
        collect_files(input, &mut files)?;
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            documents.extend(source::split_documents(&file.display().to_string(), &text)?);
        }
    }
    Ok(documents)
}

/// `path` itself if it is a file; the manifest files under it (sorted) if a directory.
fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !metadata.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// The MetalLB objects and LoadBalancer Services of the cluster, as documents.
async fn read_cluster(
    client: &Client,
    metallb_namespace: &str,
    service_namespaces: &[String],
) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for kind in Kind::ALL {
        for version in kind.versions() {
            let gvk = GroupVersionKind::gvk(metallb::GROUP, version, kind.name());
            let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural());
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), metallb_namespace, &resource);
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for item in list.items {
                        let mut value = serde_json::to_value(&item)?;
                        if let Some(object) = value.as_object_mut() {
                            object.insert(
                                "apiVersion".to_owned(),
                                format!("{}/{version}", metallb::GROUP).into(),
                            );
                            object.insert("kind".to_owned(), kind.name().into());
                        }
                        documents.push(Document::from_cluster(value));
                    }
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!(
                            "listing {}/{version} {} in {metallb_namespace}",
                            metallb::GROUP,
                            kind.name()
                        )
                    });
                }
            }
        }
    }
    let mut services = Vec::new();
    if service_namespaces.is_empty() {
        services.extend(
            Api::<Service>::all(client.clone())
                .list(&ListParams::default())
                .await
                .context("listing Services")?
                .items,
        );
    }
    for namespace in service_namespaces {
        services.extend(
            Api::<Service>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing Services in {namespace}"))?
                .items,
        );
    }
    for service in services {
        let mut value = serde_json::to_value(&service)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("apiVersion".to_owned(), "v1".into());
            object.insert("kind".to_owned(), "Service".into());
        }
        documents.push(Document::from_cluster(value));
    }
    Ok(documents)
}

async fn migrate(cli: &Cli, args: &MigrateArgs) -> Result<ExitCode> {
    let mut documents = Vec::new();
    if args.from_cluster {
        documents.extend(
            read_cluster(
                &client(cli).await?,
                &args.metallb_namespace,
                &args.service_namespaces,
            )
            .await?,
        );
    }
    if !args.inputs.is_empty() || !args.from_cluster {
        match read_inputs(&args.inputs) {
            Ok(read) => documents.extend(read),
            Err(error) => {
                eprintln!("herald migrate: {error:#}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let options = Options {
        namespace: args.namespace.clone(),
        skip_unknown: args.skip_unknown,
    };
    let migration = match translate::translate(&documents, &options) {
        Ok(migration) => migration,
        Err(errors) => {
            for error in &errors {
                eprintln!("herald migrate: {error}");
            }
            eprintln!(
                "herald migrate: {} error(s); nothing was written",
                errors.len()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let yaml = migration.to_yaml()?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(yaml.as_bytes())?,
    }
    let mut report = String::new();
    for finding in &migration.findings {
        report.push_str(&finding.to_string());
        report.push('\n');
    }
    let untranslated = migration
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Untranslated)
        .count();
    let actions = migration
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Action)
        .count();
    report.push_str(&format!(
        "herald migrate: {} object(s) written; {untranslated} field(s) not translated, {actions} action(s) for you\n",
        migration.objects.len()
    ));
    match &args.report {
        Some(path) => {
            std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?
        }
        None => eprint!("{report}"),
    }
    if args.strict && migration.has_untranslated() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn print(
    format: Format,
    value: &impl serde::Serialize,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let out = match format {
        Format::Text => text(),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value)?,
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

async fn show_status(cli: &Cli, args: &StatusArgs) -> Result<ExitCode> {
    let client = client(cli).await?;
    let only = args.service.as_deref().map(|s| match s.split_once('/') {
        Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
        None => (args.service_namespace.clone(), s.to_owned()),
    });
    let services: Vec<Service> = match &only {
        Some((namespace, name)) => {
            let api: Api<Service> = Api::namespaced(client.clone(), namespace);
            match api.get_opt(name).await? {
                Some(service) => vec![service],
                None => bail!("Service {namespace}/{name} not found"),
            }
        }
        None => {
            Api::<Service>::all(client.clone())
                .list(&ListParams::default())
                .await
                .context("listing Services")?
                .items
        }
    };
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .context("listing IPAddressPools (is Herald installed?)")?
        .items;
    let peers = Api::<BGPPeer>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .context("listing BGPPeers")?
        .items;
    let events = match &only {
        Some((namespace, name)) => {
            Api::<Event>::namespaced(client.clone(), namespace)
                .list(&ListParams::default().fields(&format!(
                    "involvedObject.kind=Service,involvedObject.name={name}"
                )))
                .await
                .context("listing Events")?
                .items
        }
        None => {
            Api::<Event>::all(client.clone())
                .list(&ListParams::default().fields("involvedObject.kind=Service"))
                .await
                .context("listing Events")?
                .items
        }
    };
    let view = status::build(
        &services,
        &pools,
        &peers,
        &events,
        only.as_ref().map(|(n, s)| (n.as_str(), s.as_str())),
        args.events,
    );
    print(args.output, &view, || status::render_text(&view))?;
    Ok(ExitCode::SUCCESS)
}

async fn run_check(cli: &Cli, args: &CheckArgs) -> Result<ExitCode> {
    let client = client(cli).await?;
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .context("listing IPAddressPools (is Herald installed?)")?
        .items;
    let peers = Api::<BGPPeer>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .context("listing BGPPeers")?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?
        .items;
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Services")?
        .items;
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("involvedObject.kind=Service,type=Warning"))
        .await
        .context("listing Events")?
        .items;
    let problems = check::run(&check::Cluster {
        pools: &pools,
        nodes: &nodes,
        services: &services,
        peers: &peers,
        events: &events,
        class: &args.load_balancer_class,
        serve_classless: !args.ignore_classless,
    });
    print(args.output, &problems, || {
        if problems.is_empty() {
            "No problems found.\n".to_owned()
        } else {
            problems.iter().map(|p| format!("{p}\n")).collect()
        }
    })?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

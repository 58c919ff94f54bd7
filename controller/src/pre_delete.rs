//! `herald-controller pre-delete`: what the chart's pre-delete hook Job runs before
//! `helm uninstall` removes the release, so that the uninstall leaves no stuck finalizer.
//!
//! The ordering problem: the controller puts `herald.dev/pool-in-use` on every pool that
//! has addresses in use and removes it once the pool is free. `helm uninstall` deletes the
//! controller; a pool deleted afterwards (by the user, or with its namespace) then waits
//! for a finalizer nobody removes. Stripping the finalizer while the controller runs does
//! not help either: the change wakes the controller, which puts it back.
//!
//! So the hook, in order: scales the controller Deployment to zero and waits until its
//! pods are gone (a clean shutdown releases the Lease), removes Herald's finalizer from
//! every IPAddressPool of the install namespace, and deletes the leader Lease (made at run
//! time, unknown to helm). Pools, advertisements and peers themselves stay: they are the
//! user's configuration, and a reinstall picks them up.
//!
//! Pure: [`without_our_finalizer`] and [`pods_left`]. I/O: [`run`] (Kubernetes API only,
//! every wait bounded by `--timeout`).

use std::time::{Duration, Instant};

use clap::Parser;
use herald_crds::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;

/// Longest one API request of the hook may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Removes what would outlive `helm uninstall`: stops the controller, removes Herald's
/// finalizer from the install namespace's IPAddressPools, deletes the leader Lease.
#[derive(Debug, Parser)]
#[command(name = "herald-controller pre-delete")]
pub struct PreDeleteArgs {
    /// The install namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    pub namespace: String,

    /// The controller Deployment to scale to zero first.
    #[arg(long)]
    pub deployment: String,

    /// Label selector of the controller's pods (waited for until none is left).
    #[arg(long)]
    pub selector: String,

    /// The leader-election Lease to delete.
    #[arg(long, default_value = "herald-controller")]
    pub lease_name: String,

    /// Give up waiting for the controller's pods after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// What can go wrong; every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum PreDeleteError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the controller's pods ({selector}) still run after {seconds}s: {pods:?}")]
    PodsLeft {
        selector: String,
        seconds: u64,
        pods: Vec<String>,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PreDeleteError {
    let what = what.into();
    move |source| PreDeleteError::Api { what, source }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The finalizer list without Herald's pool finalizer, or `None` if it has none (no
/// patch needed).
pub fn without_our_finalizer(finalizers: &[String]) -> Option<Vec<String>> {
    if !finalizers.iter().any(|f| f == names::FINALIZER_POOL_IN_USE) {
        return None;
    }
    Some(
        finalizers
            .iter()
            .filter(|f| *f != names::FINALIZER_POOL_IN_USE)
            .cloned()
            .collect(),
    )
}

/// Names of the pods that still exist (terminating ones included: they may still write).
pub fn pods_left(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// What [`run`] did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub pools_released: Vec<String>,
    pub lease_deleted: bool,
}

/// Runs the hook's steps in order (see the module doc).
pub async fn run(client: Client, args: &PreDeleteArgs) -> Result<Summary, PreDeleteError> {
    let ns = args.namespace.as_str();
    // 1. Stop the controller: nothing may put the finalizer back.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let scale = json!({"spec": {"replicas": 0}});
    match deployments
        .patch_scale(
            &args.deployment,
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
    {
        Ok(_) => {}
        // Already gone (a second run, or controller.enabled=false): nothing runs.
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(api_err(format!(
                "scaling deployment {ns}/{}",
                args.deployment
            ))(e));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&args.selector))
            .await
            .map_err(api_err(format!("listing pods {} in {ns}", args.selector)))?;
        let left = pods_left(&list.items);
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(PreDeleteError::PodsLeft {
                selector: args.selector.clone(),
                seconds: args.timeout,
                pods: left,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 2. Release the pools.
    let gvk = GroupVersionKind::gvk(names::GROUP, names::VERSION, "IPAddressPool");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "ipaddresspools");
    let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let list = pools
        .list(&ListParams::default())
        .await
        .map_err(api_err(format!("listing IPAddressPools in {ns}")))?;
    let mut summary = Summary::default();
    for pool in list.items {
        let Some(name) = pool.metadata.name.clone() else {
            continue;
        };
        let finalizers = pool.metadata.finalizers.clone().unwrap_or_default();
        let Some(kept) = without_our_finalizer(&finalizers) else {
            continue;
        };
        // resourceVersion makes the patch fail rather than drop a finalizer someone
        // added meanwhile.
        let patch = json!({"metadata": {
            "finalizers": kept,
            "resourceVersion": pool.metadata.resource_version,
        }});
        match pools
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => summary.pools_released.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_err(format!("releasing IPAddressPool {ns}/{name}"))(e)),
        }
    }

    // 3. The Lease.
    let leases: Api<Lease> = Api::namespaced(client, ns);
    match leases
        .delete(&args.lease_name, &DeleteParams::default())
        .await
    {
        Ok(_) => summary.lease_deleted = true,
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(api_err(format!("deleting Lease {ns}/{}", args.lease_name))(
                e,
            ));
        }
    }
    Ok(summary)
}

/// The subcommand's entry: `None` unless the first argument is `pre-delete`; then parses
/// the rest, connects (in-cluster, or `$KUBECONFIG`), runs, and prints what it did.
pub async fn dispatch() -> Option<anyhow::Result<()>> {
    let mut argv = std::env::args_os().skip(1).peekable();
    if argv.peek().and_then(|a| a.to_str()) != Some("pre-delete") {
        return None;
    }
    Some(async {
        let args = PreDeleteArgs::parse_from(argv);
        // Every request bounded: a hook stuck on one call would hold `helm uninstall` until
        // its own timeout; a failed attempt ends the pod and the Job retries.
        let mut config = kube::Config::infer()
            .await
            .map_err(|e| anyhow::anyhow!("reading the in-cluster configuration: {e}"))?;
        config.connect_timeout = Some(REQUEST_TIMEOUT);
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let client = Client::try_from(config)
            .map_err(|e| anyhow::anyhow!("building the Kubernetes client: {e}"))?;
        let summary = run(client, &args).await?;
        println!(
            "herald-controller pre-delete: controller {}/{} stopped; finalizer removed from pools {:?}; lease {} {}",
            args.namespace,
            args.deployment,
            summary.pools_released,
            args.lease_name,
            if summary.lease_deleted { "deleted" } else { "absent" }
        );
        Ok(())
    }
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_without_our_finalizer_needs_no_patch() {
        assert_eq!(without_our_finalizer(&[]), None);
        assert_eq!(
            without_our_finalizer(&["example.com/keep".to_string()]),
            None
        );
    }

    #[test]
    fn only_our_finalizer_is_removed() {
        let finalizers = vec![
            "example.com/keep".to_string(),
            names::FINALIZER_POOL_IN_USE.to_string(),
        ];
        assert_eq!(
            without_our_finalizer(&finalizers),
            Some(vec!["example.com/keep".to_string()])
        );
        assert_eq!(
            without_our_finalizer(&[names::FINALIZER_POOL_IN_USE.to_string()]),
            Some(Vec::new())
        );
    }

    #[test]
    fn terminating_pods_still_count_as_left() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("herald-controller-1".into());
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(pods_left(&[pod]), vec!["herald-controller-1".to_string()]);
        assert!(pods_left(&[]).is_empty());
    }

    #[test]
    fn the_arguments_parse() {
        let args = PreDeleteArgs::try_parse_from([
            "pre-delete",
            "--namespace",
            "herald-system",
            "--deployment",
            "herald-controller",
            "--selector",
            "app.kubernetes.io/component=controller",
        ])
        .unwrap();
        assert_eq!(args.lease_name, "herald-controller");
        assert_eq!(args.timeout, 60);
    }
}

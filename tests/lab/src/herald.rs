//! Herald as the lab meets it: where its binaries are, its CRDs and objects, the memberlist
//! Secret, the ingress addresses the controller writes, the speakers' metrics and the
//! annotations the speakers write on Services.
//!
//! Used by the lab tests (`tests/common`, the benchmarks) and by `herald-lab demo`. The
//! manifest builders and parsers ([`object`], [`ingress_ips`], [`metric`], [`metric_sum`],
//! [`record_key`], [`record_node`]) are pure; I/O stops at kubectl ([`install_crds`],
//! [`wait_ingress`], [`release_pools`]), one `curl` in a namespace ([`speaker_metrics`]) and
//! a file check ([`speaker_binary`], [`controller_binary`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{LabError, Result};
use crate::kube::Kubectl;
use crate::netns::Netns;
use crate::paths;
use crate::wait::Poll;

/// API version of every Herald object.
pub const API_VERSION: &str = "herald.dev/v1alpha1";
/// Herald's CRDs, as `kubectl wait` names them.
pub const CRDS: [&str; 6] = [
    "crd/ipaddresspools.herald.dev",
    "crd/l2advertisements.herald.dev",
    "crd/bgpadvertisements.herald.dev",
    "crd/bgppeers.herald.dev",
    "crd/communities.herald.dev",
    "crd/bfdprofiles.herald.dev",
];
/// Name of the memberlist Secret the lab creates (key `secretkey`).
pub const MEMBERLIST_SECRET: &str = "herald-memberlist";
/// Prefix of the speakers' current-announcer record annotations (layer 2).
pub const RECORD_PREFIX: &str = "l2-announcer.herald.dev/";
/// Prefix of the speakers' per-node carrier annotations (BGP): `bgp-peers.herald.dev/<node>`.
pub const CARRIER_PREFIX: &str = "bgp-peers.herald.dev/";
/// Where a speaker serves its metrics, inside its node's namespace.
pub const SPEAKER_METRICS_URL: &str = "http://127.0.0.1:7473/metrics";

/// `$HERALD_SPEAKER`, else `target/debug/herald-speaker`; an error saying how to build it
/// when the file is missing.
pub fn speaker_binary() -> Result<PathBuf> {
    binary("herald-speaker", "HERALD_SPEAKER")
}

/// `$HERALD_CONTROLLER`, else `target/debug/herald-controller`; an error saying how to
/// build it when the file is missing.
pub fn controller_binary() -> Result<PathBuf> {
    binary("herald-controller", "HERALD_CONTROLLER")
}

fn binary(name: &str, env_override: &str) -> Result<PathBuf> {
    let path = std::env::var_os(env_override)
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::target_dir().join("debug").join(name));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::MissingTool {
            tool: name.into(),
            hint: format!(
                "{} is missing: run `cargo build -p {name}` (tests/run.sh builds the workspace)",
                path.display()
            ),
        })
    }
}

/// Applies the chart's CRDs (`charts/herald/crds`) and waits until every one is served.
///
/// Tests of one binary run in parallel against one control plane: two first applies racing
/// each other make one of them fail with `AlreadyExists` (apply is read, then create). The
/// applies of this process are serialised, and one lost race with another process is retried.
pub fn install_crds(kubectl: &Kubectl) -> Result<()> {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serialised = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let crd_dir = paths::repo_root().join("charts/herald/crds");
    let crd_dir = crd_dir.to_string_lossy();
    if let Err(error) = kubectl.run(&["apply", "-f", &crd_dir]) {
        if !error.to_string().contains("AlreadyExists") {
            return Err(error);
        }
        kubectl.run(&["apply", "-f", &crd_dir])?;
    }
    let mut args = vec!["wait", "--for=condition=Established"];
    args.extend(CRDS);
    args.push("--timeout=60s");
    kubectl.run(&args)?;
    Ok(())
}

/// A Herald object (`IPAddressPool`, `BGPPeer`, ...) named `name` in `namespace`.
pub fn object(kind: &str, name: &str, namespace: &str, spec: Value) -> Value {
    crate::kube::namespaced_object(API_VERSION, kind, name, namespace, spec)
}

/// Strips the finalizers off every IPAddressPool in `namespace`, best effort: a controller
/// marks the pools in use with one, and once it is stopped nobody removes it, so the
/// namespace would hang in Terminating.
pub fn release_pools(kubectl: &Kubectl, namespace: &str) {
    let Ok(pools) = kubectl.list("ipaddresspools.herald.dev", Some(namespace), None) else {
        return;
    };
    for pool in pools {
        if let Some(name) = pool["metadata"]["name"].as_str() {
            let _ = kubectl.patch(
                "ipaddresspool",
                name,
                Some(namespace),
                &json!({"metadata": {"finalizers": null}}),
            );
        }
    }
}

/// The addresses in a Service's `status.loadBalancer.ingress`, in order (entries without
/// a parseable `ip` left out).
pub fn ingress_ips(service: &Value) -> Vec<IpAddr> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|entry| entry["ip"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (at most `timeout`) until Service `namespace/name` has at least `count` ingress
/// addresses, as the controller writes them; returns them.
pub fn wait_ingress(
    kubectl: &Kubectl,
    namespace: &str,
    name: &str,
    count: usize,
    what: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>> {
    kubectl.wait_for(what, timeout, |k| {
        let ips = k
            .get("service", name, Some(namespace))?
            .map(|service| ingress_ips(&service))
            .unwrap_or_default();
        Ok(if ips.len() >= count {
            Poll::Ready(ips)
        } else {
            Poll::Pending(format!("ingress {ips:?}"))
        })
    })
}

/// The speaker's metrics text, fetched inside `netns` (where the speaker runs).
pub fn speaker_metrics(netns: &Netns) -> Result<String> {
    netns.exec(&["curl", "-sS", "--max-time", "5", SPEAKER_METRICS_URL])
}

/// The value of the series `name` (exact series text, labels included, e.g.
/// `herald_speaker_bgp_session_up{peer="router"}`) in Prometheus text `text`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    samples(text).find_map(|(key, value)| (key == name).then_some(value))
}

/// The sum of every series of metric family `family` in `text` (0 when there is none).
pub fn metric_sum(text: &str, family: &str) -> f64 {
    samples(text)
        .filter(|(key, _)| key.split('{').next() == Some(family))
        .map(|(_, value)| value)
        .sum()
}

/// `(series, value)` of every sample line (comments and unparseable values left out).
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key, value.parse::<f64>().ok()?))
        })
}

/// The record annotation key for `address`: IPv4 as a dotted quad, IPv6 as eight 4-digit
/// groups joined by `-`.
///
/// Written down here independently of the speaker's own encoding, on purpose: the tests
/// read the speaker's records with it, so a change of the speaker's format fails them.
pub fn record_key(address: IpAddr) -> String {
    let label = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|segment| format!("{segment:04x}"))
            .collect::<Vec<_>>()
            .join("-"),
    };
    format!("{RECORD_PREFIX}{label}")
}

/// The node a record's value (`<node>/<interface>[,<interface>...]`) names; `None` when
/// empty.
pub fn record_node(value: &str) -> Option<String> {
    let node = value.split('/').next().unwrap_or_default().trim();
    (!node.is_empty()).then(|| node.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP herald_speaker_l2_owned_addresses Addresses this node announces.
# TYPE herald_speaker_l2_owned_addresses gauge
herald_speaker_l2_owned_addresses 2
herald_speaker_bgp_session_up{peer=\"router\"} 1
herald_speaker_l2_requests_answered_total{family=\"ipv4\"} 3
herald_speaker_l2_requests_answered_total{family=\"ipv6\"} 4.5
herald_speaker_l2_requests_answered_total_other 100
";

    #[test]
    fn a_series_is_found_by_its_exact_text() {
        assert_eq!(
            metric(METRICS, "herald_speaker_l2_owned_addresses"),
            Some(2.0)
        );
        assert_eq!(
            metric(METRICS, "herald_speaker_bgp_session_up{peer=\"router\"}"),
            Some(1.0)
        );
        assert_eq!(metric(METRICS, "herald_speaker_bgp_session_up"), None);
        assert_eq!(metric("", "anything"), None);
    }

    #[test]
    fn a_family_sums_its_series_and_nothing_else() {
        assert_eq!(
            metric_sum(METRICS, "herald_speaker_l2_requests_answered_total"),
            7.5
        );
        assert_eq!(metric_sum(METRICS, "absent"), 0.0);
    }

    #[test]
    fn record_keys_follow_the_speakers_encoding() -> Result<()> {
        let v4: IpAddr = "192.0.2.130"
            .parse()
            .map_err(|e| LabError::parse("v4", e))?;
        let v6: IpAddr = "2001:db8:1::100"
            .parse()
            .map_err(|e| LabError::parse("v6", e))?;
        assert_eq!(record_key(v4), "l2-announcer.herald.dev/192.0.2.130");
        assert_eq!(
            record_key(v6),
            "l2-announcer.herald.dev/2001-0db8-0001-0000-0000-0000-0000-0100"
        );
        assert_eq!(record_node("hl1abc-n2/eth0").as_deref(), Some("hl1abc-n2"));
        assert_eq!(record_node(" / "), None);
        Ok(())
    }

    #[test]
    fn ingress_addresses_are_read_in_order() {
        let service = json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "203.0.113.10", "ipMode": "VIP"},
            {"hostname": "no-ip.example"},
            {"ip": "2001:db8:100::10"},
        ]}}});
        let ips: Vec<String> = ingress_ips(&service)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["203.0.113.10", "2001:db8:100::10"]);
        assert!(ingress_ips(&json!({})).is_empty());
    }

    #[test]
    fn objects_carry_the_herald_api_version() {
        let pool = object(
            "IPAddressPool",
            "bgp",
            "sys",
            json!({"addresses": ["203.0.113.0/24"]}),
        );
        assert_eq!(pool["apiVersion"], "herald.dev/v1alpha1");
        assert_eq!(pool["kind"], "IPAddressPool");
        assert_eq!(pool["metadata"]["namespace"], "sys");
        assert_eq!(pool["spec"]["addresses"][0], "203.0.113.0/24");
    }
}

//! herald-controller end to end, against the lab's real kube-apiserver (v1.36): the real
//! binary (`target/debug/herald-controller`) runs as a child process with the lab kubeconfig,
//! pools are applied with kubectl, and Services are checked by what the apiserver stores —
//! status, conditions, annotations, Events. Must run as root (the control plane listens on
//! the lab bridge).
//!
//! Each test has its own install namespace (pools, Lease), apps namespace and
//! `loadBalancerClass`, so tests never see each other's Services; all of it is deleted when
//! the test ends, even on failure (guards).

mod controller_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use controller_support::{
    ControllerProcess, Lab, POLL, condition_of, events_about, ingress_of, serial,
};
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{LabError, Result};
use serde_json::json;

const ASSIGNED: &str = "herald.dev/AddressAssigned";
const EXTERNAL_IPS: &str = "herald.dev/ExternalIPsAllowed";
const POOL_ANNOTATION: &str = "herald.dev/ip-allocated-from-pool";
const EXTERNAL_IPS_BOOKED: &str = "herald.dev/external-ips-booked";
const LEAD_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn an_ipv4_service_gets_the_first_address_with_vip_mode_annotation_condition_and_event()
-> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-v4")?;
    lab.pool("web", &["192.0.2.128/30"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    lab.apply_service(&lab.service("web", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("web", 1)?, vec!["192.0.2.128"]);
    let service = lab.get_service("web")?;
    assert_eq!(
        service["status"]["loadBalancer"]["ingress"][0]["ipMode"],
        "VIP"
    );
    assert_eq!(service["metadata"]["annotations"][POOL_ANNOTATION], "web");
    let (reason, message) = lab.wait_condition("web", ASSIGNED, "True")?;
    assert_eq!(reason, "Assigned");
    assert!(message.contains("192.0.2.128"), "{message}");
    let event = lab.wait_event(lab.apps.name(), "web", "AddressAssigned")?;
    assert!(event.contains("192.0.2.128"), "{event}");

    // Pool status follows: one assigned, three available, and the in-use finalizer.
    let pool = poll_until(
        "pool status to count the address",
        LEAD_TIMEOUT,
        POLL,
        || {
            let pool = lab
                .install
                .get("ipaddresspool", "web")?
                .ok_or_else(|| LabError::Invalid("pool web missing".into()))?;
            Ok(if pool["status"]["assignedIPv4"] == 1 {
                Poll::Ready(pool)
            } else {
                Poll::Pending(format!("{}", pool["status"]))
            })
        },
    )?;
    assert_eq!(pool["status"]["availableIPv4"], 3);
    assert_eq!(
        pool["metadata"]["finalizers"],
        json!(["herald.dev/pool-in-use"])
    );
    assert_eq!(
        condition_of(&pool, "Ready").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    assert!(controller.metric("herald_controller_allocations_total")? >= 1.0);

    // Deleting the Service frees the address for the next one.
    lab.delete_service("web")?;
    lab.apply_service(&lab.service("next", 81), |_| {})?;
    assert_eq!(lab.wait_ingress("next", 1)?, vec!["192.0.2.128"]);
    Ok(())
}

#[test]
fn ipv6_and_dual_stack_services_get_one_address_per_family() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-dual")?;
    lab.pool(
        "dual",
        &["192.0.2.128/29", "2001:db8:1::100/120"],
        json!({}),
    )?;
    lab.pool("v4only", &["192.0.2.160/29"], json!({"autoAssign": false}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    let mut v6 = lab.service("v6", 80);
    v6.ip_families = vec!["IPv6".into()];
    lab.apply_service(&v6, |_| {})?;
    let mut require = lab.service("require", 80);
    require.ip_family_policy = Some("RequireDualStack".into());
    require.ip_families = vec!["IPv4".into(), "IPv6".into()];
    lab.apply_service(&require, |_| {})?;
    let mut prefer_v6_first = lab.service("prefer", 80);
    prefer_v6_first.ip_family_policy = Some("PreferDualStack".into());
    prefer_v6_first.ip_families = vec!["IPv6".into(), "IPv4".into()];
    lab.apply_service(&prefer_v6_first, |_| {})?;
    // PreferDualStack pinned to a pool without IPv6: one address, no failure.
    let mut prefer_v4_pool = lab
        .service("prefer-v4", 80)
        .annotation("herald.dev/address-pool", "v4only");
    prefer_v4_pool.ip_family_policy = Some("PreferDualStack".into());
    lab.apply_service(&prefer_v4_pool, |_| {})?;

    assert_eq!(lab.wait_ingress("v6", 1)?, vec!["2001:db8:1::100"]);
    let require_ips = lab.wait_ingress("require", 2)?;
    assert_eq!(require_ips, vec!["192.0.2.128", "2001:db8:1::101"]);
    // Primary family first, as the Service lists them.
    let prefer_ips = lab.wait_ingress("prefer", 2)?;
    assert_eq!(prefer_ips, vec!["2001:db8:1::102", "192.0.2.129"]);
    assert_eq!(lab.wait_ingress("prefer-v4", 1)?, vec!["192.0.2.160"]);
    assert_eq!(
        lab.get_service("require")?["metadata"]["annotations"][POOL_ANNOTATION],
        "dual"
    );
    Ok(())
}

#[test]
fn requested_addresses_and_pinned_pools_are_honoured_and_bad_requests_get_events() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-req")?;
    lab.pool(
        "first",
        &["192.0.2.128/29"],
        json!({"serviceAllocation": {"priority": 1}}),
    )?;
    lab.pool("manual", &["192.0.2.144/29"], json!({"autoAssign": false}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    lab.apply_service(&lab.service("by-field", 80), |m| {
        m["spec"]["loadBalancerIP"] = json!("192.0.2.133");
    })?;
    lab.apply_service(
        &lab.service("by-annotation", 80)
            .annotation("herald.dev/loadBalancerIPs", "192.0.2.150"),
        |_| {},
    )?;
    lab.apply_service(
        &lab.service("pinned", 80)
            .annotation("herald.dev/address-pool", "manual"),
        |_| {},
    )?;
    lab.apply_service(&lab.service("auto", 80), |_| {})?;
    lab.apply_service(
        &lab.service("outside", 80)
            .annotation("herald.dev/loadBalancerIPs", "198.51.100.77"),
        |_| {},
    )?;
    lab.apply_service(
        &lab.service("garbage", 80)
            .annotation("herald.dev/loadBalancerIPs", "not-an-address"),
        |_| {},
    )?;
    lab.apply_service(
        &lab.service("unknown-pool", 80)
            .annotation("herald.dev/address-pool", "nope"),
        |_| {},
    )?;

    assert_eq!(lab.wait_ingress("by-field", 1)?, vec!["192.0.2.133"]);
    // autoAssign: false pools serve explicit requests.
    assert_eq!(lab.wait_ingress("by-annotation", 1)?, vec!["192.0.2.150"]);
    assert_eq!(
        lab.get_service("by-annotation")?["metadata"]["annotations"][POOL_ANNOTATION],
        "manual"
    );
    let pinned = lab.wait_ingress("pinned", 1)?;
    assert_eq!(pinned, vec!["192.0.2.144"]);
    // Auto-assignment skips the autoAssign: false pool and the requested addresses.
    assert_eq!(lab.wait_ingress("auto", 1)?, vec!["192.0.2.128"]);

    let (reason, _) = lab.wait_condition("outside", ASSIGNED, "False")?;
    assert_eq!(reason, "NotInAnyPool");
    lab.wait_event(lab.apps.name(), "outside", "AllocationFailed")?;
    let (reason, message) = lab.wait_condition("garbage", ASSIGNED, "False")?;
    assert_eq!(reason, "InvalidService");
    assert!(message.contains("not-an-address"), "{message}");
    lab.wait_event(lab.apps.name(), "garbage", "InvalidService")?;
    let (reason, _) = lab.wait_condition("unknown-pool", ASSIGNED, "False")?;
    assert_eq!(reason, "UnknownPool");
    for name in ["outside", "garbage", "unknown-pool"] {
        assert!(lab.ingress(name)?.is_empty(), "{name} got an address");
    }
    // Bad input did not crash the controller.
    let mut controller = controller;
    assert!(controller.running());
    assert!(controller.metric("herald_controller_allocation_failures_total")? >= 3.0);
    Ok(())
}

#[test]
fn services_with_one_sharing_key_share_and_a_port_clash_is_refused_with_an_event() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-share")?;
    lab.pool("web", &["192.0.2.128/30"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    let key = "herald.dev/allow-shared-ip";
    let http = lab.service("http", 80).annotation(key, "front");
    lab.apply_service(&http, |_| {})?;
    let address = lab.wait_ingress("http", 1)?;
    let https = lab
        .service("https", 443)
        .annotation(key, "front")
        .annotation("herald.dev/loadBalancerIPs", &address[0]);
    lab.apply_service(&https, |_| {})?;
    assert_eq!(lab.wait_ingress("https", 1)?, address);
    let clash = lab
        .service("clash", 80)
        .annotation(key, "front")
        .annotation("herald.dev/loadBalancerIPs", &address[0]);
    lab.apply_service(&clash, |_| {})?;
    let (reason, _) = lab.wait_condition("clash", ASSIGNED, "False")?;
    assert_eq!(reason, "SharingConflict");
    let event = lab.wait_event(lab.apps.name(), "clash", "AllocationFailed")?;
    assert!(event.contains("80/TCP"), "{event}");
    assert!(lab.ingress("clash")?.is_empty());
    drop(controller);
    Ok(())
}

#[test]
fn an_exhausted_pool_gives_an_event_and_no_address_until_one_is_released() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-full")?;
    lab.pool("tiny", &["192.0.2.140/32"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    lab.apply_service(&lab.service("one", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("one", 1)?, vec!["192.0.2.140"]);
    lab.apply_service(&lab.service("two", 80), |_| {})?;
    let (reason, message) = lab.wait_condition("two", ASSIGNED, "False")?;
    assert_eq!(reason, "PoolExhausted");
    assert!(message.contains("tiny"), "{message}");
    let event = lab.wait_event(lab.apps.name(), "two", "AllocationFailed")?;
    assert!(event.contains("no free IPv4 address"), "{event}");
    // Retries are rate-limited: a few seconds of back-off retries give one Event.
    std::thread::sleep(Duration::from_secs(4));
    let failures = events_about(&lab.kubectl, lab.apps.name(), "two")?
        .into_iter()
        .filter(|(r, _)| r == "AllocationFailed")
        .count();
    assert_eq!(failures, 1);
    // The waiting Service gets the address as soon as it is released.
    lab.delete_service("one")?;
    assert_eq!(lab.wait_ingress("two", 1)?, vec!["192.0.2.140"]);
    drop(controller);
    Ok(())
}

#[test]
fn herald_serves_its_class_and_classless_services_and_ignores_other_classes() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-class")?;
    lab.pool("web", &["192.0.2.128/29"], json!({}))?;
    // The default class and class-less Services: the one test whose controller serves them
    // (no other test, nor any other test binary, creates class-less LoadBalancer Services).
    let controller = start_serving_classless(&lab)?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    let mut herald = lab.service("herald", 80);
    herald.load_balancer_class = Some("herald.dev/lb".into());
    lab.apply_service(&herald, |_| {})?;
    let mut classless = lab.service("classless", 80);
    classless.load_balancer_class = None;
    lab.apply_service(&classless, |_| {})?;
    let mut other = lab.service("other", 80);
    other.load_balancer_class = Some("example.com/other-lb".into());
    lab.apply_service(&other, |_| {})?;

    lab.wait_ingress("herald", 1)?;
    lab.wait_ingress("classless", 1)?;
    // Give the controller time to (wrongly) act on the other class.
    std::thread::sleep(Duration::from_secs(3));
    let other = lab.get_service("other")?;
    assert!(ingress_of(&other).is_empty());
    assert!(condition_of(&other, ASSIGNED).is_none());
    assert!(other["metadata"]["annotations"][POOL_ANNOTATION].is_null());

    // A class-less Service turned into a ClusterIP Service gives its address back and loses
    // what Herald wrote.
    lab.apply_service(&classless, |m| {
        m["spec"]["type"] = json!("ClusterIP");
    })?;
    poll_until(
        "the released Service to be cleared",
        LEAD_TIMEOUT,
        POLL,
        || {
            let service = lab.get_service("classless")?;
            let cleared = ingress_of(&service).is_empty()
                && condition_of(&service, ASSIGNED).is_none()
                && service["metadata"]["annotations"][POOL_ANNOTATION].is_null();
            Ok(if cleared {
                Poll::Ready(())
            } else {
                Poll::Pending(service["status"].to_string())
            })
        },
    )?;
    Ok(())
}

/// A controller serving `herald.dev/lb` and class-less Services (no `--ignore-classless`).
fn start_serving_classless(lab: &Lab) -> Result<ControllerProcess> {
    ControllerProcess::start_with_class(lab, "c1", "herald.dev/lb", false)
}

#[test]
fn external_ips_inside_an_allowing_pool_are_accepted_and_others_get_an_event() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-ext")?;
    lab.pool("web", &["192.0.2.128/30"], json!({}))?;
    lab.pool(
        "external",
        &["203.0.113.0/28"],
        json!({"allowExternalIPs": true, "autoAssign": false}),
    )?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    let mut inside = lab.service("inside", 80);
    inside.external_ips = vec!["203.0.113.5".into()];
    lab.apply_service(&inside, |_| {})?;
    let mut outside = lab.service("outside", 80);
    outside.external_ips = vec!["192.0.2.131".into()];
    lab.apply_service(&outside, |_| {})?;

    let (reason, message) = lab.wait_condition("inside", EXTERNAL_IPS, "True")?;
    assert_eq!(reason, "Allowed");
    assert!(message.contains("203.0.113.5"), "{message}");
    let (reason, message) = lab.wait_condition("outside", EXTERNAL_IPS, "False")?;
    assert_eq!(reason, "NotAllowed");
    assert!(message.contains("will not be announced"), "{message}");
    let event = lab.wait_event(lab.apps.name(), "outside", "ExternalIPNotAllowed")?;
    assert!(event.contains("192.0.2.131"), "{event}");
    // Both still get their load-balancer address: externalIPs are judged on their own.
    lab.wait_ingress("inside", 1)?;
    lab.wait_ingress("outside", 1)?;
    drop(controller);
    Ok(())
}

#[test]
fn an_accepted_external_ip_is_booked_so_no_load_balancer_gets_it_until_its_service_goes()
-> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-extbook")?;
    // One pool that load balancers auto-assign from and whose addresses may be externalIPs.
    lab.pool(
        "shared",
        &["192.0.2.128/30"],
        json!({"allowExternalIPs": true}),
    )?;
    lab.pool("own", &["192.0.2.136/30"], json!({"autoAssign": false}))?;
    let mut controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    // A lists the lowest address of "shared" as an externalIP (its own address is from "own").
    let mut a = lab
        .service("a", 80)
        .annotation("herald.dev/address-pool", "own");
    a.external_ips = vec!["192.0.2.128".into()];
    lab.apply_service(&a, |_| {})?;
    let (reason, message) = lab.wait_condition("a", EXTERNAL_IPS, "True")?;
    assert_eq!(reason, "Allowed");
    assert!(message.contains("192.0.2.128 (pool shared)"), "{message}");
    assert_eq!(lab.wait_ingress("a", 1)?, vec!["192.0.2.136"]);
    wait_annotation(&lab, "a", EXTERNAL_IPS_BOOKED, Some("192.0.2.128"))?;

    // B auto-assigns from the same pool: the lowest free address is no longer A's.
    lab.apply_service(&lab.service("b", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("b", 1)?, vec!["192.0.2.129"]);
    // C asks for it outright: refused, in use by A.
    lab.apply_service(
        &lab.service("c", 80)
            .annotation("herald.dev/loadBalancerIPs", "192.0.2.128"),
        |_| {},
    )?;
    let (reason, message) = lab.wait_condition("c", ASSIGNED, "False")?;
    assert_eq!(reason, "AddressInUse");
    assert!(
        message.contains(&format!("in use by {}/a", lab.apps.name())),
        "{message}"
    );

    // The booking survives a restart: D, created while no controller runs, is reconciled
    // together with A after the restart and still does not get A's externalIP.
    controller.kill();
    lab.apply_service(&lab.service("d", 80), |_| {})?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;
    assert_eq!(lab.wait_ingress("d", 1)?, vec!["192.0.2.130"]);
    assert_eq!(lab.ingress("b")?, vec!["192.0.2.129"]);
    assert!(lab.ingress("c")?.is_empty(), "C got A's externalIP");
    // The pool counts the booked externalIP as assigned.
    poll_until(
        "pool shared to count A's externalIP",
        LEAD_TIMEOUT,
        POLL,
        || {
            let pool = lab
                .install
                .get("ipaddresspool", "shared")?
                .ok_or_else(|| LabError::Invalid("pool shared missing".into()))?;
            Ok(if pool["status"]["assignedIPv4"] == 3 {
                Poll::Ready(())
            } else {
                Poll::Pending(pool["status"].to_string())
            })
        },
    )?;

    // Deleting A frees it: the waiting C gets it.
    lab.delete_service("a")?;
    assert_eq!(lab.wait_ingress("c", 1)?, vec!["192.0.2.128"]);
    drop(controller);
    Ok(())
}

/// Waits until the Service's annotation `name` is `value` (`None`: absent).
fn wait_annotation(lab: &Lab, service: &str, name: &str, value: Option<&str>) -> Result<()> {
    poll_until(
        &format!("annotation {name}={value:?} on Service {service}"),
        LEAD_TIMEOUT,
        POLL,
        || {
            let object = lab.get_service(service)?;
            let found = object["metadata"]["annotations"][name].as_str();
            Ok(if found == value {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{found:?}"))
            })
        },
    )
}

#[test]
fn killing_and_restarting_the_controller_under_churn_moves_no_address() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-restart")?;
    lab.pool("web", &["192.0.2.128/27"], json!({}))?;
    let mut controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    let mut expected: std::collections::BTreeMap<String, String> = Default::default();
    for i in 0..8 {
        lab.apply_service(&lab.service(&format!("s{i}"), 80), |_| {})?;
    }
    for i in 0..8 {
        let name = format!("s{i}");
        let ips = lab.wait_ingress(&name, 1)?;
        expected.insert(name, ips[0].clone());
    }

    for round in 0..3 {
        controller.kill();
        // Churn while no controller runs: some Services go, new ones come, and one Service
        // asks for the address a deleted Service held (it may take it: it was released).
        let gone = format!("s{}", round * 2);
        lab.delete_service(&gone)?;
        expected.remove(&gone);
        for j in 0..3 {
            lab.apply_service(&lab.service(&format!("r{round}n{j}"), 80), |_| {})?;
        }
        controller = ControllerProcess::start_admin(&lab, "c1")?;
        // More churn while it restores.
        lab.apply_service(&lab.service(&format!("r{round}late"), 80), |_| {})?;
        controller.wait_leading(LEAD_TIMEOUT)?;
        assert!(
            controller.metric("herald_controller_restored_addresses")? >= expected.len() as f64,
            "restore took over fewer addresses than Services hold"
        );
        for j in 0..3 {
            let name = format!("r{round}n{j}");
            let ips = lab.wait_ingress(&name, 1)?;
            expected.insert(name, ips[0].clone());
        }
        let late = format!("r{round}late");
        let ips = lab.wait_ingress(&late, 1)?;
        expected.insert(late, ips[0].clone());

        // Nothing that had an address moved, and no address is held twice.
        let services = lab.kubectl.list("services", Some(lab.apps.name()), None)?;
        let mut seen = BTreeSet::new();
        for service in &services {
            let name = service["metadata"]["name"].as_str().unwrap_or_default();
            let ips = ingress_of(service);
            if let Some(want) = expected.get(name) {
                assert_eq!(&ips, &vec![want.clone()], "round {round}: {name} moved");
            }
            for ip in ips {
                assert!(seen.insert(ip.clone()), "round {round}: {ip} held twice");
            }
        }
    }
    Ok(())
}

#[test]
fn deleting_a_pool_in_use_waits_for_its_services_then_completes() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-pooldel")?;
    lab.pool("doomed", &["192.0.2.136/30"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;
    lab.apply_service(&lab.service("holder", 80), |_| {})?;
    let address = lab.wait_ingress("holder", 1)?;

    lab.kubectl
        .delete("ipaddresspool", "doomed", Some(lab.install.name()))?;
    let pool = poll_until("the pool to say why it waits", LEAD_TIMEOUT, POLL, || {
        let pool = lab
            .install
            .get("ipaddresspool", "doomed")?
            .ok_or_else(|| LabError::Invalid("the pool in use was deleted".into()))?;
        Ok(match condition_of(&pool, "InUse") {
            Some(c) if c["reason"] == "DeletionWaitsForServices" => Poll::Ready(pool.clone()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    assert!(pool["metadata"]["deletionTimestamp"].is_string());
    let message = condition_of(&pool, "InUse")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("holder"), "{message}");
    lab.wait_event(lab.install.name(), "doomed", "DeletionBlocked")?;
    // The Service keeps its address meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.ingress("holder")?, address);
    assert!(lab.install.get("ipaddresspool", "doomed")?.is_some());

    lab.delete_service("holder")?;
    let started = Instant::now();
    poll_until("the pool to be gone", LEAD_TIMEOUT, POLL, || {
        Ok(match lab.install.get("ipaddresspool", "doomed")? {
            None => Poll::Ready(()),
            Some(pool) => Poll::Pending(pool["metadata"].to_string()),
        })
    })?;
    assert!(started.elapsed() < LEAD_TIMEOUT);
    drop(controller);
    Ok(())
}

/// Uninstalls a Helm release when dropped.
struct HelmRelease {
    helm: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    name: String,
    namespace: String,
}

impl Drop for HelmRelease {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.helm)
            .args([
                "uninstall",
                &self.name,
                "-n",
                &self.namespace,
                "--wait=false",
                // The chart's pre-delete hook Job needs a node that runs pods; this lab
                // has none (helm would wait for the Job until its timeout).
                "--no-hooks",
            ])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output();
    }
}

/// A kubeconfig for the lab apiserver that authenticates with `token` only.
fn token_kubeconfig(lab: &Lab, token: &str, path: &std::path::Path) -> Result<()> {
    let admin: serde_json::Value = serde_json::from_str(
        &lab.kubectl
            .run(&["config", "view", "--raw", "--minify", "-o", "json"])?,
    )
    .map_err(|e| LabError::parse("kubeconfig", e))?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller", "context": {"cluster": "lab", "user": "controller"}}],
        "current-context": "controller",
    });
    std::fs::write(path, config.to_string())
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

#[test]
fn the_chart_installs_and_the_controller_runs_with_exactly_its_rbac() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-helm")?;
    let helm = herald_lab::paths::tool("helm", "HELM")?;
    let release = format!("hl{}", &lab.install.name()[lab.install.name().len() - 6..]);
    let guard = HelmRelease {
        helm: helm.clone(),
        kubeconfig: lab.kubectl.kubeconfig().to_path_buf(),
        name: release.clone(),
        namespace: lab.install.name().to_owned(),
    };
    let output = std::process::Command::new(&helm)
        .args(["install", &release])
        .arg(herald_lab::paths::repo_root().join("charts/herald"))
        .args(["-n", lab.install.name(), "--set", "speaker.enabled=false"])
        .args([
            "--set",
            &format!("controller.loadBalancerClass={}", lab.class),
        ])
        .arg("--kubeconfig")
        .arg(lab.kubectl.kubeconfig())
        .output()
        .map_err(|e| LabError::io("running helm install", e))?;
    assert!(
        output.status.success(),
        "helm install failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let fullname = format!("{release}-herald");
    let sa = format!("{fullname}-controller");
    let deployment = lab
        .install
        .get("deployment", &sa)?
        .ok_or_else(|| LabError::Invalid("controller Deployment missing".into()))?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    let env: Vec<String> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    assert!(env.contains(&"POD_NAME".to_owned()) && env.contains(&"POD_NAMESPACE".to_owned()));

    let who = format!("system:serviceaccount:{}:{sa}", lab.install.name());
    let can = |verb: &str, resource: &str, namespace: &str| -> Result<bool> {
        // `TYPE/NAME` would name an object: a subresource needs its own flag.
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let mut args = vec![
            "auth", "can-i", verb, resource, "--as", &who, "-n", namespace,
        ];
        let flag = format!("--subresource={subresource}");
        if !subresource.is_empty() {
            args.push(&flag);
        }
        let out = lab.kubectl.run_unchecked(&args, None)?;
        Ok(out.stdout.trim() == "yes")
    };
    let install = lab.install.name();
    let apps = lab.apps.name();
    let needed = [
        ("get", "services", apps),
        ("list", "services", apps),
        ("watch", "services", apps),
        ("patch", "services", apps),
        ("patch", "services/status", apps),
        ("update", "services/status", apps),
        ("list", "namespaces", apps),
        ("watch", "namespaces", apps),
        ("create", "events.events.k8s.io", apps),
        ("patch", "events.events.k8s.io", apps),
        ("get", "ipaddresspools.herald.dev", install),
        ("list", "ipaddresspools.herald.dev", install),
        ("watch", "ipaddresspools.herald.dev", install),
        ("patch", "ipaddresspools.herald.dev", install),
        ("update", "ipaddresspools.herald.dev", install),
        ("patch", "ipaddresspools.herald.dev/status", install),
        ("update", "ipaddresspools.herald.dev/finalizers", install),
        ("get", "leases.coordination.k8s.io", install),
        ("create", "leases.coordination.k8s.io", install),
        ("update", "leases.coordination.k8s.io", install),
        // kube-lease-manager renews with server-side apply.
        ("patch", "leases.coordination.k8s.io", install),
    ];
    for (verb, resource, namespace) in needed {
        assert!(
            can(verb, resource, namespace)?,
            "{who} cannot {verb} {resource} in {namespace}"
        );
    }
    let forbidden = [
        ("delete", "services", apps),
        ("create", "services", apps),
        ("update", "services", apps),
        ("get", "secrets", apps),
        ("list", "secrets", install),
        ("list", "pods", apps),
        ("create", "ipaddresspools.herald.dev", install),
        ("delete", "ipaddresspools.herald.dev", install),
        ("list", "ipaddresspools.herald.dev", apps),
        ("create", "leases.coordination.k8s.io", apps),
        ("delete", "leases.coordination.k8s.io", install),
        ("patch", "namespaces", apps),
        ("create", "events", apps),
        ("list", "l2advertisements.herald.dev", install),
        ("patch", "nodes", ""),
        ("patch", "pods/status", apps),
        ("update", "ipaddresspools.herald.dev/finalizers", apps),
    ];
    for (verb, resource, namespace) in forbidden {
        let namespace = if namespace.is_empty() {
            install
        } else {
            namespace
        };
        assert!(
            !can(verb, resource, namespace)?,
            "{who} may {verb} {resource} in {namespace}"
        );
    }

    // The real binary with only that ServiceAccount's token does its whole job.
    let token = lab
        .kubectl
        .run(&["create", "token", &sa, "-n", install, "--duration=1h"])?;
    let kubeconfig = herald_lab::paths::lab_dir().join(format!("kubeconfig-{install}"));
    token_kubeconfig(&lab, token.trim(), &kubeconfig)?;
    lab.pool("web", &["192.0.2.128/30"], json!({}))?;
    let controller = ControllerProcess::start(
        &lab,
        controller_support::ControllerOptions {
            identity: "rbac",
            kubeconfig: kubeconfig.clone(),
            extra: Vec::new(),
        },
    )?;
    controller.wait_leading(LEAD_TIMEOUT)?;
    lab.apply_service(&lab.service("web", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("web", 1)?, vec!["192.0.2.128"]);
    lab.wait_condition("web", ASSIGNED, "True")?;
    lab.wait_event(apps, "web", "AddressAssigned")?;
    poll_until("pool status and finalizer", LEAD_TIMEOUT, POLL, || {
        let pool = lab
            .install
            .get("ipaddresspool", "web")?
            .ok_or_else(|| LabError::Invalid("pool missing".into()))?;
        Ok(
            if pool["status"]["assignedIPv4"] == 1
                && pool["metadata"]["finalizers"] == json!(["herald.dev/pool-in-use"])
            {
                Poll::Ready(())
            } else {
                Poll::Pending(pool.to_string())
            },
        )
    })?;
    assert!(lab.install.get("lease", "herald-controller")?.is_some());
    let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
    assert!(
        !log.contains("forbidden"),
        "the controller hit RBAC denials:\n{log}"
    );
    drop(controller);
    // The Service goes before the pool so the finalizer can be removed by... nobody: the
    // controller is stopped; the namespaces' deletion clears the rest.
    lab.delete_service("web")?;
    let _ = std::fs::remove_file(&kubeconfig);
    drop(guard);
    Ok(())
}

#[test]
fn only_the_leader_writes_and_a_standby_takes_over_when_it_shuts_down() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-leader")?;
    lab.pool("web", &["192.0.2.128/29"], json!({}))?;
    let mut first = ControllerProcess::start_admin(&lab, "replica-a")?;
    first.wait_leading(LEAD_TIMEOUT)?;
    let second = ControllerProcess::start_admin(&lab, "replica-b")?;
    // The standby is ready (so a rollout proceeds) but does not lead.
    poll_until("the standby to be ready", LEAD_TIMEOUT, POLL, || {
        Ok(match second.http_get("/readyz") {
            Ok((200, body)) if body.contains("standby") => Poll::Ready(()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    assert_eq!(second.metric("herald_controller_leader")?, 0.0);
    let lease = lab
        .install
        .get("lease", "herald-controller")?
        .ok_or_else(|| LabError::Invalid("no Lease".into()))?;
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    lab.apply_service(&lab.service("before", 80), |_| {})?;
    let before = lab.wait_ingress("before", 1)?;
    // The standby wrote nothing: no reconcile ran there.
    assert_eq!(second.metric("herald_controller_reconciles_total")?, 0.0);

    // A clean shutdown releases the Lease: the standby leads at once (no expiry wait).
    let stopped_at = Instant::now();
    assert!(
        first.terminate(Duration::from_secs(10)),
        "SIGTERM did not stop the leader"
    );
    second.wait_leading(LEAD_TIMEOUT)?;
    let takeover = stopped_at.elapsed();
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?} (lease duration 15 s: the Lease was not released)"
    );
    lab.apply_service(&lab.service("after", 80), |_| {})?;
    let after = lab.wait_ingress("after", 1)?;
    assert_ne!(after, before);
    assert_eq!(
        lab.ingress("before")?,
        before,
        "the new leader moved an address"
    );
    Ok(())
}

#[test]
fn a_pool_change_rebooks_or_reports_addresses_and_never_moves_them() -> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-poolchg")?;
    lab.pool("a", &["192.0.2.128/30"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;
    lab.apply_service(&lab.service("web", 80), |_| {})?;
    let address = lab.wait_ingress("web", 1)?;
    assert_eq!(address, vec!["192.0.2.128"]);

    // An overlapping pool is flagged on both pools.
    lab.pool("b", &["192.0.2.128/29"], json!({}))?;
    for pool in ["a", "b"] {
        poll_until(
            &format!("pool {pool} to be Overlapping"),
            LEAD_TIMEOUT,
            POLL,
            || {
                let object = lab
                    .install
                    .get("ipaddresspool", pool)?
                    .ok_or_else(|| LabError::Invalid(format!("pool {pool} missing")))?;
                Ok(match condition_of(&object, "Overlapping") {
                    Some(c) if c["status"] == "True" => Poll::Ready(()),
                    other => Poll::Pending(format!("{other:?}")),
                })
            },
        )?;
    }

    // Pool a no longer contains the address: it is re-booked against pool b, not moved.
    lab.pool("a", &["192.0.2.160/30"], json!({}))?;
    poll_until("the annotation to name pool b", LEAD_TIMEOUT, POLL, || {
        let service = lab.get_service("web")?;
        Ok(
            match service["metadata"]["annotations"][POOL_ANNOTATION].as_str() {
                Some("b") => Poll::Ready(()),
                other => Poll::Pending(format!("{other:?}")),
            },
        )
    })?;
    assert_eq!(lab.ingress("web")?, address);

    // No pool contains it any more: kept, reported by a condition and an Event.
    lab.pool("b", &["192.0.2.192/30"], json!({}))?;
    let message = poll_until(
        "the outside-every-pool condition",
        LEAD_TIMEOUT,
        POLL,
        || {
            let service = lab.get_service("web")?;
            Ok(match condition_of(&service, ASSIGNED) {
                Some(c) if c["reason"] == "AddressOutsideEveryPool" && c["status"] == "True" => {
                    Poll::Ready(c["message"].as_str().unwrap_or_default().to_owned())
                }
                other => Poll::Pending(format!("{other:?}")),
            })
        },
    )?;
    assert!(message.contains("192.0.2.128"), "{message}");
    lab.wait_event(lab.apps.name(), "web", "AddressOutsideEveryPool")?;
    assert_eq!(
        lab.ingress("web")?,
        address,
        "an address outside every pool moved"
    );
    drop(controller);
    Ok(())
}

#[test]
fn node_addresses_inside_a_pool_are_never_handed_out_and_a_request_for_one_gets_an_event()
-> Result<()> {
    let _serial = serial();
    let lab = Lab::new("ctl-node")?;
    // A pool overlapping the node network: one of its addresses is this Node's InternalIP.
    let node = format!("{}-node", lab.install.name());
    let _node = lab.kubectl.create_node(
        &herald_lab::kube::NodeSpec::new(&node).address(std::net::IpAddr::from([203, 0, 113, 33])),
    )?;
    lab.pool("overlap", &["203.0.113.32/29"], json!({}))?;
    let controller = ControllerProcess::start_admin(&lab, "c1")?;
    controller.wait_leading(LEAD_TIMEOUT)?;

    // Allocation skips the node's address.
    lab.apply_service(&lab.service("first", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("first", 1)?, vec!["203.0.113.32"]);
    lab.apply_service(&lab.service("second", 80), |_| {})?;
    assert_eq!(lab.wait_ingress("second", 1)?, vec!["203.0.113.34"]);

    // Requesting it is refused, naming the node.
    lab.apply_service(
        &lab.service("wants-node", 80)
            .annotation("herald.dev/loadBalancerIPs", "203.0.113.33"),
        |_| {},
    )?;
    let (reason, message) = lab.wait_condition("wants-node", ASSIGNED, "False")?;
    assert_eq!(reason, "NodeAddress");
    assert!(message.contains(&node), "{message}");
    let event = lab.wait_event(lab.apps.name(), "wants-node", "AllocationFailed")?;
    assert!(
        event.contains("203.0.113.33") && event.contains(&node),
        "{event}"
    );
    assert!(lab.ingress("wants-node")?.is_empty());

    // The pool says which node addresses it contains.
    let pool = poll_until("pool condition NodeAddresses", LEAD_TIMEOUT, POLL, || {
        let pool = lab
            .install
            .get("ipaddresspool", "overlap")?
            .ok_or_else(|| LabError::Invalid("pool overlap missing".into()))?;
        Ok(match condition_of(&pool, "NodeAddresses") {
            Some(c) if c["status"] == "True" => Poll::Ready(c["message"].clone()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    let pool = pool.as_str().unwrap_or_default().to_owned();
    assert!(
        pool.contains("203.0.113.33") && pool.contains(&node),
        "{pool}"
    );

    // A node that later takes an address in use: the Service keeps it (never moved) and is
    // told it will not be announced.
    let late = format!("{}-late", lab.install.name());
    let _late = lab.kubectl.create_node(
        &herald_lab::kube::NodeSpec::new(&late).address(std::net::IpAddr::from([203, 0, 113, 32])),
    )?;
    let (reason, message) =
        lab.wait_condition("first", "herald.dev/NodeAddressConflict", "True")?;
    assert_eq!(reason, "NodeAddress");
    assert!(
        message.contains("203.0.113.32") && message.contains(&late),
        "{message}"
    );
    lab.wait_event(lab.apps.name(), "first", "NodeAddressConflict")?;
    assert_eq!(lab.ingress("first")?, vec!["203.0.113.32"]);
    Ok(())
}

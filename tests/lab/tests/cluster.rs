//! Control-plane tests: the real kube-apiserver and kube-controller-manager that
//! `herald-cp` runs, driven through the harness. Must run as root (the control plane
//! listens on the lab bridge hlcp0; some tests also build a lab).

use std::net::IpAddr;
use std::time::Duration;

use herald_lab::kube::{NodeSpec, ObjectGuard, PodSpec, PortSpec, ServiceSpec};
use herald_lab::topology::RouterSetup;
use herald_lab::wait::Poll;
use herald_lab::{ControlPlane, Kubectl, Lab, LabError, Result};

fn kubectl() -> Result<Kubectl> {
    ControlPlane::ensure()?.kubectl()
}

#[test]
fn the_control_plane_comes_up_and_kubectl_reads_back_what_it_wrote() -> Result<()> {
    let kubectl = kubectl()?;
    let version = kubectl.run(&["version", "-o", "json"])?;
    let version: serde_json::Value =
        serde_json::from_str(&version).map_err(|e| LabError::parse("kubectl version", e))?;
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("");
    assert!(server.starts_with("v1.36."), "server version {server:?}");

    let ns = kubectl.test_namespace("kubectl-works")?;
    ns.apply(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"hello"},"data":{"greeting":"hi"}}"#,
    )?;
    let read = ns
        .get("configmap", "hello")?
        .ok_or_else(|| LabError::Invalid("configmap not found".into()))?;
    assert_eq!(read["data"]["greeting"], "hi");
    assert!(ns.get("configmap", "absent")?.is_none());
    Ok(())
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.lab.herald.dev
spec:
  group: lab.herald.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [address, first, last]
            properties:
              address: {type: string, pattern: '^[0-9]+(\.[0-9]+){3}$'}
              first: {type: integer}
              last: {type: integer}
            x-kubernetes-validations:
            - rule: self.first <= self.last
              message: first must not be greater than last
"#;

fn widget(name: &str, address: &str, first: i64, last: i64) -> String {
    serde_json::json!({
        "apiVersion": "lab.herald.dev/v1", "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"address": address, "first": first, "last": last},
    })
    .to_string()
}

#[test]
fn a_crd_applies_and_its_openapi_pattern_and_cel_rule_reject_bad_objects() -> Result<()> {
    let kubectl = kubectl()?;
    let _crd = ObjectGuard::apply(&kubectl, WIDGET_CRD, "crd", "widgets.lab.herald.dev", None)?;
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.lab.herald.dev",
        "--timeout=60s",
    ])?;
    let ns = kubectl.test_namespace("crd-validation")?;
    // The CRD's REST mapping can lag the Established condition by a moment.
    herald_lab::wait::poll_until_ok(
        "a valid widget to be accepted",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            ns.apply(&widget("good", "192.0.2.10", 1, 2))
                .map(Poll::Ready)
        },
    )?;

    let bad_pattern = ns.apply(&widget("bad-address", "not-an-ip", 1, 2));
    let message = bad_pattern.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("spec.address"), "{message}");
    assert!(message.contains("should match"), "{message}");

    let bad_rule = ns.apply(&widget("bad-range", "192.0.2.10", 5, 2));
    let message = bad_rule.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("first must not be greater than last"),
        "{message}"
    );
    assert!(ns.get("widget", "bad-range")?.is_none());
    assert!(ns.get("widget", "good")?.is_some());
    Ok(())
}

#[test]
fn a_pod_made_ready_by_the_harness_appears_in_the_endpointslice_and_follows_its_state() -> Result<()>
{
    let kubectl = kubectl()?;
    let ns = kubectl.test_namespace("endpoints")?;
    let node_name = format!("{}-node", ns.name());
    let _node = kubectl.create_node(
        &NodeSpec::new(&node_name)
            .address(IpAddr::from([192, 0, 2, 11]))
            .pod_cidr("198.18.1.0/24"),
    )?;
    let pod = PodSpec::new("echo-a", &node_name)
        .ip(IpAddr::from([198, 18, 1, 11]))
        .host_ip(IpAddr::from([192, 0, 2, 11]))
        .label("app", "echo")
        .port(PortSpec::tcp("http", 8080));
    ns.create_pod(&pod)?;
    ns.apply_service(&ServiceSpec::new("echo", "echo").port(PortSpec::tcp("http", 8080)))?;

    let timeout = Duration::from_secs(30);
    let is_pod = |e: &herald_lab::kube::EndpointView| e.addresses == ["198.18.1.11"];
    let endpoints = ns.wait_endpoints("echo", timeout, |eps| {
        eps.iter().any(|e| is_pod(e) && e.ready)
    })?;
    let endpoint = endpoints.iter().find(|e| is_pod(e));
    assert_eq!(
        endpoint.and_then(|e| e.node_name.as_deref()),
        Some(node_name.as_str())
    );
    assert_eq!(endpoint.and_then(|e| e.pod.as_deref()), Some("echo-a"));

    ns.set_pod_ready(&pod, false)?;
    ns.wait_endpoints("echo", timeout, |eps| {
        eps.iter().any(|e| is_pod(e) && !e.ready && !e.serving)
    })?;

    ns.set_pod_ready(&pod, true)?;
    ns.wait_endpoints("echo", timeout, |eps| {
        eps.iter().any(|e| is_pod(e) && e.ready)
    })?;

    ns.begin_pod_termination("echo-a")?;
    ns.wait_endpoints("echo", timeout, |eps| {
        eps.iter().any(|e| is_pod(e) && e.terminating && !e.ready)
    })?;

    ns.delete_pod_now("echo-a")?;
    ns.wait_endpoints("echo", timeout, |eps| !eps.iter().any(is_pod))?;
    Ok(())
}

#[test]
fn processes_in_a_node_namespace_reach_the_apiserver_over_the_control_plane_link() -> Result<()> {
    let kubectl = kubectl()?;
    let lab = Lab::builder()
        .echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
        .nodes(2)
        .router(RouterSetup::NoFrr)
        .build()?;
    for node in lab.nodes() {
        let binary = kubectl.binary().to_string_lossy().into_owned();
        let config = kubectl.kubeconfig().to_string_lossy().into_owned();
        let out = node.netns.exec(&[
            &binary,
            "--kubeconfig",
            &config,
            "get",
            "--raw",
            "/readyz",
            "--request-timeout=10s",
        ])?;
        assert_eq!(out.trim(), "ok", "from {}", node.name);
    }
    Ok(())
}

#[test]
fn lab_nodes_and_pods_registered_in_the_cluster_become_endpoints_the_client_can_reach() -> Result<()>
{
    let kubectl = kubectl()?;
    let lab = Lab::builder()
        .echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
        .nodes(2)
        .pods_per_node(1)
        .router(RouterSetup::NoFrr)
        .build()?;
    let _nodes = lab.register_nodes(&kubectl)?;
    let ns = kubectl.test_namespace("lab-endpoints")?;
    lab.register_pods(&ns)?;
    ns.apply_service(&ServiceSpec::new("echo", "echo").port(PortSpec::tcp("http", 8080)))?;
    let endpoints = ns.wait_endpoints("echo", Duration::from_secs(30), |eps| {
        eps.iter().filter(|e| e.ready).count() == lab.pods().len()
    })?;
    for endpoint in endpoints {
        let ip: IpAddr = endpoint.addresses[0]
            .parse()
            .map_err(|e| LabError::parse("endpoint address", e))?;
        let reply = lab.client_get(ip, 8080)?;
        assert_eq!(Some(reply.pod), endpoint.pod);
        assert_eq!(Some(reply.node), endpoint.node_name);
    }
    Ok(())
}

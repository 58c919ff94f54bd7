//! `herald migrate` against the lab's real kube-apiserver, and a switch from MetalLB in the
//! namespace lab.
//!
//! 1. The manifests translated from the MetalLB corpus (`cli/tests/corpus/`) are accepted by
//!    the apiserver with Herald's CRDs (strict field validation: no field Herald's schema
//!    lacks) and read back with the meaning kept. BFDProfile manifests and
//!    `BGPPeer.spec.bfdProfile` are applied only when the CRDs in `charts/herald/crds/` know
//!    them.
//! 2. `herald migrate --from-cluster` reads MetalLB objects stored in the apiserver (under
//!    stand-in metallb.io CRDs; BGPPeer served as v1beta1 and v1beta2) and writes exactly
//!    what the same objects give from files.
//! 3. The switch (layer-2 mode): Services carry MetalLB annotations and the addresses MetalLB
//!    gave them (written into status, as MetalLB does); `herald migrate` reads the MetalLB
//!    pool and advertisement from files and the Services from the cluster; its output is
//!    applied and the real `herald-controller` (with `--metallb-annotations`) and a
//!    `herald-speaker` per node start. No Service changes address, the client reaches every
//!    Service, `herald status` names the announcing node of each address, and a Service
//!    created afterwards with only a `metallb.io/address-pool` annotation gets an address
//!    from that pool.
//!
//! The binaries run as processes in the node namespaces (as in the other lab tests) rather
//! than from the chart: there is no image registry in the lab.
//!
//! Must run as root: `cargo test -p herald-lab --test migrate -- --nocapture`.

mod common;
mod l2_support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{World, kubectl_with_crds};
use herald_cli::source::{self, Document};
use herald_cli::status;
use herald_cli::translate::{self, Migration, Options};
use herald_lab::wait::{Poll, poll_until, poll_until_ok};
use herald_lab::{LabError, Result, paths};
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(250);
/// How long the controller may take to adopt the Services after it starts.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(60);

fn corpus_dir() -> PathBuf {
    paths::repo_root().join("cli/tests/corpus")
}

fn documents(path: &Path) -> Result<Vec<Document>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    source::split_documents(&path.display().to_string(), &text)
        .map_err(|e| LabError::Invalid(e.to_string()))
}

fn migrate(documents: &[Document], namespace: &str) -> Result<Migration> {
    translate::translate(
        documents,
        &Options {
            namespace: namespace.to_owned(),
            skip_unknown: false,
        },
    )
    .map_err(|errors| {
        LabError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// Whether the installed CRD of `plural.herald.dev` has `field` in its spec schema.
fn crd_has_spec_field(kubectl: &herald_lab::Kubectl, plural: &str, field: &str) -> Result<bool> {
    let Some(crd) = kubectl.get("crd", &format!("{plural}.herald.dev"), None)? else {
        return Ok(false);
    };
    Ok(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .get(field)
            .is_some(),
    )
}

#[test]
fn translated_corpus_manifests_are_accepted_by_the_apiserver() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = kubectl.test_namespace("migrate-api")?;
    let bfd_served = kubectl
        .get("crd", "bfdprofiles.herald.dev", None)?
        .is_some();
    let peer_bfd = crd_has_spec_field(&kubectl, "bgppeers", "bfdProfile")?;

    let mut applied = 0;
    for file in [
        "layer2.yaml",
        "bgp.yaml",
        "untranslatable.yaml",
        "services.yaml",
    ] {
        let migration = migrate(&documents(&corpus_dir().join(file))?, ns.name())?;
        for mut object in migration.objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "BFDProfile" && !bfd_served {
                continue;
            }
            if kind == "BGPPeer"
                && !peer_bfd
                && let Some(spec) = object["spec"].as_object_mut()
            {
                spec.remove("bfdProfile");
            }
            if kind == "Service" {
                object["metadata"]["namespace"] = json!(ns.name());
            }
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let out = kubectl
                .run_with_stdin(
                    &["apply", "--validate=strict", "-n", ns.name(), "-f", "-"],
                    &object.to_string(),
                )
                .map_err(|e| LabError::Invalid(format!("{file}: {kind} {name}: {e}")))?;
            assert!(!out.contains("Warning"), "{file}: {kind} {name}: {out}");
            let stored = ns
                .get(&kind.to_lowercase(), &name)?
                .ok_or_else(|| LabError::Invalid(format!("{kind} {name} not stored")))?;
            // What was written is what is stored (the apiserver may only add defaults).
            for (key, value) in object["spec"].as_object().into_iter().flatten() {
                if kind == "Service" {
                    continue;
                }
                assert_eq!(
                    &stored["spec"][key], value,
                    "{file}: {kind} {name} spec.{key}"
                );
            }
            applied += 1;
        }
    }
    assert!(applied >= 15, "only {applied} objects applied");

    // Read back into Herald's types, the meaning is kept.
    let peer: herald_crds::api::BGPPeer = serde_json::from_value(
        ns.get("bgppeer", "upstream")?
            .ok_or_else(|| LabError::Invalid("upstream missing".into()))?,
    )
    .map_err(|e| LabError::parse("BGPPeer upstream", e))?;
    assert_eq!(peer.spec.hold_time().ok(), Some(Duration::from_secs(90)));
    assert_eq!(peer.spec.connect_time().ok(), Some(Duration::from_secs(5)));
    let web = ns
        .get("service", "web")?
        .ok_or_else(|| LabError::Invalid("web missing".into()))?;
    assert_eq!(
        web["metadata"]["annotations"]["herald.dev/loadBalancerIPs"],
        "192.0.2.130"
    );
    Ok(())
}

/// A stand-in CRD for a MetalLB kind (group metallb.io, any content), so MetalLB objects can
/// be stored and listed without MetalLB. BGPPeer is served as v1beta1 and v1beta2, stored
/// as v1beta2, as MetalLB serves it.
fn metallb_crd(kind: &str, plural: &str) -> Value {
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let versions: Vec<Value> = if kind == "BGPPeer" {
        vec![
            json!({"name": "v1beta2", "served": true, "storage": true, "schema": schema}),
            json!({"name": "v1beta1", "served": true, "storage": false, "schema": schema}),
        ]
    } else {
        vec![json!({"name": "v1beta1", "served": true, "storage": true, "schema": schema})]
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.metallb.io")},
        "spec": {
            "group": "metallb.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": versions,
        },
    })
}

#[test]
fn migrate_from_the_cluster_reads_what_the_files_say() -> Result<()> {
    let kubectl = kubectl_with_crds()?;
    let ns = kubectl.test_namespace("migrate-live")?;
    let kinds = [
        ("IPAddressPool", "ipaddresspools"),
        ("L2Advertisement", "l2advertisements"),
        ("BGPAdvertisement", "bgpadvertisements"),
        ("BGPPeer", "bgppeers"),
        ("BFDProfile", "bfdprofiles"),
        ("Community", "communities"),
    ];
    let mut guards = Vec::new();
    for (kind, plural) in kinds {
        let name = format!("{plural}.metallb.io");
        guards.push(herald_lab::kube::ObjectGuard::apply(
            &kubectl,
            &metallb_crd(kind, plural).to_string(),
            "crd",
            &name,
            None,
        )?);
    }
    poll_until_ok(
        "the metallb.io kinds to be served",
        Duration::from_secs(60),
        POLL,
        || {
            for (_, plural) in kinds {
                kubectl.run(&["get", &format!("{plural}.metallb.io"), "-n", ns.name()])?;
            }
            Ok(Poll::Ready(()))
        },
    )?;

    // The corpus, stored in the cluster (in the test namespace instead of metallb-system).
    let mut from_files = Vec::new();
    for file in ["layer2.yaml", "bgp.yaml"] {
        let text = std::fs::read_to_string(corpus_dir().join(file))
            .map_err(|e| LabError::io(format!("reading {file}"), e))?
            .replace(
                "namespace: metallb-system",
                &format!("namespace: {}", ns.name()),
            );
        kubectl.apply(&text)?;
        from_files.extend(
            source::split_documents(file, &text).map_err(|e| LabError::Invalid(e.to_string()))?,
        );
    }
    let expected = migrate(&from_files, "herald-target")?;

    let dir = paths::target_dir().join("tmp").join(ns.name());
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating the work directory", e))?;
    let output = dir.join("herald.yaml");
    let run = herald_command(&[
        "migrate",
        "--from-cluster",
        "--metallb-namespace",
        ns.name(),
        "--service-namespace",
        ns.name(),
        "--namespace",
        "herald-target",
        "-o",
        &output.to_string_lossy(),
    ])?;
    assert!(
        run.success(),
        "herald migrate --from-cluster: {}",
        run.stderr
    );
    let written =
        std::fs::read_to_string(&output).map_err(|e| LabError::io("reading herald.yaml", e))?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut got: Vec<Value> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&written) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| LabError::parse("herald migrate output", e))?;
        got.push(value);
    }
    let key = |v: &Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    let mut expected = expected.objects;
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        expected.iter().map(key).collect::<Vec<_>>()
    );
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected, "{}", key(expected));
    }
    // Both BGPPeer versions came back (the v1beta1 one through the v1beta2 listing).
    assert!(
        got.iter()
            .any(|v| v["kind"] == "BGPPeer" && v["metadata"]["name"] == "legacy")
    );
    drop(guards);
    Ok(())
}

/// The lab world for the switch: two nodes with layer 2 and forwarding, no Herald objects
/// yet (they come from the migration), one echo pod per node.
fn switch_world() -> Result<World> {
    let mut world = World::create("migrate-l2", 2, l2_support::l2_setup())?;
    for node in 1..=2 {
        world.add_pod(node, &format!("migrate-{node}"), "app")?;
    }
    Ok(world)
}

/// MetalLB's configuration as its user wrote it: the pool and its L2Advertisement.
const METALLB_CONFIG: &str = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: lan
  namespace: metallb-system
spec:
  addresses:
    - 192.0.2.128/26
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: spare
  namespace: metallb-system
spec:
  addresses:
    - 192.0.2.192/26
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: lan
  namespace: metallb-system
spec:
  ipAddressPools: [lan, spare]
";

/// A Service as MetalLB left it: MetalLB annotations (`prefix`), and `address` in status.
fn metallb_service(world: &World, name: &str, annotations: Value, address: &str) -> Result<()> {
    let mut spec = world.service(name, "app", "Cluster");
    spec.annotations =
        serde_json::from_value(annotations).map_err(|e| LabError::parse("annotations", e))?;
    world.apply_service(&spec, &[address])
}

/// Runs the `herald` binary (built by `cargo build --workspace`, as tests/run.sh does)
/// against the lab's control plane.
fn herald_command(args: &[&str]) -> Result<herald_lab::cmd::CmdOutput> {
    let binary = paths::target_dir().join("debug/herald");
    if !binary.is_file() {
        return Err(LabError::Invalid(format!(
            "{} is not built: run cargo build -p herald-cli",
            binary.display()
        )));
    }
    let mut command = std::process::Command::new(binary);
    command
        .arg("--kubeconfig")
        .arg(paths::kubeconfig_path())
        .args(args);
    herald_lab::cmd::run(&mut command, None, Duration::from_secs(60))
}

fn service_object(world: &World, name: &str) -> Result<Value> {
    world
        .apps
        .get("service", name)?
        .ok_or_else(|| LabError::Invalid(format!("Service {name} missing")))
}

fn ingress(object: &Value) -> Vec<String> {
    object["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn switching_from_metallb_moves_no_address_and_status_shows_the_announcers() -> Result<()> {
    let mut world = switch_world()?;
    // What MetalLB had done: three Services, annotations in both forms, addresses in status.
    let before = [
        (
            "web",
            json!({"metallb.io/address-pool": "lan", "metallb.io/ip-allocated-from-pool": "lan"}),
            "192.0.2.140",
        ),
        (
            "api",
            json!({"metallb.universe.tf/loadBalancerIPs": "192.0.2.150"}),
            "192.0.2.150",
        ),
        (
            "admin",
            json!({"metallb.io/address-pool": "spare"}),
            "192.0.2.200",
        ),
    ];
    for (name, annotations, address) in &before {
        metallb_service(&world, name, annotations.clone(), address)?;
    }
    world.wait_ready_endpoints("web", 2)?;

    // `herald migrate`: the MetalLB configuration from a file, the Services from the cluster.
    let dir = paths::target_dir().join("tmp").join(world.apps.name());
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating the work directory", e))?;
    let config = dir.join("metallb.yaml");
    std::fs::write(&config, METALLB_CONFIG).map_err(|e| LabError::io("writing metallb.yaml", e))?;
    let output = dir.join("herald.yaml");
    let migrated = herald_command(&[
        "migrate",
        "--from-cluster",
        "--service-namespace",
        world.apps.name(),
        "--namespace",
        world.install.name(),
        "-o",
        &output.to_string_lossy(),
        &config.to_string_lossy(),
    ])?;
    assert!(migrated.success(), "herald migrate: {}", migrated.stderr);
    // The lab's Services have the lab's class: reported as an action, nothing untranslated.
    assert!(
        migrated.stderr.contains("0 field(s) not translated"),
        "{}",
        migrated.stderr
    );
    let manifests =
        std::fs::read_to_string(&output).map_err(|e| LabError::io("reading herald.yaml", e))?;
    world.kubectl.apply(&manifests)?;
    let _ = std::fs::remove_dir_all(&dir);
    for (name, _, address) in &before {
        let object = service_object(&world, name)?;
        assert_eq!(
            object["metadata"]["annotations"]["herald.dev/loadBalancerIPs"], *address,
            "{name} is pinned"
        );
    }

    // Herald's controller (reading MetalLB annotations too) and speakers take over.
    let binary = herald_lab::herald::controller_binary()?
        .to_string_lossy()
        .into_owned();
    let kubeconfig = paths::kubeconfig_path().to_string_lossy().into_owned();
    let _controller = world.lab.spawn_in_node(
        1,
        "controller",
        &[
            &binary,
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            world.install.name(),
            "--load-balancer-class",
            &world.class,
            "--ignore-classless",
            "--metallb-annotations",
            "--leader-elect",
            "false",
            "--identity",
            "migrate",
            "--metrics-addr",
            "127.0.0.1:7472",
        ],
    )?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2], 2)?;

    // The controller adopts each Service (it writes its pool annotation) without moving it.
    for (name, _, address) in &before {
        let object = poll_until(
            &format!("the controller to adopt {name}"),
            ADOPT_TIMEOUT,
            POLL,
            || {
                let object = service_object(&world, name)?;
                Ok(
                    if object["metadata"]["annotations"]["herald.dev/ip-allocated-from-pool"]
                        .is_string()
                    {
                        Poll::Ready(object)
                    } else {
                        Poll::Pending(object["metadata"]["annotations"].to_string())
                    },
                )
            },
        )?;
        assert_eq!(
            ingress(&object),
            [address.to_string()],
            "{name} kept its address"
        );
    }

    // The client reaches every Service, and `herald status` names who announces it.
    for (name, _, address) in &before {
        let ip: IpAddr = address.parse().map_err(|e| LabError::parse("address", e))?;
        let reply = world.wait_get(ip)?;
        let owner = world.wait_any_record(name, ip)?;
        let owner_name = world.node_name(owner)?;
        let service: Service = serde_json::from_value(service_object(&world, name)?)
            .map_err(|e| LabError::parse("Service", e))?;
        let view = status::service_view(&service, &[], 5);
        assert_eq!(view.addresses, [address.to_string()]);
        assert_eq!(
            view.layer2
                .iter()
                .map(|a| (a.address.as_str(), a.node.as_str()))
                .collect::<Vec<_>>(),
            [(*address, owner_name.as_str())],
            "{name}: {view:?}"
        );
        let text = status::render_text(&status::Status {
            services: vec![view],
            ..status::Status::default()
        });
        assert!(
            text.contains(&format!("{address} announced by {owner_name}")),
            "{text}"
        );
        println!(
            "migrate: {name} {address} announced by {owner_name}, answered by pod {} on {}",
            reply.pod, reply.node
        );
    }
    for (name, _, address) in &before {
        assert_eq!(
            ingress(&service_object(&world, name)?),
            [address.to_string()],
            "{name}"
        );
    }

    // The `herald status` command shows the same, as JSON, with the pools' usage.
    // (The pool's usage is written by the controller shortly after it adopts the Services.)
    let shown = poll_until(
        "herald status to count the pool's addresses",
        ADOPT_TIMEOUT,
        POLL,
        || {
            let shown = herald_command(&[
                "status",
                "--namespace",
                world.install.name(),
                "--service-namespace",
                world.apps.name(),
                "web",
                "-o",
                "json",
            ])?;
            if !shown.success() {
                return Err(LabError::Invalid(format!(
                    "herald status: {}",
                    shown.stderr
                )));
            }
            let shown: Value = serde_json::from_str(&shown.stdout)
                .map_err(|e| LabError::parse("herald status", e))?;
            let lan = shown["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "lan")
                .cloned()
                .unwrap_or_default();
            // web and api hold addresses of lan.
            Ok(if lan["assignedIPv4"] == 2 {
                Poll::Ready(shown)
            } else {
                Poll::Pending(lan.to_string())
            })
        },
    )?;
    let web_ip: IpAddr = "192.0.2.140"
        .parse()
        .map_err(|e| LabError::parse("address", e))?;
    let web_owner = world.node_name(world.wait_any_record("web", web_ip)?)?;
    assert_eq!(shown["services"][0]["name"], "web", "{shown}");
    assert_eq!(
        shown["services"][0]["addresses"],
        json!(["192.0.2.140"]),
        "{shown}"
    );
    assert_eq!(shown["services"][0]["pool"], "lan", "{shown}");
    assert_eq!(
        shown["services"][0]["layer2"][0]["node"],
        json!(web_owner),
        "{shown}"
    );

    // `herald check` finds nothing wrong, then names an overlapping pool.
    let check_args = [
        "check",
        "--namespace",
        world.install.name(),
        "--load-balancer-class",
        world.class.as_str(),
        "--ignore-classless",
    ];
    let clean = herald_command(&check_args)?;
    assert!(
        clean.success(),
        "herald check: {}{}",
        clean.stdout,
        clean.stderr
    );
    assert!(
        clean.stdout.contains("No problems found."),
        "{}",
        clean.stdout
    );
    world.install_object(
        "IPAddressPool",
        "overlapping",
        json!({"addresses": ["192.0.2.180-192.0.2.190"], "autoAssign": false}),
    )?;
    let found = herald_command(&check_args)?;
    assert_eq!(
        found.status.code(),
        Some(1),
        "{}{}",
        found.stdout,
        found.stderr
    );
    assert!(
        found.stdout.contains("[overlapping-pools]") && found.stdout.contains("overlapping"),
        "{}",
        found.stdout
    );
    world
        .kubectl
        .delete("ipaddresspool", "overlapping", Some(world.install.name()))?;

    // A Service created after the switch with only MetalLB's pool annotation: the controller
    // reads it (--metallb-annotations) and allocates from the named, non-auto-assign pool.
    let mut late = world.service("late", "app", "Cluster");
    late.annotations = [("metallb.io/address-pool".to_owned(), "spare".to_owned())]
        .into_iter()
        .collect();
    world.apps.apply(
        &late
            .without_node_ports()
            .manifest(world.apps.name())
            .to_string(),
    )?;
    let address = poll_until_ok("an address for late", ADOPT_TIMEOUT, POLL, || {
        let addresses = ingress(&service_object(&world, "late")?);
        Ok(match addresses.first() {
            Some(address) => Poll::Ready(address.clone()),
            None => Poll::Pending("no address yet".to_owned()),
        })
    })?;
    let ip: IpAddr = address.parse().map_err(|e| LabError::parse("address", e))?;
    assert!(
        ip.to_string().starts_with("192.0.2.") && (192..=255).contains(&last_octet(ip)),
        "late got {address}, outside the spare pool"
    );
    Ok(())
}

fn last_octet(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(_) => 0,
    }
}

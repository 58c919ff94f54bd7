//! herald-speaker end to end: forwarding (nftables DNAT) in the namespace lab against the
//! real kube-apiserver and kube-controller-manager.
//!
//! Every node namespace runs the real `target/debug/herald-speaker` (built by
//! `cargo build --workspace`; tests/run.sh does) with `--forwarding on`, its kubeconfig
//! pointing at the apiserver over the control-plane link. The tests play the controller
//! (they write `status.loadBalancer.ingress` themselves) and the BGP/L2 announcement (a
//! static route on the router sends each external address to one node), so what is tested
//! here is the speaker's watch -> plan -> nftables path and nothing else. Each test has its
//! own lab (nodes, pods, router), install namespace (pools, memberlist Secret), apps
//! namespace and `loadBalancerClass`; all of it is removed when the test ends, even on
//! failure (guards). Must run as root.
//!
//! The world (lab, namespaces, speakers, Services, pods) is `common::World`; what is
//! forwarding's own stays here: its pools, the static routes on the router and reading the
//! nodes' nftables tables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{CLIENT_V4, ECHO_PORT, SERVICE_PORT, SETUP_TIMEOUT, Setup, World, parse_ip, pods_of};
use herald_lab::echo::EchoReply;
use herald_lab::herald::MEMBERLIST_SECRET;
use herald_lab::kube::{EndpointView, ObjectGuard, PortSpec, ServiceSpec};
use herald_lab::topology::http_get_from;
use herald_lab::wait::{Poll, poll_until, time_both};
use herald_lab::{LabError, Result, paths};
use serde_json::{Value, json};

/// Generous bound for a change to reach the kernel once the API shows it: the speaker's own
/// share (the goal is well under a second); [`SETUP_TIMEOUT`] bounds kube-controller-manager's.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// How long an expected-to-fail request may take before it counts as failed.
const SHORT_REQUEST: Duration = Duration::from_millis(1500);

impl World {
    /// A lab with `nodes` nodes (no pods yet), registered as Nodes, an install namespace
    /// with the memberlist Secret and two pools (203.0.113.0/25 and 2001:db8:100::/121 for
    /// LoadBalancer addresses; 203.0.113.128/25 allowing external IPs), and an apps
    /// namespace. The speakers run forwarding only: these tests route each address to a
    /// node statically.
    fn forwarding(hint: &str, nodes: usize) -> Result<World> {
        let world = World::create(
            hint,
            nodes,
            Setup {
                router_pod_routes: true,
                speaker_flags: &["--forwarding", "on", "--layer2", "off"],
                resync_interval: "2s",
                niced: false,
                endpoints_timeout: SETUP_TIMEOUT,
            },
        )?;
        world.install_object(
            "IPAddressPool",
            "lb",
            json!({"addresses": ["203.0.113.0/25", "2001:db8:100::/121"], "allowExternalIPs": false}),
        )?;
        world.install_object(
            "IPAddressPool",
            "external",
            json!({"addresses": ["203.0.113.128/25"], "allowExternalIPs": true}),
        )?;
        Ok(world)
    }

    /// Sends traffic for `address` to node `node`: a static route on the router.
    fn route_to(&self, address: &str, node: usize) -> Result<()> {
        let lab_node = self.lab.node(node)?;
        if address.contains(':') {
            self.lab.router().ip(&[
                "-6",
                "route",
                "replace",
                &format!("{address}/128"),
                "via",
                &lab_node.lan_v6.to_string(),
            ])?;
        } else {
            self.lab.router().ip(&[
                "route",
                "replace",
                &format!("{address}/32"),
                "via",
                &lab_node.lan_v4.to_string(),
            ])?;
        }
        Ok(())
    }

    /// `nft list table inet herald` in node `node`; `None` when the table does not exist.
    fn nft_table(&self, node: usize) -> Result<Option<String>> {
        let out = self.lab.node(node)?.netns.exec_unchecked(
            &["nft", "list", "table", "inet", "herald"],
            Duration::from_secs(10),
        )?;
        Ok(out.success().then_some(out.stdout))
    }

    /// Whether node `node` DNATs `address . tcp . 80` (a service-map entry: it has
    /// endpoints for it).
    fn forwards(&self, node: usize, address: &str) -> Result<bool> {
        Ok(self
            .nft_table(node)?
            .is_some_and(|table| table.contains(&dnat_entry(address))))
    }

    /// Whether node `node`'s table mentions `address . tcp . 80` at all (service map or
    /// the no-endpoints reject set).
    fn mentions(&self, node: usize, address: &str) -> Result<bool> {
        let element = format!("{address} . tcp . {SERVICE_PORT}");
        Ok(self
            .nft_table(node)?
            .is_some_and(|table| table.contains(&element)))
    }

    /// Waits until `condition` holds on node `node`'s table; returns how long it took.
    fn wait_table(
        &self,
        node: usize,
        what: &str,
        condition: impl Fn(&str) -> bool,
    ) -> Result<Duration> {
        let started = Instant::now();
        poll_until(what, SETUP_TIMEOUT, Duration::from_millis(20), || {
            let table = self.nft_table(node)?.unwrap_or_default();
            Ok(if condition(&table) {
                Poll::Ready(started.elapsed())
            } else {
                Poll::Pending(table)
            })
        })
    }

    /// Makes a change and measures, on node 1, how long until the API shows it
    /// (`api_shows`, e.g. the EndpointSlice updated by kube-controller-manager) and until
    /// the kernel table satisfies `table_shows`. The two are polled side by side, each
    /// bounded by [`SETUP_TIMEOUT`] (kube-controller-manager is shared and may be busy);
    /// the speaker's own part, from the API to the kernel, must stay within
    /// [`CHANGE_DEADLINE`].
    fn measure(
        &self,
        what: &'static str,
        change: impl FnOnce() -> Result<()>,
        api_shows: impl Fn() -> Result<bool> + Send,
        table_shows: impl Fn(&str) -> bool,
    ) -> Result<Timing> {
        let started = Instant::now();
        change()?;
        let (to_api, to_kernel) = time_both(
            started,
            SETUP_TIMEOUT,
            Duration::from_millis(10),
            &format!("{what}: the API to show the change"),
            move || {
                Ok(if api_shows()? {
                    Poll::Ready(())
                } else {
                    Poll::Pending(String::new())
                })
            },
            &format!("{what}: node 1's table to follow"),
            || {
                let table = self.nft_table(1)?.unwrap_or_default();
                Ok(if table_shows(&table) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(table)
                })
            },
        )?;
        let timing = Timing {
            what,
            to_api,
            to_kernel,
        };
        if timing.speaker_share() > CHANGE_DEADLINE {
            return Err(LabError::Invalid(format!(
                "{what}: the kernel followed the API only after {:?}",
                timing.speaker_share()
            )));
        }
        Ok(timing)
    }

    /// One request that is expected to fail quickly; returns whether it failed.
    fn unreachable(&self, ip: &str) -> Result<bool> {
        Ok(http_get_from(
            self.lab.client(),
            parse_ip(ip)?,
            SERVICE_PORT,
            SHORT_REQUEST,
        )
        .is_err())
    }
}

/// When one change reached the API and the kernel, counted from when it was made.
struct Timing {
    what: &'static str,
    to_api: Duration,
    to_kernel: Duration,
}

impl Timing {
    /// The speaker's part: from the API showing the change to the kernel having it.
    fn speaker_share(&self) -> Duration {
        self.to_kernel.saturating_sub(self.to_api)
    }
}

/// The service-map entry of `address . tcp . 80` as `nft list` prints it.
fn dnat_entry(address: &str) -> String {
    format!("{address} . tcp . {SERVICE_PORT} : goto")
}

/// Client address seen per pod.
fn clients_by_pod(replies: &[EchoReply]) -> Result<BTreeMap<String, BTreeSet<IpAddr>>> {
    let mut seen: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for reply in replies {
        seen.entry(reply.pod.clone())
            .or_default()
            .insert(reply.client_ip()?);
    }
    Ok(seen)
}

#[test]
fn the_client_reaches_a_load_balancer_service_spread_over_pods_on_every_node_and_an_approved_external_ip()
-> Result<()> {
    let mut world = World::forwarding("spk-reach", 3)?;
    for node in 1..=3 {
        world.add_pod(node, &format!("web-{node}"), "web")?;
    }
    world.start_all_speakers()?;

    // A dual-stack Cluster Service on 203.0.113.10 and 2001:db8:100::10, TCP and UDP.
    let web = world
        .service("web", "web", "Cluster")
        .dual_stack()
        .port(PortSpec::udp("udp", 5353).target(ECHO_PORT));
    world.apply_service(&web, &["203.0.113.10", "2001:db8:100::10"])?;
    world.wait_ready_endpoints("web", 6)?;
    world.route_to("203.0.113.10", 1)?;
    world.route_to("2001:db8:100::10", 1)?;
    for node in 1..=3 {
        world.wait_table(node, "web forwarded on every node", |t| {
            t.contains(&dnat_entry("203.0.113.10")) && t.contains(&dnat_entry("2001:db8:100::10"))
        })?;
    }

    let replies = world.sample("203.0.113.10", 30)?;
    let pods = pods_of(&replies);
    assert_eq!(
        pods,
        ["web-1", "web-2", "web-3"].map(String::from).into(),
        "30 requests through node 1 should reach the pods on all three nodes"
    );
    // Cluster policy: pods on node 1 see the client; pods elsewhere see node 1 (masquerade,
    // so replies return through node 1).
    let clients = clients_by_pod(&replies)?;
    let node1 = IpAddr::V4(world.lab.node(1)?.lan_v4);
    assert_eq!(clients["web-1"], [parse_ip(CLIENT_V4)?].into());
    assert_eq!(clients["web-2"], [node1].into());
    assert_eq!(clients["web-3"], [node1].into());

    let v6 = world.sample("2001:db8:100::10", 10)?;
    assert!(!v6.is_empty() && v6.iter().all(|r| r.pod.starts_with("web-")));
    let udp = world.lab.client_udp(parse_ip("203.0.113.10")?, 5353)?;
    assert!(udp.pod.starts_with("web-"), "{udp:?}");

    // spec.externalIPs: honoured when the controller booked them (the test plays the
    // controller and writes its annotation) inside a pool that allows them; an entry the
    // controller did not book is not announced, and one outside such a pool never is.
    let mut approved = ServiceSpec::new("approved", "web")
        .port(PortSpec::tcp("http", SERVICE_PORT).target(ECHO_PORT));
    approved.external_ips = vec!["203.0.113.200".into(), "203.0.113.201".into()];
    approved.annotations.insert(
        herald_crds::names::ANNOTATION_EXTERNAL_IPS_BOOKED.into(),
        "203.0.113.200".into(),
    );
    world.apps.apply_service(&approved)?;
    let mut refused = ServiceSpec::new("refused", "web")
        .port(PortSpec::tcp("http", SERVICE_PORT).target(ECHO_PORT));
    refused.external_ips = vec!["203.0.113.20".into()];
    refused.annotations.insert(
        herald_crds::names::ANNOTATION_EXTERNAL_IPS_BOOKED.into(),
        "203.0.113.20".into(),
    );
    world.apps.apply_service(&refused)?;
    world.route_to("203.0.113.200", 2)?;
    world.route_to("203.0.113.20", 2)?;
    world.wait_table(2, "the approved external IP forwarded", |t| {
        t.contains(&dnat_entry("203.0.113.200"))
    })?;
    let reply =
        world
            .lab
            .wait_client_get(parse_ip("203.0.113.200")?, SERVICE_PORT, SETUP_TIMEOUT)?;
    assert!(reply.pod.starts_with("web-"), "{reply:?}");
    assert!(!world.mentions(2, "203.0.113.20")?);
    assert!(world.unreachable("203.0.113.20")?);
    assert!(
        !world.mentions(2, "203.0.113.201")?,
        "not booked, not forwarded"
    );

    // The speakers found each other (authenticated with the Secret's key).
    let live = poll_until(
        "membership to see all three speakers",
        SETUP_TIMEOUT,
        Duration::from_millis(500),
        || {
            let live = world.metric(1, "herald_speaker_membership_live_members")?;
            Ok(if live == 3.0 {
                Poll::Ready(live)
            } else {
                Poll::Pending(format!("{live}"))
            })
        },
    )?;
    assert_eq!(live, 3.0);
    Ok(())
}

#[test]
fn local_policy_keeps_the_client_address_and_uses_only_the_nodes_own_pods() -> Result<()> {
    let mut world = World::forwarding("spk-local", 3)?;
    world.add_pod(1, "local-1a", "local")?;
    world.add_pod(1, "local-1b", "local")?;
    world.add_pod(2, "local-2a", "local")?;
    world.start_all_speakers()?;
    let service = world.service("local", "local", "Local");
    world.apply_service(&service, &["203.0.113.11"])?;
    world.wait_ready_endpoints("local", 3)?;
    for node in 1..=2 {
        world.wait_table(node, "the Local service forwarded", |t| {
            t.contains(&dnat_entry("203.0.113.11"))
        })?;
    }

    world.route_to("203.0.113.11", 1)?;
    let via_node1 = world.sample("203.0.113.11", 20)?;
    assert_eq!(
        pods_of(&via_node1),
        ["local-1a", "local-1b"].map(String::from).into()
    );
    world.route_to("203.0.113.11", 2)?;
    let via_node2 = world.sample("203.0.113.11", 10)?;
    assert_eq!(pods_of(&via_node2), ["local-2a"].map(String::from).into());
    let client: IpAddr = parse_ip(CLIENT_V4)?;
    for reply in via_node1.iter().chain(&via_node2) {
        assert_eq!(reply.client_ip()?, client, "{reply:?}");
    }

    // Node 3 has no local pod: it forwards nothing for the address.
    assert!(!world.mentions(3, "203.0.113.11")?);
    world.route_to("203.0.113.11", 3)?;
    assert!(world.unreachable("203.0.113.11")?);
    Ok(())
}

#[test]
fn forwarding_follows_scaling_readiness_and_deletion_within_a_deadline() -> Result<()> {
    let mut world = World::forwarding("spk-churn", 2)?;
    world.add_pod(1, "churn-1", "churn")?;
    world.start_all_speakers()?;
    let service = world.service("churn", "churn", "Cluster");
    world.apply_service(&service, &["203.0.113.12"])?;
    world.route_to("203.0.113.12", 1)?;
    world.wait_ready_endpoints("churn", 1)?;
    let first =
        world
            .lab
            .wait_client_get(parse_ip("203.0.113.12")?, SERVICE_PORT, SETUP_TIMEOUT)?;
    assert_eq!(first.pod, "churn-1");
    let mut timings = Vec::new();

    // Scale up: a pod on node 2 joins.
    world.lab.add_pod(2, "churn-2")?;
    let pod2 = world.lab.pod("churn-2")?.ipv4.to_string();
    let pod1 = world.lab.pod("churn-1")?.ipv4.to_string();
    let endpoint = |address: &str| {
        let address = address.to_string();
        move |endpoints: &[EndpointView]| -> Option<EndpointView> {
            endpoints
                .iter()
                .find(|e| e.addresses.contains(&address))
                .cloned()
        }
    };
    let (of_pod1, of_pod2) = (endpoint(&pod1), endpoint(&pod2));
    let spec2 = world.lab.pod_spec("churn-2")?.label("app", "churn");
    timings.push(world.measure(
        "scale up",
        || world.apps.create_pod(&spec2),
        || Ok(of_pod2(&world.apps.endpoints("churn")?).is_some_and(|e| e.ready)),
        |t| t.contains(&pod2),
    )?);
    assert_eq!(
        pods_of(&world.sample("203.0.113.12", 20)?),
        ["churn-1", "churn-2"].map(String::from).into()
    );

    // Readiness: churn-1 fails its probe, then recovers.
    timings.push(world.measure(
        "endpoint not ready",
        || world.set_pod_ready("churn-1", "churn", false),
        || Ok(of_pod1(&world.apps.endpoints("churn")?).is_some_and(|e| !e.ready)),
        |t| !t.contains(&pod1) && t.contains(&pod2),
    )?);
    assert_eq!(
        pods_of(&world.sample("203.0.113.12", 20)?),
        ["churn-2"].map(String::from).into()
    );
    timings.push(world.measure(
        "endpoint ready again",
        || world.set_pod_ready("churn-1", "churn", true),
        || Ok(of_pod1(&world.apps.endpoints("churn")?).is_some_and(|e| e.ready)),
        |t| t.contains(&pod1),
    )?);

    // Scale down: churn-2 terminates (left out at once), then is gone.
    timings.push(world.measure(
        "scale down (pod terminating)",
        || world.apps.begin_pod_termination("churn-2"),
        || Ok(of_pod2(&world.apps.endpoints("churn")?).is_none_or(|e| e.terminating || !e.ready)),
        |t| !t.contains(&pod2),
    )?);
    world.apps.delete_pod_now("churn-2")?;
    assert_eq!(
        pods_of(&world.sample("203.0.113.12", 10)?),
        ["churn-1"].map(String::from).into()
    );

    // Deleting the Service removes its forwarding on every node.
    timings.push(world.measure(
        "service deleted",
        || {
            world
                .kubectl
                .delete("service", "churn", Some(world.apps.name()))
        },
        || Ok(world.apps.get("service", "churn")?.is_none()),
        |t| !t.contains("203.0.113.12 . tcp . 80"),
    )?);
    world.wait_table(2, "the deleted Service out of node 2's table", |t| {
        !t.contains("203.0.113.12 . tcp . 80")
    })?;
    assert!(world.unreachable("203.0.113.12")?);

    for timing in &timings {
        eprintln!(
            "speaker_forwarding: {}: in the kernel {} ms after the change was made, {} ms after the API showed it (EndpointSlice/Service)",
            timing.what,
            timing.to_kernel.as_millis(),
            timing.speaker_share().as_millis()
        );
    }
    Ok(())
}

#[test]
fn a_restarted_speaker_leaves_no_stale_rules_and_a_deleted_table_comes_back() -> Result<()> {
    let mut world = World::forwarding("spk-restart", 1)?;
    world.add_pod(1, "keep-1", "keep")?;
    world.add_pod(1, "gone-1", "gone")?;
    world.start_all_speakers()?;
    world.apply_service(&world.service("keep", "keep", "Cluster"), &["203.0.113.14"])?;
    world.apply_service(&world.service("gone", "gone", "Cluster"), &["203.0.113.15"])?;
    world.route_to("203.0.113.14", 1)?;
    world.route_to("203.0.113.15", 1)?;
    world.wait_ready_endpoints("keep", 1)?;
    world.wait_ready_endpoints("gone", 1)?;
    world.wait_table(1, "both Services forwarded", |t| {
        t.contains(&dnat_entry("203.0.113.14")) && t.contains(&dnat_entry("203.0.113.15"))
    })?;

    // Drift: the table deleted by hand is rebuilt by the periodic resync (2 s here).
    world
        .lab
        .exec_in_node(1, &["nft", "delete", "table", "inet", "herald"])?;
    let repaired = world.wait_table(1, "the table rebuilt after deletion", |t| {
        t.contains(&dnat_entry("203.0.113.14"))
    })?;
    eprintln!(
        "speaker_forwarding: deleted table rebuilt after {} ms",
        repaired.as_millis()
    );
    assert!(
        world.metric(
            1,
            "herald_speaker_executor_drift_repairs_total{executor=\"forwarding\"}"
        )? >= 1.0
    );

    // SIGKILL: the rules stay (the kernel keeps them) while the speaker is down...
    world.speaker_mut(1)?.kill()?;
    world
        .kubectl
        .delete("service", "gone", Some(world.apps.name()))?;
    assert!(
        world.forwards(1, "203.0.113.15")?,
        "with the speaker down nothing should have removed the rule yet"
    );
    // ...and the restarted speaker's first apply leaves nothing stale.
    world.start_speaker(1)?;
    assert!(!world.mentions(1, "203.0.113.15")?);
    assert!(world.forwards(1, "203.0.113.14")?);
    assert_eq!(
        pods_of(&world.sample("203.0.113.14", 5)?),
        ["keep-1"].map(String::from).into()
    );

    // SIGTERM: the speaker removes its table and exits 0.
    let status = world.speaker_mut(1)?.terminate(Duration::from_secs(10))?;
    assert!(status.success(), "speaker exited with {status}");
    assert_eq!(world.nft_table(1)?, None);
    assert!(world.unreachable("203.0.113.14")?);
    Ok(())
}

#[test]
fn the_speaker_works_with_exactly_the_charts_rbac() -> Result<()> {
    let mut world = World::forwarding("spk-rbac", 1)?;
    world.add_pod(1, "rbac-1", "rbac")?;
    let release = world.install.name().to_string();
    let fullname = if release.contains("herald") {
        release.clone()
    } else {
        format!("{release}-herald")
    };
    let account = format!("{fullname}-speaker");

    // The chart's speaker RBAC, rendered by helm and applied as is.
    let helm = paths::tool("helm", "HELM")?;
    let chart = paths::repo_root().join("charts/herald");
    let rendered = std::process::Command::new(&helm)
        .args(["template", &release])
        .arg(&chart)
        .args([
            "--namespace",
            world.install.name(),
            "--show-only",
            "templates/speaker-rbac.yaml",
            "--set",
            &format!("speaker.memberlistSecretName={MEMBERLIST_SECRET}"),
        ])
        .output()
        .map_err(|e| LabError::io("running helm template", e))?;
    if !rendered.status.success() {
        return Err(LabError::Invalid(format!(
            "helm template failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        )));
    }
    let manifest = String::from_utf8_lossy(&rendered.stdout).into_owned();
    // Cluster-scoped objects outlive the namespaces: guard them.
    let cluster_role =
        ObjectGuard::apply(&world.kubectl, &manifest, "clusterrole", &account, None)?;
    world.guards.push(cluster_role);
    world.guards.push(ObjectGuard::apply(
        &world.kubectl,
        &manifest,
        "clusterrolebinding",
        &account,
        None,
    )?);

    // A kubeconfig with only the ServiceAccount's token.
    let token = world.kubectl.run(&[
        "create",
        "token",
        &account,
        "-n",
        world.install.name(),
        "--duration",
        "1h",
    ])?;
    let admin: Value = serde_json::from_str(
        &world
            .kubectl
            .run(&["config", "view", "--raw", "--minify", "-o", "json"])?,
    )
    .map_err(|e| LabError::parse("kubectl config view", e))?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": "speaker", "user": {"token": token.trim()}}],
        "contexts": [{"name": "speaker", "context": {"cluster": "lab", "user": "speaker"}}],
        "current-context": "speaker",
    });
    let path = world.lab.log_dir().join("speaker-sa.kubeconfig");
    std::fs::write(&path, kubeconfig.to_string())
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;

    world.start_speaker_with_kubeconfig(1, &path)?;
    world.apply_service(&world.service("rbac", "rbac", "Cluster"), &["203.0.113.16"])?;
    world.route_to("203.0.113.16", 1)?;
    let reply =
        world
            .lab
            .wait_client_get(parse_ip("203.0.113.16")?, SERVICE_PORT, SETUP_TIMEOUT)?;
    assert_eq!(reply.pod, "rbac-1");
    assert_eq!(
        world.metric(1, "herald_speaker_membership_running")?,
        1.0,
        "the speaker should have read the memberlist Secret"
    );
    let log = world.speaker_mut(1)?.log();
    assert!(
        !log.contains("forbidden"),
        "the speaker hit a permission error:\n{log}"
    );

    // Exactly enough: what it needs, and none of what it must not have.
    let who = format!("system:serviceaccount:{}:{account}", world.install.name());
    let can = |args: &[&str]| -> Result<bool> {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend(["--as", who.as_str()]);
        let out = world.kubectl.run_unchecked(&all, None)?;
        Ok(out.stdout.trim() == "yes")
    };
    let ns = world.install.name();
    let secret = format!("secret/{MEMBERLIST_SECRET}");
    let allowed: [&[&str]; 6] = [
        &["watch", "services", "--all-namespaces"],
        &[
            "list",
            "endpointslices.discovery.k8s.io",
            "--all-namespaces",
        ],
        &["watch", "nodes"],
        &["list", "ipaddresspools.herald.dev", "-n", ns],
        &["get", &secret, "-n", ns],
        &["create", "events.events.k8s.io", "-n", world.apps.name()],
    ];
    for args in allowed {
        assert!(can(args)?, "should be allowed: {args:?}");
    }
    let denied: [&[&str]; 8] = [
        &["list", "secrets", "--all-namespaces"],
        &["list", "secrets", "-n", ns],
        &["get", "secrets/other", "-n", ns],
        &["update", "services", "-n", world.apps.name()],
        &[
            "patch",
            "services",
            "--subresource=status",
            "-n",
            world.apps.name(),
        ],
        &["delete", "nodes"],
        &["list", "ipaddresspools.herald.dev", "-n", world.apps.name()],
        &["update", "ipaddresspools.herald.dev", "-n", ns],
    ];
    for args in denied {
        assert!(!can(args)?, "should be denied: {args:?}");
    }
    Ok(())
}

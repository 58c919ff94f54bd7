//! Rendering a [`Ruleset`] as `nft -f` text: a full, atomic rebuild of `table inet herald`,
//! or the minimal script that turns one ruleset into another.
//!
//! Layout of the table (the same idea as kube-proxy's nftables mode, written here):
//!
//! - `service-ips-v4` / `service-ips-v6`: verdict maps keyed
//!   `address . inet_proto . inet_service`, each element `goto`-ing a per-service-port chain;
//! - `svc4-…` / `svc6-…` chains, one per Service port and family: a cascade of rules
//!   `numgen random mod (N-k) 0 … dnat ip to addr:port` picks one ready endpoint uniformly
//!   per new connection and DNATs to it (`dnat ip6 to [addr]:port` for IPv6), first setting
//!   the masquerade mark when the endpoint is on another node (`Cluster` policy). Why not
//!   kube-proxy's per-endpoint chains and `numgen … vmap`: see [`super::ruleset`];
//! - `prerouting` (traffic arriving from outside) and `output` (traffic this node sends to an
//!   external address) at priority `dstnat - 10` = -110 (written as a number for `output`,
//!   where nft accepts no `dstnat` keyword). kube-proxy's nat chains (nftables
//!   and iptables modes) sit at `dstnat` = -100; a connection is bound by the first NAT rule
//!   that matches it, so where both run Herald's DNAT wins;
//! - `postrouting` at `srcnat - 10`: clears the mark and masquerades marked packets;
//! - `no-endpoints-v4` / `-v6` sets: `Cluster` Services with no ready endpoint, rejected
//!   (ICMP port unreachable) from `input`, `forward` and `output` filter chains, so clients
//!   fail fast instead of timing out.
//!
//! Every script is one `nft -f` transaction: the kernel applies all of it or none of it.
//! Pure: produces text, runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::ruleset::{Ruleset, ServiceChain, TABLE_FAMILY, TABLE_NAME};
use crate::planner::ForwardKey;

pub const MAP_SERVICES_V4: &str = "service-ips-v4";
pub const MAP_SERVICES_V6: &str = "service-ips-v6";
pub const SET_NO_ENDPOINTS_V4: &str = "no-endpoints-v4";
pub const SET_NO_ENDPOINTS_V6: &str = "no-endpoints-v6";
pub const CHAIN_NO_ENDPOINTS_CHECK: &str = "no-endpoints-check";

/// Priority of the prerouting DNAT chain: ten before `dstnat` (-100), where kube-proxy's is.
pub const DNAT_PRIORITY: &str = "dstnat - 10";
/// The same number for the output hook, where nft does not accept the `dstnat` keyword.
pub const DNAT_OUTPUT_PRIORITY: &str = "-110";
/// Priority of the masquerade chain: ten before `srcnat` (100).
pub const SNAT_PRIORITY: &str = "srcnat - 10";
/// Priority of the reject chains: ten before `filter` (0).
pub const FILTER_PRIORITY: &str = "filter - 10";

/// A chain as rendered: its name, the hook line of a base chain, and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChain {
    pub name: String,
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

/// Every chain of the table, in the order a full render declares them: service chains, then
/// the fixed chains (which reference the maps).
pub fn all_chains(ruleset: &Ruleset) -> Vec<RenderedChain> {
    let mut chains = Vec::with_capacity(ruleset.service_chains.len() + 7);
    for (name, service) in &ruleset.service_chains {
        chains.push(RenderedChain {
            name: name.clone(),
            hook: None,
            rules: service_rules(service, ruleset.masquerade_mark),
        });
    }
    chains.extend(fixed_chains(ruleset.masquerade_mark));
    chains
}

fn fixed_chains(mark: u32) -> Vec<RenderedChain> {
    let dispatch = vec![
        format!("ip daddr . meta l4proto . th dport vmap @{MAP_SERVICES_V4}"),
        format!("ip6 daddr . meta l4proto . th dport vmap @{MAP_SERVICES_V6}"),
    ];
    let base =
        |name: &str, kind: &str, hook: &str, priority: &str, rules: Vec<String>| RenderedChain {
            name: name.to_string(),
            hook: Some(format!(
                "type {kind} hook {hook} priority {priority}; policy accept;"
            )),
            rules,
        };
    let check = vec![format!("jump {CHAIN_NO_ENDPOINTS_CHECK}")];
    vec![
        RenderedChain {
            name: CHAIN_NO_ENDPOINTS_CHECK.to_string(),
            hook: None,
            rules: vec![
                format!("ip daddr . meta l4proto . th dport @{SET_NO_ENDPOINTS_V4} reject"),
                format!("ip6 daddr . meta l4proto . th dport @{SET_NO_ENDPOINTS_V6} reject"),
            ],
        },
        base(
            "prerouting",
            "nat",
            "prerouting",
            DNAT_PRIORITY,
            dispatch.clone(),
        ),
        base("output", "nat", "output", DNAT_OUTPUT_PRIORITY, dispatch),
        base(
            "postrouting",
            "nat",
            "postrouting",
            SNAT_PRIORITY,
            vec![
                format!("meta mark & {mark:#010x} == 0 return"),
                // Clear the bit so a packet that re-enters (e.g. encapsulated) is not
                // masqueraded twice.
                format!("meta mark set meta mark ^ {mark:#010x}"),
                "masquerade fully-random".to_string(),
            ],
        ),
        base(
            "filter-input",
            "filter",
            "input",
            FILTER_PRIORITY,
            check.clone(),
        ),
        base(
            "filter-forward",
            "filter",
            "forward",
            FILTER_PRIORITY,
            check.clone(),
        ),
        base("filter-output", "filter", "output", FILTER_PRIORITY, check),
    ]
}

/// One rule per endpoint. Rule k of N draws `numgen random mod (N-k)` and takes endpoint k
/// on 0; the last rule takes what is left. Endpoint k is thus chosen with probability
/// (1 - 1/N)(1 - 1/(N-1))…(1/(N-k)) = 1/N: uniform, with no set involved. A connection's
/// first packet evaluates at most N rules; nat chains never see the later ones.
fn service_rules(service: &ServiceChain, mark: u32) -> Vec<String> {
    let count = service.backends.len();
    service
        .backends
        .iter()
        .enumerate()
        .map(|(k, backend)| {
            let mut rule = format!("meta l4proto {}", service.protocol.nft_name());
            if k + 1 < count {
                rule.push_str(&format!(" numgen random mod {} 0", count - k));
            }
            if backend.masquerade {
                rule.push_str(&format!(" meta mark set meta mark | {mark:#010x}"));
            }
            match backend.address {
                IpAddr::V4(v4) => rule.push_str(&format!(" dnat ip to {v4}:{}", backend.port)),
                IpAddr::V6(v6) => rule.push_str(&format!(" dnat ip6 to [{v6}]:{}", backend.port)),
            }
            rule
        })
        .collect()
}

/// `203.0.113.10 . tcp . 80`
fn element_key(key: &ForwardKey) -> String {
    format!(
        "{} . {} . {}",
        key.address,
        key.protocol.nft_name(),
        key.port
    )
}

fn map_element(key: &ForwardKey, chain: &str) -> String {
    format!("{} : goto {chain}", element_key(key))
}

/// Writes `elements = { a,\n b }` style lists, one element per line for readable diffs.
fn write_element_block(out: &mut String, indent: &str, elements: &[String]) {
    if elements.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}elements = {{");
    let last = elements.len() - 1;
    for (i, element) in elements.iter().enumerate() {
        let separator = if i == last { "" } else { "," };
        let _ = writeln!(out, "{indent}\t{element}{separator}");
    }
    let _ = writeln!(out, "{indent}}}");
}

/// Items keyed by forwarding key, split into (IPv4, IPv6).
type ByFamily<'a, T> = (Vec<(&'a ForwardKey, T)>, Vec<(&'a ForwardKey, T)>);

fn split_by_family<'a, T>(items: impl Iterator<Item = (&'a ForwardKey, T)>) -> ByFamily<'a, T> {
    items.partition(|(key, _)| key.address.is_ipv4())
}

/// The whole table as one atomic transaction: create-if-missing, delete, and declare anew,
/// so stale chains or elements from any earlier state cannot survive.
pub fn render_full(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Herald forwarding ruleset: generated, do not edit.");
    let _ = writeln!(out, "add table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "delete table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "table {TABLE_FAMILY} {TABLE_NAME} {{");
    let chains = all_chains(ruleset);
    let (fixed, generated): (Vec<_>, Vec<_>) =
        chains.into_iter().partition(|c| is_fixed_chain(&c.name));
    for chain in &generated {
        write_chain(&mut out, chain);
    }
    let (v4, v6) = split_by_family(ruleset.services.iter());
    for (name, family, elements) in [
        (MAP_SERVICES_V4, "ipv4_addr", v4),
        (MAP_SERVICES_V6, "ipv6_addr", v6),
    ] {
        let _ = writeln!(out, "\tmap {name} {{");
        let _ = writeln!(
            out,
            "\t\ttype {family} . inet_proto . inet_service : verdict"
        );
        let rendered: Vec<String> = elements.iter().map(|(k, c)| map_element(k, c)).collect();
        write_element_block(&mut out, "\t\t", &rendered);
        let _ = writeln!(out, "\t}}");
    }
    let (v4, v6) = split_by_family(ruleset.no_endpoints.iter().map(|k| (k, ())));
    for (name, family, elements) in [
        (SET_NO_ENDPOINTS_V4, "ipv4_addr", v4),
        (SET_NO_ENDPOINTS_V6, "ipv6_addr", v6),
    ] {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype {family} . inet_proto . inet_service");
        let rendered: Vec<String> = elements.iter().map(|(k, ())| element_key(k)).collect();
        write_element_block(&mut out, "\t\t", &rendered);
        let _ = writeln!(out, "\t}}");
    }
    for chain in &fixed {
        write_chain(&mut out, chain);
    }
    let _ = writeln!(out, "}}");
    out
}

/// Names of the chains every ruleset has (the rest are generated per service/endpoint).
pub fn is_fixed_chain(name: &str) -> bool {
    matches!(
        name,
        CHAIN_NO_ENDPOINTS_CHECK
            | "prerouting"
            | "output"
            | "postrouting"
            | "filter-input"
            | "filter-forward"
            | "filter-output"
    )
}

fn write_chain(out: &mut String, chain: &RenderedChain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(hook) = &chain.hook {
        let _ = writeln!(out, "\t\t{hook}");
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{rule}");
    }
    let _ = writeln!(out, "\t}}");
}

/// Writes `add chain` + `add rule`s for a chain that does not exist yet.
fn add_chain(out: &mut String, name: &str, rules: &[String]) {
    let _ = writeln!(out, "add chain {TABLE_FAMILY} {TABLE_NAME} {name}");
    add_rules(out, name, rules);
}

fn add_rules(out: &mut String, name: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule {TABLE_FAMILY} {TABLE_NAME} {name} {rule}");
    }
}

/// Flushes and deletes a chain (flushing first keeps older kernels, which refuse to delete
/// a chain that still has rules, happy).
fn delete_chain(out: &mut String, name: &str) {
    let _ = writeln!(out, "flush chain {TABLE_FAMILY} {TABLE_NAME} {name}");
    let _ = writeln!(out, "delete chain {TABLE_FAMILY} {TABLE_NAME} {name}");
}

fn element_command(out: &mut String, verb: &str, set: &str, elements: &[String]) {
    if elements.is_empty() {
        return;
    }
    let _ = writeln!(out, "{verb} element {TABLE_FAMILY} {TABLE_NAME} {set} {{");
    let last = elements.len() - 1;
    for (i, element) in elements.iter().enumerate() {
        let separator = if i == last { "" } else { "," };
        let _ = writeln!(out, "\t{element}{separator}");
    }
    let _ = writeln!(out, "}}");
}

/// What changed between two rulesets, as counts (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateSummary {
    pub elements_added: usize,
    pub elements_removed: usize,
    pub chains_added: usize,
    pub chains_replaced: usize,
    pub chains_removed: usize,
}

/// The minimal script turning `old` (what the kernel holds) into `new`, or `None` when they
/// are equal. A change of the masquerade mark touches every chain, so it yields a full render.
///
/// Order inside the one transaction matters, because the kernel refuses to delete what is
/// still referenced: (1) new and changed service chains (changed ones are flushed and
/// refilled), (2) map and set elements (a changed element is deleted and re-added: adding
/// over an existing key with another verdict fails), (3) service chains no element points to
/// any more.
pub fn render_update(old: &Ruleset, new: &Ruleset) -> Option<(String, UpdateSummary)> {
    if old == new {
        return None;
    }
    if old.masquerade_mark != new.masquerade_mark {
        let summary = UpdateSummary {
            chains_replaced: new.service_chains.len(),
            ..Default::default()
        };
        return Some((render_full(new), summary));
    }
    let mut summary = UpdateSummary::default();
    let mut out = String::new();
    let _ = writeln!(out, "# Herald forwarding update: generated, do not edit.");
    for (name, service) in &new.service_chains {
        match old.service_chains.get(name) {
            None => {
                add_chain(&mut out, name, &service_rules(service, new.masquerade_mark));
                summary.chains_added += 1;
            }
            Some(previous) if previous != service => {
                let _ = writeln!(out, "flush chain {TABLE_FAMILY} {TABLE_NAME} {name}");
                add_rules(&mut out, name, &service_rules(service, new.masquerade_mark));
                summary.chains_replaced += 1;
            }
            Some(_) => {}
        }
    }
    write_map_changes(&mut out, &mut summary, &old.services, &new.services);
    write_set_changes(&mut out, &mut summary, &old.no_endpoints, &new.no_endpoints);
    for name in old.service_chains.keys() {
        if !new.service_chains.contains_key(name) {
            delete_chain(&mut out, name);
            summary.chains_removed += 1;
        }
    }
    Some((out, summary))
}

fn write_map_changes(
    out: &mut String,
    summary: &mut UpdateSummary,
    old: &BTreeMap<ForwardKey, String>,
    new: &BTreeMap<ForwardKey, String>,
) {
    for (map, ipv4) in [(MAP_SERVICES_V4, true), (MAP_SERVICES_V6, false)] {
        let removed: Vec<String> = old
            .iter()
            .filter(|(k, _)| k.address.is_ipv4() == ipv4)
            .filter(|(k, chain)| new.get(*k) != Some(*chain))
            .map(|(k, _)| element_key(k))
            .collect();
        let added: Vec<String> = new
            .iter()
            .filter(|(k, _)| k.address.is_ipv4() == ipv4)
            .filter(|(k, chain)| old.get(*k) != Some(*chain))
            .map(|(k, chain)| map_element(k, chain))
            .collect();
        summary.elements_removed += removed.len();
        summary.elements_added += added.len();
        element_command(out, "delete", map, &removed);
        element_command(out, "add", map, &added);
    }
}

fn write_set_changes(
    out: &mut String,
    summary: &mut UpdateSummary,
    old: &BTreeSet<ForwardKey>,
    new: &BTreeSet<ForwardKey>,
) {
    for (set, ipv4) in [(SET_NO_ENDPOINTS_V4, true), (SET_NO_ENDPOINTS_V6, false)] {
        let removed: Vec<String> = old
            .difference(new)
            .filter(|k| k.address.is_ipv4() == ipv4)
            .map(element_key)
            .collect();
        let added: Vec<String> = new
            .difference(old)
            .filter(|k| k.address.is_ipv4() == ipv4)
            .map(element_key)
            .collect();
        summary.elements_removed += removed.len();
        summary.elements_added += added.len();
        element_command(out, "delete", set, &removed);
        element_command(out, "add", set, &added);
    }
}

/// Removes Herald's table (shutdown with forwarding turned off, or a clean uninstall).
/// Creating it first makes the script succeed whether or not the table exists.
pub fn render_teardown() -> String {
    format!("add table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarding::ruleset::DEFAULT_MASQUERADE_MARK;
    use crate::model::{Protocol, ServiceKey};
    use crate::planner::{Backend, ForwardTarget};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn key(address: &str, port: u16) -> ForwardKey {
        ForwardKey {
            address: ip(address),
            protocol: Protocol::Tcp,
            port,
        }
    }

    fn target(name: &str, backends: &[(&str, bool)]) -> ForwardTarget {
        ForwardTarget {
            service: ServiceKey::new("default", name),
            port_name: "http".into(),
            backends: backends
                .iter()
                .map(|(a, m)| Backend {
                    address: ip(a),
                    port: 8080,
                    masquerade: *m,
                })
                .collect(),
        }
    }

    fn ruleset(entries: &[(ForwardKey, ForwardTarget)]) -> Ruleset {
        let forwarding: BTreeMap<ForwardKey, ForwardTarget> = entries.iter().cloned().collect();
        Ruleset::from_plan(&forwarding, DEFAULT_MASQUERADE_MARK)
    }

    #[test]
    fn a_full_render_rebuilds_the_table_in_one_transaction() {
        let text = render_full(&ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", false)]),
        )]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "add table inet herald");
        assert_eq!(lines[2], "delete table inet herald");
        assert_eq!(lines[3], "table inet herald {");
        assert!(text.contains("203.0.113.10 . tcp . 80 : goto svc4-"));
        assert!(text.contains("meta l4proto tcp dnat ip to 198.18.1.5:8080"));
        assert!(text.contains("type nat hook prerouting priority dstnat - 10; policy accept;"));
    }

    fn service_chain_rules(ruleset: &Ruleset) -> Vec<String> {
        all_chains(ruleset)
            .into_iter()
            .find(|c| c.name.starts_with("svc4-"))
            .expect("a service chain")
            .rules
    }

    #[test]
    fn several_endpoints_are_picked_by_a_cascade_and_one_directly() {
        let three = ruleset(&[(
            key("203.0.113.10", 80),
            target(
                "web",
                &[
                    ("198.18.1.5", false),
                    ("198.18.2.5", true),
                    ("198.18.3.5", true),
                ],
            ),
        )]);
        let rules = service_chain_rules(&three);
        assert_eq!(
            rules,
            vec![
                "meta l4proto tcp numgen random mod 3 0 dnat ip to 198.18.1.5:8080",
                "meta l4proto tcp numgen random mod 2 0 meta mark set meta mark | 0x00002000 \
                 dnat ip to 198.18.2.5:8080",
                "meta l4proto tcp meta mark set meta mark | 0x00002000 dnat ip to 198.18.3.5:8080",
            ]
        );
        let one = render_full(&ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", false)]),
        )]));
        assert!(!one.contains("numgen"));
    }

    #[test]
    fn the_rendered_cascade_picks_each_endpoint_with_probability_one_over_n() {
        for n in 2..=12u64 {
            let addresses: Vec<String> = (0..n).map(|i| format!("198.18.1.{}", i + 1)).collect();
            let backends: Vec<(&str, bool)> =
                addresses.iter().map(|a| (a.as_str(), false)).collect();
            let rules = service_chain_rules(&ruleset(&[(
                key("203.0.113.10", 80),
                target("web", &backends),
            )]));
            assert_eq!(rules.len() as u64, n);
            // P(rule k taken) = (1/m_k) * prod_{j<k} (1 - 1/m_j), with m the rule's modulus
            // (a rule without numgen takes everything left: m = 1). Exact fractions.
            let moduli: Vec<u64> = rules
                .iter()
                .map(|r| {
                    r.split_once("numgen random mod ")
                        .and_then(|(_, rest)| rest.split(' ').next())
                        .map_or(1, |m| m.parse().expect("modulus"))
                })
                .collect();
            let (mut left_num, mut left_den) = (1u64, 1u64);
            for (k, m) in moduli.iter().enumerate() {
                let (num, den) = (left_num, left_den * m);
                assert_eq!(num * n, den, "endpoint {k} of {n} via {rules:?}");
                left_num *= m - 1;
                left_den *= m;
            }
            assert_eq!(left_num, 0, "every connection is placed");
        }
    }

    #[test]
    fn only_remote_endpoints_set_the_masquerade_mark() {
        let text = render_full(&ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", false), ("198.18.2.5", true)]),
        )]));
        let marks = text.matches("meta mark set meta mark | 0x00002000").count();
        assert_eq!(marks, 1, "{text}");
    }

    #[test]
    fn ipv6_endpoints_use_bracketed_dnat_and_the_v6_map() {
        let text = render_full(&ruleset(&[(
            key("2001:db8:100::10", 443),
            target("web", &[("2001:db8:244:1::5", false)]),
        )]));
        assert!(text.contains("dnat ip6 to [2001:db8:244:1::5]:8080"));
        let v6_map = text.split("map service-ips-v6").nth(1).unwrap_or_default();
        assert!(v6_map.contains("2001:db8:100::10 . tcp . 443 : goto svc6-"));
    }

    #[test]
    fn equal_rulesets_need_no_update() {
        let a = ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", false)]),
        )]);
        assert!(render_update(&a, &a.clone()).is_none());
    }

    #[test]
    fn adding_an_endpoint_replaces_only_that_service_chain() {
        let old = ruleset(&[
            (
                key("203.0.113.10", 80),
                target("web", &[("198.18.1.5", false)]),
            ),
            (
                key("203.0.113.11", 80),
                target("api", &[("198.18.1.9", false)]),
            ),
        ]);
        let new = ruleset(&[
            (
                key("203.0.113.10", 80),
                target("web", &[("198.18.1.5", false), ("198.18.2.5", true)]),
            ),
            (
                key("203.0.113.11", 80),
                target("api", &[("198.18.1.9", false)]),
            ),
        ]);
        let (script, summary) = render_update(&old, &new).expect("a change");
        assert_eq!(
            summary,
            UpdateSummary {
                chains_replaced: 1,
                ..Default::default()
            }
        );
        assert!(!script.contains("element"), "{script}");
        assert!(!script.contains("api"), "{script}");
        let flush = script.find("flush chain inet herald svc4-").expect("flush");
        let refill = script
            .find("numgen random mod 2 0 dnat ip to 198.18.1.5:8080")
            .expect("refill");
        assert!(flush < refill);
    }

    #[test]
    fn a_new_service_adds_chains_before_the_element_that_points_at_them() {
        let old = ruleset(&[]);
        let new = ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", false)]),
        )]);
        let (script, summary) = render_update(&old, &new).expect("a change");
        assert_eq!(summary.elements_added, 1);
        assert_eq!(summary.chains_added, 1);
        let chain = script.find("add chain inet herald svc4-").expect("chain");
        let element = script
            .find("add element inet herald service-ips-v4")
            .expect("element");
        assert!(chain < element, "{script}");
    }

    #[test]
    fn a_deleted_service_removes_its_element_before_its_chain() {
        let old = ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", true)]),
        )]);
        let new = ruleset(&[]);
        let (script, summary) = render_update(&old, &new).expect("a change");
        assert_eq!(summary.elements_removed, 1);
        assert_eq!(summary.chains_removed, 1);
        let element = script.find("delete element").expect("element");
        let flush = script
            .find("flush chain inet herald svc4-")
            .expect("flush the service chain");
        let delete = script
            .find("delete chain inet herald svc4-")
            .expect("delete the service chain");
        assert!(element < flush && flush < delete, "{script}");
    }

    #[test]
    fn losing_the_last_endpoint_moves_the_key_from_the_map_to_the_reject_set() {
        let old = ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", true)]),
        )]);
        let new = ruleset(&[(key("203.0.113.10", 80), target("web", &[]))]);
        let (script, _) = render_update(&old, &new).expect("a change");
        assert!(
            script.contains(
                "delete element inet herald service-ips-v4 {\n\t203.0.113.10 . tcp . 80\n}"
            ),
            "{script}"
        );
        assert!(
            script.contains(
                "add element inet herald no-endpoints-v4 {\n\t203.0.113.10 . tcp . 80\n}"
            ),
            "{script}"
        );
    }

    #[test]
    fn a_changed_mark_rebuilds_everything() {
        let old = ruleset(&[(
            key("203.0.113.10", 80),
            target("web", &[("198.18.1.5", true)]),
        )]);
        let mut new = old.clone();
        new.masquerade_mark = 0x0001_0000;
        let (script, _) = render_update(&old, &new).expect("a change");
        assert!(script.contains("delete table inet herald"));
        assert!(script.contains("meta mark set meta mark | 0x00010000"));
    }
}

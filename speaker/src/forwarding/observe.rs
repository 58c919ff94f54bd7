//! Reading back what the kernel holds in `table inet herald`, for drift detection.
//!
//! Owns the parsing of `nft -j list table inet herald` output into a [`TableShape`] (chain
//! names with their rule counts, and the elements of the service maps and reject sets) and
//! the comparison with the shape a [`Ruleset`] should produce. Rule bodies are not compared
//! (nft normalises them when listing); a missing, extra or emptied chain, or any element
//! that differs, counts as drift and triggers a full rebuild. Pure: the JSON text comes in
//! as a string.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

use super::render::{
    MAP_SERVICES_V4, MAP_SERVICES_V6, SET_NO_ENDPOINTS_V4, SET_NO_ENDPOINTS_V6, all_chains,
};
use super::ruleset::{Ruleset, TABLE_FAMILY, TABLE_NAME};
use crate::model::Protocol;
use crate::planner::ForwardKey;

/// Why `nft -j` output could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error("nft JSON output is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("nft JSON output has no `nftables` array")]
    MissingRoot,
    #[error("unexpected element in {set}: {element}")]
    UnexpectedElement { set: String, element: String },
}

/// The comparable outline of Herald's table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableShape {
    /// Chain name -> number of rules.
    pub chains: BTreeMap<String, usize>,
    /// Service map elements (both families) -> target chain.
    pub services: BTreeMap<ForwardKey, String>,
    /// Reject set elements (both families).
    pub no_endpoints: BTreeSet<ForwardKey>,
    /// Names of the maps and sets present.
    pub sets: BTreeSet<String>,
}

/// The shape `ruleset` has once applied.
pub fn expected_shape(ruleset: &Ruleset) -> TableShape {
    TableShape {
        chains: all_chains(ruleset)
            .into_iter()
            .map(|c| (c.name, c.rules.len()))
            .collect(),
        services: ruleset.services.clone(),
        no_endpoints: ruleset.no_endpoints.clone(),
        sets: [
            MAP_SERVICES_V4,
            MAP_SERVICES_V6,
            SET_NO_ENDPOINTS_V4,
            SET_NO_ENDPOINTS_V6,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

/// Differences between the expected and the observed table, as human-readable lines
/// (bounded to `limit` entries, for logs). Empty means no drift.
pub fn drift(expected: &TableShape, observed: &TableShape, limit: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut note = |line: String| {
        if found.len() < limit {
            found.push(line);
        }
    };
    for set in expected.sets.difference(&observed.sets) {
        note(format!("set {set} missing"));
    }
    for (chain, rules) in &expected.chains {
        match observed.chains.get(chain) {
            None => note(format!("chain {chain} missing")),
            Some(n) if n != rules => note(format!("chain {chain} has {n} rules, expected {rules}")),
            Some(_) => {}
        }
    }
    for chain in observed.chains.keys() {
        if !expected.chains.contains_key(chain) {
            note(format!("chain {chain} unexpected"));
        }
    }
    for (key, chain) in &expected.services {
        if observed.services.get(key) != Some(chain) {
            note(format!(
                "element {} . {} . {} missing or wrong",
                key.address,
                key.protocol.nft_name(),
                key.port
            ));
        }
    }
    for key in observed.services.keys() {
        if !expected.services.contains_key(key) {
            note(format!(
                "element {} . {} . {} unexpected",
                key.address,
                key.protocol.nft_name(),
                key.port
            ));
        }
    }
    for key in expected
        .no_endpoints
        .symmetric_difference(&observed.no_endpoints)
    {
        note(format!(
            "reject element {} . {} . {} differs",
            key.address,
            key.protocol.nft_name(),
            key.port
        ));
    }
    found
}

/// Parses `nft -j list table inet herald`. Objects of other tables (there should be none)
/// are ignored.
pub fn parse_table_json(text: &str) -> Result<TableShape, ObserveError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| ObserveError::InvalidJson(e.to_string()))?;
    let objects = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or(ObserveError::MissingRoot)?;
    let mut shape = TableShape::default();
    let ours = |o: &Value| {
        o.get("family").and_then(Value::as_str) == Some(TABLE_FAMILY)
            && o.get("table").and_then(Value::as_str) == Some(TABLE_NAME)
    };
    for object in objects {
        if let Some(chain) = object.get("chain").filter(|c| ours(c)) {
            if let Some(name) = chain.get("name").and_then(Value::as_str) {
                shape.chains.entry(name.to_string()).or_insert(0);
            }
        } else if let Some(rule) = object.get("rule").filter(|r| ours(r)) {
            if let Some(name) = rule.get("chain").and_then(Value::as_str) {
                *shape.chains.entry(name.to_string()).or_insert(0) += 1;
            }
        } else if let Some(set) = object
            .get("map")
            .or_else(|| object.get("set"))
            .filter(|s| ours(s))
        {
            let Some(name) = set.get("name").and_then(Value::as_str) else {
                continue;
            };
            shape.sets.insert(name.to_string());
            let elements = set
                .get("elem")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match name {
                MAP_SERVICES_V4 | MAP_SERVICES_V6 => {
                    for element in elements {
                        let (key, chain) = parse_map_element(name, element)?;
                        shape.services.insert(key, chain);
                    }
                }
                SET_NO_ENDPOINTS_V4 | SET_NO_ENDPOINTS_V6 => {
                    for element in elements {
                        let key = parse_key(element).ok_or_else(|| unexpected(name, element))?;
                        shape.no_endpoints.insert(key);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(shape)
}

fn unexpected(set: &str, element: &Value) -> ObserveError {
    ObserveError::UnexpectedElement {
        set: set.to_string(),
        element: element.to_string(),
    }
}

/// A map element is `[key, verdict]`, the verdict `{"goto": {"target": "chain"}}`.
fn parse_map_element(set: &str, element: &Value) -> Result<(ForwardKey, String), ObserveError> {
    let pair = element.as_array().ok_or_else(|| unexpected(set, element))?;
    let [key, verdict] = pair.as_slice() else {
        return Err(unexpected(set, element));
    };
    let key = parse_key(key).ok_or_else(|| unexpected(set, element))?;
    let chain = verdict
        .get("goto")
        .or_else(|| verdict.get("jump"))
        .and_then(|v| v.get("target"))
        .and_then(Value::as_str)
        .ok_or_else(|| unexpected(set, element))?;
    Ok((key, chain.to_string()))
}

/// A key is `{"concat": ["203.0.113.10", "tcp", 80]}`; a wrapping `{"elem": {"val": …}}`
/// (elements with options) is unwrapped.
fn parse_key(value: &Value) -> Option<ForwardKey> {
    let value = value
        .get("elem")
        .and_then(|e| e.get("val"))
        .unwrap_or(value);
    let parts = value.get("concat")?.as_array()?;
    let [address, protocol, port] = parts.as_slice() else {
        return None;
    };
    let address: IpAddr = address.as_str()?.parse().ok()?;
    let protocol = match protocol {
        Value::String(name) => Protocol::from_nft_name(name)?,
        Value::Number(number) => match number.as_u64()? {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            _ => return None,
        },
        _ => return None,
    };
    let port = match port {
        Value::Number(number) => u16::try_from(number.as_u64()?).ok()?,
        Value::String(text) => text.parse().ok()?,
        _ => return None,
    };
    Some(ForwardKey {
        address,
        protocol,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from real `nft -j list table inet herald` output (nftables 1.0.6).
    const SAMPLE: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "herald", "handle": 1}},
      {"chain": {"family": "inet", "table": "herald", "name": "ep-a", "handle": 1}},
      {"chain": {"family": "inet", "table": "herald", "name": "svc4-b", "handle": 2}},
      {"map": {"family": "inet", "name": "service-ips-v4", "table": "herald",
               "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 10, "map": "verdict",
               "elem": [[{"concat": ["203.0.113.10", "tcp", 80]}, {"goto": {"target": "svc4-b"}}]]}},
      {"set": {"family": "inet", "name": "no-endpoints-v6", "table": "herald",
               "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 12,
               "elem": [{"concat": ["2001:db8:100::53", "udp", 53]}]}},
      {"rule": {"family": "inet", "table": "herald", "chain": "ep-a", "handle": 11, "expr": []}},
      {"rule": {"family": "inet", "table": "herald", "chain": "ep-a", "handle": 12, "expr": []}},
      {"rule": {"family": "inet", "table": "herald", "chain": "svc4-b", "handle": 13, "expr": []}}
    ]}"#;

    #[test]
    fn real_nft_json_is_parsed_into_chains_rule_counts_and_elements() {
        let shape = parse_table_json(SAMPLE).expect("sample parses");
        assert_eq!(shape.chains.get("ep-a"), Some(&2));
        assert_eq!(shape.chains.get("svc4-b"), Some(&1));
        let key = ForwardKey {
            address: "203.0.113.10".parse().expect("ip"),
            protocol: Protocol::Tcp,
            port: 80,
        };
        assert_eq!(shape.services.get(&key).map(String::as_str), Some("svc4-b"));
        assert!(shape.no_endpoints.contains(&ForwardKey {
            address: "2001:db8:100::53".parse().expect("ip"),
            protocol: Protocol::Udp,
            port: 53,
        }));
        assert!(shape.sets.contains("service-ips-v4"));
    }

    #[test]
    fn garbage_and_malformed_elements_are_errors_not_panics() {
        assert!(parse_table_json("not json").is_err());
        assert_eq!(parse_table_json("{}"), Err(ObserveError::MissingRoot));
        let bad = r#"{"nftables": [{"map": {"family": "inet", "table": "herald", "name": "service-ips-v4",
            "elem": [[{"concat": ["nope", "tcp", 80]}, {"goto": {"target": "x"}}]]}}]}"#;
        assert!(matches!(
            parse_table_json(bad),
            Err(ObserveError::UnexpectedElement { .. })
        ));
    }

    #[test]
    fn an_identical_table_shows_no_drift_and_a_missing_element_or_chain_does() {
        let expected = parse_table_json(SAMPLE).expect("sample parses");
        assert!(drift(&expected, &expected, 10).is_empty());
        let mut observed = expected.clone();
        observed.services.clear();
        observed.chains.remove("ep-a");
        let found = drift(&expected, &observed, 10);
        assert_eq!(found.len(), 2, "{found:?}");
        let mut extra = expected.clone();
        extra.chains.insert("ep-stale".into(), 1);
        assert_eq!(
            drift(&expected, &extra, 10),
            vec!["chain ep-stale unexpected".to_string()]
        );
    }

    #[test]
    fn drift_reports_are_bounded() {
        let expected = TableShape {
            chains: (0..100).map(|i| (format!("c{i}"), 1)).collect(),
            ..Default::default()
        };
        assert_eq!(drift(&expected, &TableShape::default(), 5).len(), 5);
    }
}

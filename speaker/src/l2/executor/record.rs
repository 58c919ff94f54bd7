//! The shared "current announcer" record: which node announces an address, kept on the
//! Service as an annotation. Pure: key and value encoding, and reading the records out of
//! Service metadata that the I/O edge has already fetched.
//!
//! # Why an annotation, one key per address
//!
//! The record is an input to every speaker's election (the sticky rule of
//! [`crate::l2::ownership`]), so it must survive other writers. The controller rewrites
//! `status.conditions` as a whole list with a JSON merge patch computed from its cache, which
//! can drop a condition another writer added a moment before; it touches
//! `metadata.annotations` only through a merge patch of its own key. A merge patch of one
//! annotation key changes nothing else, so the record is written that way. One key per
//! address (not one per Service) because the two addresses of a dual-stack Service may have
//! different owners: each owner writes only its own key and no write can undo another's.
//!
//! Key: `l2-announcer.herald.dev/<address label>`, the label being the IPv4 dotted quad or the
//! fully expanded IPv6 address with `-` for `:` (annotation names allow neither `:` nor a
//! leading `-`). Value: `<node>/<interface>[,<interface>...]`, e.g. `node-b/eth0`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use crate::model::ServiceKey;

/// Prefix of every record annotation key.
pub const RECORD_ANNOTATION_PREFIX: &str = "l2-announcer.herald.dev/";

/// Who announces an address, as the owner recorded it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub node: String,
    /// The interfaces the owner announces on (for people reading the Service).
    pub interfaces: Vec<String>,
}

impl Record {
    pub fn new(node: impl Into<String>, interfaces: impl IntoIterator<Item = String>) -> Self {
        Record {
            node: node.into(),
            interfaces: interfaces.into_iter().collect(),
        }
    }

    /// The annotation value.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.node, self.interfaces.join(","))
    }

    /// Reads an annotation value; `None` when it names no node. A value without `/` is a
    /// bare node name (hand-written records).
    pub fn decode(value: &str) -> Option<Self> {
        let (node, interfaces) = value.trim().split_once('/').unwrap_or((value.trim(), ""));
        if node.is_empty() {
            return None;
        }
        Some(Record {
            node: node.to_owned(),
            interfaces: interfaces
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The annotation key of the record for `address`.
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
    format!("{RECORD_ANNOTATION_PREFIX}{label}")
}

/// The address a record key is for; `None` for other keys and malformed labels.
pub fn address_of_key(key: &str) -> Option<IpAddr> {
    let label = key.strip_prefix(RECORD_ANNOTATION_PREFIX)?;
    if label.contains('-') {
        let segments: Vec<u16> = label
            .split('-')
            .map(|part| u16::from_str_radix(part, 16))
            .collect::<Result<_, _>>()
            .ok()?;
        let segments: [u16; 8] = segments.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(segments)))
    } else {
        label.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Every record on every Service, as read from their annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    by_service: BTreeMap<ServiceKey, BTreeMap<IpAddr, Record>>,
}

impl Records {
    /// Reads the records out of Services' annotations (`(key, annotations)` pairs); other
    /// annotations and unreadable records are ignored.
    pub fn from_annotations<'a>(
        services: impl IntoIterator<Item = (ServiceKey, &'a BTreeMap<String, String>)>,
    ) -> Self {
        let mut by_service = BTreeMap::new();
        for (service, annotations) in services {
            let records: BTreeMap<IpAddr, Record> = annotations
                .iter()
                .filter_map(|(key, value)| Some((address_of_key(key)?, Record::decode(value)?)))
                .collect();
            if !records.is_empty() {
                by_service.insert(service, records);
            }
        }
        Records { by_service }
    }

    /// Adds one record (tests and the executor's own pending writes).
    pub fn insert(&mut self, service: ServiceKey, address: IpAddr, record: Record) {
        self.by_service
            .entry(service)
            .or_default()
            .insert(address, record);
    }

    /// The record of `address` on `service`.
    pub fn get(&self, service: &ServiceKey, address: IpAddr) -> Option<&Record> {
        self.by_service.get(service)?.get(&address)
    }

    /// The node recorded as announcing `address`, over the Services that use it. Services
    /// sharing an address can disagree for a moment (one write landed, another not yet):
    /// a record naming one of `candidates` wins over one that does not, then the smallest
    /// node name — every speaker reads the same records and picks the same one.
    pub fn current_announcer<'a>(
        &'a self,
        address: IpAddr,
        services: &BTreeSet<ServiceKey>,
        candidates: &BTreeSet<String>,
    ) -> Option<&'a str> {
        services
            .iter()
            .filter_map(|service| self.get(service, address))
            .map(|record| record.node.as_str())
            .min_by_key(|node| (!candidates.contains(*node), *node))
    }

    /// Every `(service, address, record)`.
    pub fn iter(&self) -> impl Iterator<Item = (&ServiceKey, IpAddr, &Record)> {
        self.by_service.iter().flat_map(|(service, records)| {
            records
                .iter()
                .map(move |(address, record)| (service, *address, record))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn record_keys_are_valid_annotation_names_and_read_back_to_their_address() {
        let name_part = |key: &str| key.rsplit('/').next().unwrap_or_default().to_owned();
        for address in [
            "192.0.2.130",
            "2001:db8:1::100",
            "::1",
            "2001:db8:1:0:ffff::",
        ] {
            let key = record_key(ip(address));
            let name = name_part(&key);
            assert!(name.len() <= 63, "{key}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{key}"
            );
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphanumeric()),
                "{key}"
            );
            assert!(name.ends_with(|c: char| c.is_ascii_alphanumeric()), "{key}");
            assert_eq!(address_of_key(&key), Some(ip(address)));
        }
        assert_eq!(
            record_key(ip("2001:db8:1::100")),
            "l2-announcer.herald.dev/2001-0db8-0001-0000-0000-0000-0000-0100"
        );
        assert_eq!(
            record_key(ip("192.0.2.130")),
            "l2-announcer.herald.dev/192.0.2.130"
        );
    }

    #[test]
    fn other_annotations_and_malformed_record_keys_are_not_records() {
        for key in [
            "herald.dev/address-pool",
            "l2-announcer.herald.dev/",
            "l2-announcer.herald.dev/192.0.2",
            "l2-announcer.herald.dev/2001-db8",
            "l2-announcer.herald.dev/2001-0db8-0001-0000-0000-0000-0000-zzzz",
        ] {
            assert_eq!(address_of_key(key), None, "{key}");
        }
    }

    #[test]
    fn values_name_the_node_and_its_interfaces_and_a_bare_name_is_accepted() {
        let record = Record::new("node-b", ["eth0".to_owned(), "eth1".to_owned()]);
        assert_eq!(record.encode(), "node-b/eth0,eth1");
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode("node-c"), Some(Record::new("node-c", [])));
        assert_eq!(Record::decode(""), None);
        assert_eq!(Record::decode("/eth0"), None);
    }

    #[test]
    fn records_are_read_per_service_and_address_ignoring_unrelated_annotations() {
        let web = ServiceKey::new("lab", "web");
        let web_annotations = annotations(&[
            ("herald.dev/ip-allocated-from-pool", "l2"),
            ("l2-announcer.herald.dev/192.0.2.130", "node-a/eth0"),
            (
                "l2-announcer.herald.dev/2001-0db8-0001-0000-0000-0000-0000-0100",
                "node-b/eth0",
            ),
            ("l2-announcer.herald.dev/192.0.2.131", ""),
        ]);
        let records = Records::from_annotations([(web.clone(), &web_annotations)]);
        assert_eq!(
            records
                .get(&web, ip("192.0.2.130"))
                .map(|r| r.node.as_str()),
            Some("node-a")
        );
        assert_eq!(
            records
                .get(&web, ip("2001:db8:1::100"))
                .map(|r| r.node.as_str()),
            Some("node-b")
        );
        assert_eq!(records.get(&web, ip("192.0.2.131")), None);
        assert_eq!(records.iter().count(), 2);
    }

    #[test]
    fn services_sharing_an_address_that_disagree_resolve_the_same_way_everywhere() {
        let a = ServiceKey::new("lab", "a");
        let b = ServiceKey::new("lab", "b");
        let vip = ip("192.0.2.130");
        let mut records = Records::default();
        records.insert(a.clone(), vip, Record::new("node-dead", []));
        records.insert(b.clone(), vip, Record::new("node-c", []));
        let both: BTreeSet<ServiceKey> = [a.clone(), b.clone()].into();
        // The live candidate's record wins over the dead node's.
        assert_eq!(
            records.current_announcer(vip, &both, &names(&["node-a", "node-c"])),
            Some("node-c")
        );
        // Neither is a candidate: the smallest name, whatever the order.
        assert_eq!(
            records.current_announcer(vip, &both, &names(&["node-a"])),
            Some("node-c")
        );
        // Records on Services that do not use the address are not consulted.
        assert_eq!(
            records.current_announcer(vip, &[a].into(), &names(&["node-c"])),
            Some("node-dead")
        );
        assert_eq!(
            records.current_announcer(ip("192.0.2.131"), &both, &names(&["node-c"])),
            None
        );
    }
}

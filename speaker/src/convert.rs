//! Conversion at the edge: Kubernetes objects (k8s-openapi Service, EndpointSlice, Node) and
//! Herald's custom resources (`herald_crds::api`) into the speaker's validated [`Model`].
//!
//! Owns every interpretation of API fields the speaker relies on: which Services are
//! Herald's (load-balancer class), which addresses they carry (ingress IPs, `spec.externalIPs`),
//! how EndpointSlice ports and conditions map onto endpoints, how selectors, pools,
//! communities (with aliases) and peers are parsed. Invalid input never panics and never
//! aborts the whole conversion: the offending object (or the offending part of it) is left
//! out and a [`ConvertProblem`] says why, for a log line, an Event or a condition.
//! Pure: the caller hands in the objects it has watched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_crds::address::parse_entries;
use herald_crds::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community as CommunityResource, CommunityRef,
    CommunityValue, IPAddressPool, L2Advertisement as L2AdvertisementResource, LinkBandwidthMode,
};
use herald_crds::names::{
    ANNOTATION_ADDRESS_POOL, ANNOTATION_ALLOCATED_FROM_POOL, ANNOTATION_EXTERNAL_IPS_BOOKED,
    LABEL_EXCLUDE_FROM_EXTERNAL_LB, LOAD_BALANCER_CLASS,
};
use k8s_openapi::api::core::v1::{Node as NodeObject, Service as ServiceObject};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as LabelSelectorObject, ObjectMeta,
};

use crate::model::{
    AddressOrigin, BfdSettings, BgpAdvertisement, Community, Endpoint, EndpointConditions,
    EndpointPort, ExternalAddress, L2Advertisement, LabelSelector, Model, Node, Peer, Pool,
    PoolSelection, Protocol, SecretKeyRef, Service, ServiceKey, ServicePort, TrafficPolicy,
};

/// Label an EndpointSlice carries naming its Service (discovery.k8s.io/v1).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// RFC 4271 §4.2: a hold time is 0 or at least 3 seconds.
const MIN_HOLD_TIME_SECS: u64 = 3;

/// Which Services are Herald's, and where its resources live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// `spec.loadBalancerClass` Herald serves.
    pub load_balancer_class: String,
    /// Also serve LoadBalancer Services without a class.
    pub serve_classless: bool,
    /// Namespace of Herald's install (where BGP password Secrets are).
    pub install_namespace: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            load_balancer_class: LOAD_BALANCER_CLASS.to_string(),
            serve_classless: true,
            install_namespace: "herald-system".to_string(),
        }
    }
}

/// Everything the speaker watches, as the watchers hold it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterObjects<'a> {
    pub services: &'a [ServiceObject],
    pub endpoint_slices: &'a [EndpointSlice],
    pub nodes: &'a [NodeObject],
    pub pools: &'a [IPAddressPool],
    pub l2_advertisements: &'a [L2AdvertisementResource],
    pub bgp_advertisements: &'a [BGPAdvertisement],
    pub peers: &'a [BGPPeer],
    pub communities: &'a [CommunityResource],
    pub bfd_profiles: &'a [BFDProfile],
}

/// One object, or part of one, that was left out of the model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{kind} {name}: {reason}")]
pub struct ConvertProblem {
    /// `Service`, `EndpointSlice`, `Node`, `IPAddressPool`, …
    pub kind: &'static str,
    /// `namespace/name` for namespaced objects.
    pub name: String,
    pub reason: String,
}

/// The model and everything that could not go into it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversion {
    pub model: Model,
    pub problems: Vec<ConvertProblem>,
}

/// Collects problems while converting.
struct Problems(Vec<ConvertProblem>);

impl Problems {
    fn add(&mut self, kind: &'static str, name: &str, reason: impl Into<String>) {
        self.0.push(ConvertProblem {
            kind,
            name: name.to_string(),
            reason: reason.into(),
        });
    }
}

fn object_name(meta: &ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => "<unnamed>".to_string(),
    }
}

/// Converts the watched objects into the model.
pub fn convert(objects: &ClusterObjects<'_>, options: &ConvertOptions) -> Conversion {
    let mut problems = Problems(Vec::new());
    let mut model = Model::default();

    for object in objects.nodes {
        if let Some(node) = convert_node(object, &mut problems) {
            model.nodes.insert(node.name.clone(), node);
        }
    }
    for object in objects.pools {
        if let Some(pool) = convert_pool(object, &mut problems) {
            model.pools.insert(pool.name.clone(), pool);
        }
    }
    for object in objects.l2_advertisements {
        if let Some(advertisement) = convert_l2_advertisement(object, &mut problems) {
            model
                .l2_advertisements
                .insert(advertisement.name.clone(), advertisement);
        }
    }
    let aliases = community_aliases(objects.communities, &mut problems);
    for object in objects.bgp_advertisements {
        if let Some(advertisement) = convert_bgp_advertisement(object, &aliases, &mut problems) {
            model
                .bgp_advertisements
                .insert(advertisement.name.clone(), advertisement);
        }
    }
    for object in objects.peers {
        if let Some(mut peer) = convert_peer(object, options, &mut problems) {
            peer.bfd = resolve_bfd(object, objects.bfd_profiles, options, &mut problems);
            model.peers.insert(peer.name.clone(), peer);
        }
    }

    let mut endpoints = endpoints_by_service(objects.endpoint_slices, &mut problems);
    for object in objects.services {
        if let Some(mut service) = convert_service(object, options, &mut problems) {
            service.endpoints = endpoints.remove(&service.key).unwrap_or_default();
            model.services.insert(service.key.clone(), service);
        }
    }

    let mut problems = problems.0;
    problems.sort();
    Conversion { model, problems }
}

fn parse_protocol(text: Option<&str>) -> Result<Protocol, String> {
    text.unwrap_or("TCP")
        .parse::<Protocol>()
        .map_err(|e| e.to_string())
}

fn parse_port(number: i32) -> Result<u16, String> {
    u16::try_from(number)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {number} is outside 1-65535"))
}

fn convert_service(
    object: &ServiceObject,
    options: &ConvertOptions,
    problems: &mut Problems,
) -> Option<Service> {
    let name = object_name(&object.metadata);
    let (Some(namespace), Some(service_name)) = (&object.metadata.namespace, &object.metadata.name)
    else {
        problems.add("Service", &name, "has no namespace or name");
        return None;
    };
    let spec = object.spec.as_ref()?;
    let is_load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    let ours = match spec.load_balancer_class.as_deref() {
        Some(class) => class == options.load_balancer_class,
        None => options.serve_classless,
    };
    // A LoadBalancer Service of another implementation is that implementation's business,
    // external IPs included.
    if is_load_balancer && !ours {
        return None;
    }

    let mut addresses = Vec::new();
    if is_load_balancer {
        let ingress = object
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in ingress.into_iter().flatten() {
            let Some(text) = entry.ip.as_deref() else {
                continue; // hostname-only ingress: nothing to announce
            };
            match text.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ExternalAddress {
                    ip,
                    origin: AddressOrigin::LoadBalancerIngress,
                }),
                Err(_) => problems.add(
                    "Service",
                    &name,
                    format!("ingress IP {text:?} is not an address"),
                ),
            }
        }
    }
    // The controller judges `spec.externalIPs` (pool, sharing) and lists the ones it
    // accepted; an entry it did not (yet) accept is not announced.
    let booked = booked_external_ips(&object.metadata);
    for text in spec.external_ips.iter().flatten() {
        match text.parse::<IpAddr>() {
            Ok(ip) if booked.contains(&ip) => addresses.push(ExternalAddress {
                ip,
                origin: AddressOrigin::ExternalIp,
            }),
            Ok(_) => {}
            Err(_) => problems.add(
                "Service",
                &name,
                format!("externalIP {text:?} is not an address"),
            ),
        }
    }
    if addresses.is_empty() {
        return None;
    }

    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let converted = parse_protocol(port.protocol.as_deref()).and_then(|protocol| {
            Ok(ServicePort {
                name: port.name.clone().unwrap_or_default(),
                protocol,
                port: parse_port(port.port)?,
            })
        });
        match converted {
            Ok(port) => ports.push(port),
            Err(reason) => problems.add("Service", &name, reason),
        }
    }

    let traffic_policy = match spec.external_traffic_policy.as_deref() {
        Some("Local") => TrafficPolicy::Local,
        Some("Cluster") | None => TrafficPolicy::Cluster,
        Some(other) => {
            problems.add(
                "Service",
                &name,
                format!("unknown externalTrafficPolicy {other:?}, treated as Cluster"),
            );
            TrafficPolicy::Cluster
        }
    };
    let annotations = object.metadata.annotations.as_ref();
    let pool = annotations
        .and_then(|a| {
            a.get(ANNOTATION_ALLOCATED_FROM_POOL)
                .or_else(|| a.get(ANNOTATION_ADDRESS_POOL))
        })
        .cloned();

    Some(Service {
        key: ServiceKey::new(namespace.clone(), service_name.clone()),
        addresses,
        ports,
        traffic_policy,
        pool,
        endpoints: Vec::new(),
    })
}

/// Endpoints of every Service, merged over its EndpointSlices (FQDN slices are ignored).
fn endpoints_by_service(
    slices: &[EndpointSlice],
    problems: &mut Problems,
) -> BTreeMap<ServiceKey, Vec<Endpoint>> {
    let mut by_service: BTreeMap<ServiceKey, Vec<Endpoint>> = BTreeMap::new();
    for slice in slices {
        let name = object_name(&slice.metadata);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME));
        let (Some(namespace), Some(service)) = (&slice.metadata.namespace, service) else {
            continue; // not managed for a Service
        };
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let mut ports = Vec::new();
        for port in slice.ports.iter().flatten() {
            let Some(number) = port.port else {
                continue; // "all ports": meaningless for DNAT
            };
            let converted = parse_protocol(port.protocol.as_deref()).and_then(|protocol| {
                Ok(EndpointPort {
                    name: port.name.clone().unwrap_or_default(),
                    protocol,
                    port: parse_port(number)?,
                })
            });
            match converted {
                Ok(port) => ports.push(port),
                Err(reason) => problems.add("EndpointSlice", &name, reason),
            }
        }
        let key = ServiceKey::new(namespace.clone(), service.clone());
        for endpoint in slice.endpoints.iter().flatten() {
            let mut addresses = Vec::new();
            for text in &endpoint.addresses {
                match text.parse::<IpAddr>() {
                    Ok(ip) => addresses.push(ip),
                    Err(_) => problems.add(
                        "EndpointSlice",
                        &name,
                        format!("endpoint address {text:?} is not an IP address"),
                    ),
                }
            }
            if addresses.is_empty() {
                continue;
            }
            // discovery.k8s.io/v1: an unknown ready/serving state is read as ready, an
            // unknown terminating state as not terminating.
            let conditions = endpoint.conditions.as_ref();
            let conditions = EndpointConditions {
                ready: conditions.and_then(|c| c.ready).unwrap_or(true),
                serving: conditions.and_then(|c| c.serving).unwrap_or(true),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            };
            by_service.entry(key.clone()).or_default().push(Endpoint {
                addresses,
                node: endpoint.node_name.clone(),
                conditions,
                ports: ports.clone(),
            });
        }
    }
    by_service
}

fn convert_node(object: &NodeObject, problems: &mut Problems) -> Option<Node> {
    let Some(name) = object.metadata.name.clone() else {
        problems.add("Node", "<unnamed>", "has no name");
        return None;
    };
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let addresses = object
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .collect();
    Some(Node {
        excluded: labels.contains_key(LABEL_EXCLUDE_FROM_EXTERNAL_LB),
        name,
        labels,
        addresses,
    })
}

fn convert_pool(object: &IPAddressPool, problems: &mut Problems) -> Option<Pool> {
    let name = object_name(&object.metadata);
    let Some(pool_name) = object.metadata.name.clone() else {
        problems.add("IPAddressPool", &name, "has no name");
        return None;
    };
    let ranges = match parse_entries(&object.spec.addresses) {
        Ok(ranges) => ranges,
        Err(errors) => {
            // Keep the entries that parse: addresses already handed out from them stay
            // reachable while the operator fixes the rest.
            for error in &errors {
                problems.add("IPAddressPool", &name, error.to_string());
            }
            let bad: BTreeSet<usize> = errors.iter().map(|e| e.index).collect();
            object
                .spec
                .addresses
                .iter()
                .enumerate()
                .filter(|(i, _)| !bad.contains(i))
                .filter_map(|(_, entry)| entry.parse().ok())
                .collect()
        }
    };
    Some(Pool {
        name: pool_name,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        ranges,
        allow_external_ips: object.spec.allow_external_ips,
    })
}

fn convert_selector(selector: &LabelSelectorObject) -> Result<LabelSelector, String> {
    herald_crds::convert::label_selector(selector)
        .map_err(|unknown| format!("unknown selector operator {:?}", unknown.0))
}

fn convert_selectors(selectors: &[LabelSelectorObject]) -> Result<Vec<LabelSelector>, String> {
    selectors.iter().map(convert_selector).collect()
}

fn convert_l2_advertisement(
    object: &L2AdvertisementResource,
    problems: &mut Problems,
) -> Option<L2Advertisement> {
    let name = object_name(&object.metadata);
    let advertisement_name = object.metadata.name.clone()?;
    let spec = &object.spec;
    let selectors = convert_selectors(&spec.pool_selectors)
        .and_then(|pools| Ok((pools, convert_selectors(&spec.node_selectors)?)));
    match selectors {
        Ok((pool_selectors, node_selectors)) => Some(L2Advertisement {
            name: advertisement_name,
            pools: PoolSelection {
                names: spec.pools.iter().cloned().collect(),
                selectors: pool_selectors,
            },
            node_selectors,
            interfaces: spec.interfaces.iter().cloned().collect(),
        }),
        Err(reason) => {
            // A selector that cannot be evaluated must not widen the advertisement.
            problems.add(
                "L2Advertisement",
                &name,
                format!("{reason}; advertisement ignored"),
            );
            None
        }
    }
}

/// Alias name -> value, over every Community resource.
fn community_aliases(
    objects: &[CommunityResource],
    problems: &mut Problems,
) -> BTreeMap<String, CommunityValue> {
    let mut aliases = BTreeMap::new();
    for object in objects {
        let name = object_name(&object.metadata);
        for alias in &object.spec.communities {
            match CommunityValue::parse(&alias.value) {
                Ok(value) => {
                    if let Some(previous) = aliases.insert(alias.name.clone(), value)
                        && previous != value
                    {
                        problems.add(
                            "Community",
                            &name,
                            format!(
                                "alias {:?} is defined twice with different values",
                                alias.name
                            ),
                        );
                    }
                }
                Err(error) => problems.add(
                    "Community",
                    &name,
                    format!("alias {:?}: {error}", alias.name),
                ),
            }
        }
    }
    aliases
}

fn aggregation_length(value: i32, max: u8, field: &str) -> Result<u8, String> {
    u8::try_from(value)
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| format!("{field} {value} is outside 0-{max}"))
}

fn convert_bgp_advertisement(
    object: &BGPAdvertisement,
    aliases: &BTreeMap<String, CommunityValue>,
    problems: &mut Problems,
) -> Option<BgpAdvertisement> {
    let name = object_name(&object.metadata);
    let advertisement_name = object.metadata.name.clone()?;
    let spec = &object.spec;
    let converted = (|| -> Result<BgpAdvertisement, String> {
        let mut communities = BTreeSet::new();
        for text in &spec.communities {
            let value = match CommunityRef::parse(text).map_err(|e| e.to_string())? {
                CommunityRef::Value(value) => value,
                CommunityRef::Alias(alias) => *aliases.get(&alias).ok_or_else(|| {
                    format!("community alias {alias:?} is not defined by any Community")
                })?,
            };
            communities.insert(Community::from(value));
        }
        Ok(BgpAdvertisement {
            name: advertisement_name,
            pools: PoolSelection {
                names: spec.pools.iter().cloned().collect(),
                selectors: convert_selectors(&spec.pool_selectors)?,
            },
            node_selectors: convert_selectors(&spec.node_selectors)?,
            peers: spec.peers.iter().cloned().collect(),
            communities,
            local_pref: spec.local_pref,
            aggregation_length_v4: aggregation_length(
                spec.aggregation_length,
                32,
                "aggregationLength",
            )?,
            aggregation_length_v6: aggregation_length(
                spec.aggregation_length_v6,
                128,
                "aggregationLengthV6",
            )?,
            link_bandwidth: spec
                .link_bandwidth
                .as_ref()
                .is_some_and(|l| l.mode == LinkBandwidthMode::LocalEndpoints),
        })
    })();
    match converted {
        Ok(advertisement) => Some(advertisement),
        Err(reason) => {
            // Announcing without a community or to the wrong nodes could bypass the
            // operator's routing policy: leave the whole advertisement out.
            problems.add(
                "BGPAdvertisement",
                &name,
                format!("{reason}; advertisement ignored"),
            );
            None
        }
    }
}

fn seconds(duration: std::time::Duration, field: &str) -> Result<u16, String> {
    u16::try_from(duration.as_secs())
        .map_err(|_| format!("{field} {duration:?} is longer than 65535 s"))
}

/// The BFDProfile a peer names, from the peer's namespace. A missing profile leaves the peer
/// without BFD (its BGP session still runs) and is reported.
fn resolve_bfd(
    peer: &BGPPeer,
    profiles: &[BFDProfile],
    options: &ConvertOptions,
    problems: &mut Problems,
) -> Option<BfdSettings> {
    let wanted = peer.spec.bfd_profile.as_deref()?;
    let namespace = peer
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(&options.install_namespace);
    let found = profiles.iter().find(|p| {
        p.metadata.name.as_deref() == Some(wanted)
            && p.metadata
                .namespace
                .as_deref()
                .unwrap_or(&options.install_namespace)
                == namespace
    });
    let Some(profile) = found else {
        problems.add(
            "BGPPeer",
            &object_name(&peer.metadata),
            format!("BFDProfile {wanted:?} not found; the session runs without BFD"),
        );
        return None;
    };
    let spec = &profile.spec;
    Some(BfdSettings {
        profile: herald_bfd::Profile {
            desired_min_tx: spec.transmit_interval(),
            required_min_rx: spec.receive_interval(),
            detect_mult: spec.detect_multiplier(),
            passive: spec.passive_mode,
        },
        minimum_ttl: spec.minimum_ttl(),
        strict: spec.strict_mode,
        damping: herald_bfd::DampingConfig {
            initial: spec.damping_initial_wait(),
            max: spec.damping_maximum_wait(),
            stable_after: spec.damping_stable_time(),
        },
    })
}

fn convert_peer(
    object: &BGPPeer,
    options: &ConvertOptions,
    problems: &mut Problems,
) -> Option<Peer> {
    let name = object_name(&object.metadata);
    let peer_name = object.metadata.name.clone()?;
    let spec = &object.spec;
    let converted = (|| -> Result<Peer, String> {
        let peer_address = spec
            .peer_address
            .parse::<IpAddr>()
            .map_err(|_| format!("peerAddress {:?} is not an IP address", spec.peer_address))?;
        let source_address = spec
            .source_address
            .as_deref()
            .map(|text| {
                text.parse::<IpAddr>()
                    .map_err(|_| format!("sourceAddress {text:?} is not an IP address"))
            })
            .transpose()?;
        let router_id = spec
            .router_id
            .as_deref()
            .map(|text| {
                text.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| format!("routerID {text:?} is not an IPv4 address"))
            })
            .transpose()?;
        let hold = spec.hold_time().map_err(|e| format!("holdTime: {e}"))?;
        if hold.as_secs() != 0 && hold.as_secs() < MIN_HOLD_TIME_SECS {
            return Err(format!(
                "holdTime {hold:?} must be 0 or at least 3 s (RFC 4271 §4.2)"
            ));
        }
        let hold_time_secs = seconds(hold, "holdTime")?;
        // RFC 4271 §10 suggests a keepalive of one third of the hold time.
        let keepalive_time_secs = match spec
            .keepalive_time()
            .map_err(|e| format!("keepaliveTime: {e}"))?
        {
            Some(keepalive) => seconds(keepalive, "keepaliveTime")?,
            None => hold_time_secs / 3,
        };
        let connect_time_secs = seconds(
            spec.connect_time()
                .map_err(|e| format!("connectTime: {e}"))?,
            "connectTime",
        )?;
        Ok(Peer {
            name: peer_name,
            my_asn: spec.my_asn,
            peer_asn: spec.peer_asn,
            peer_address,
            peer_port: spec.peer_port,
            source_address,
            router_id,
            hold_time_secs,
            keepalive_time_secs,
            connect_time_secs,
            ebgp_multihop: spec.ebgp_multi_hop,
            password_secret: spec.password_secret.as_ref().map(|secret| SecretKeyRef {
                namespace: object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| options.install_namespace.clone()),
                name: secret.name.clone(),
                key: secret.key.clone(),
            }),
            node_selectors: convert_selectors(&spec.node_selectors)?,
            graceful_restart: spec.enable_graceful_restart,
            bfd: None,
        })
    })();
    match converted {
        Ok(peer) => Some(peer),
        Err(reason) => {
            problems.add("BGPPeer", &name, format!("{reason}; peer ignored"));
            None
        }
    }
}

/// The externalIPs the controller booked for the Service
/// ([`ANNOTATION_EXTERNAL_IPS_BOOKED`], comma separated); entries that do not parse are
/// ignored (the controller writes only addresses).
fn booked_external_ips(metadata: &ObjectMeta) -> BTreeSet<IpAddr> {
    metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(ANNOTATION_EXTERNAL_IPS_BOOKED))
        .map(|list| {
            list.split(',')
                .filter_map(|entry| entry.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

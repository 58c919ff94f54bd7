//! The translation of MetalLB manifests into Herald manifests (`herald migrate`).
//!
//! Owns the mapping field by field, the pinning of Services to the addresses MetalLB gave
//! them (so the switch moves no address), and the report of every field that has no Herald
//! counterpart, with what it meant and what to do instead. Input is a list of parsed
//! [`Document`]s; output is a list of JSON objects (Herald's `herald.dev/v1alpha1` kinds,
//! Secrets for clear-text BGP passwords, and Services with Herald annotations) plus the
//! report. Invalid input is an [`InputError`] naming the file and line. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use herald_crds::address::{self, AddressRange};
use herald_crds::api::{
    BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, Community, CommunityAlias,
    CommunityRef, CommunitySpec, CommunityValue, IPAddressPool, IPAddressPoolSpec, L2Advertisement,
    L2AdvertisementSpec, PasswordSecretRef, ServiceAllocation, format_duration,
};
use herald_crds::names;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::metallb::{self, Kind};
use crate::source::{Document, InputError, Location, strip_location};

/// Default namespace Herald's objects are written to (the chart's install namespace).
pub const DEFAULT_NAMESPACE: &str = "herald-system";

/// How `herald migrate` writes its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Namespace of the Herald objects (Herald's install namespace).
    pub namespace: String,
    /// Pass objects that are neither MetalLB objects nor Services through the report as
    /// skipped, instead of failing on them.
    pub skip_unknown: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            skip_unknown: false,
        }
    }
}

/// How serious a report entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Translated; for information.
    Note,
    /// Translated, but an operator must do something (copy a Secret, change a flag).
    Action,
    /// Not translated: the behaviour is lost unless the operator acts. `--strict` fails.
    Untranslated,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Action => "action",
            Severity::Untranslated => "untranslated",
        })
    }
}

/// One entry of the migration report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where the field was written.
    pub location: Location,
    /// The object, as `Kind namespace/name`.
    pub object: String,
    /// The field (`spec.vrf`, `metadata.annotations[metallb.io/address-pool]`).
    pub field: String,
    /// How serious.
    pub severity: Severity,
    /// What the field meant in MetalLB.
    pub meaning: String,
    /// What to do with Herald.
    pub todo: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {} {}\n    MetalLB: {}\n    Herald:  {}",
            self.location, self.severity, self.object, self.field, self.meaning, self.todo
        )
    }
}

/// The result of a translation.
#[derive(Debug, Clone, Default)]
pub struct Migration {
    /// The manifests to apply, in apply order (pools and aliases before what refers to them).
    pub objects: Vec<Value>,
    /// The report.
    pub findings: Vec<Finding>,
}

impl Migration {
    /// Whether anything could not be translated (what `--strict` fails on).
    pub fn has_untranslated(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Untranslated)
    }

    /// The manifests as one multi-document YAML text.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut text = String::new();
        for object in &self.objects {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(object)?);
        }
        Ok(text)
    }
}

/// Translates `documents`. On invalid input returns every error found (each with file and
/// line), so one run names them all.
pub fn translate(documents: &[Document], options: &Options) -> Result<Migration, Vec<InputError>> {
    let mut run = Run {
        options,
        migration: Migration::default(),
        errors: Vec::new(),
        by_kind: BTreeMap::new(),
    };
    for document in documents {
        run.document(document);
    }
    if !run.errors.is_empty() {
        return Err(run.errors);
    }
    let mut objects = Vec::new();
    for kind in ORDER {
        if let Some(list) = run.by_kind.remove(kind) {
            objects.extend(list);
        }
    }
    run.migration.objects = objects;
    Ok(run.migration)
}

/// Apply order of the output kinds.
const ORDER: [&str; 8] = [
    "Secret",
    "IPAddressPool",
    "Community",
    "BFDProfile",
    "BGPPeer",
    "BGPAdvertisement",
    "L2Advertisement",
    "Service",
];

struct Run<'a> {
    options: &'a Options,
    migration: Migration,
    errors: Vec<InputError>,
    by_kind: BTreeMap<&'static str, Vec<Value>>,
}

/// The per-object context of a translation: the document and the object's display name.
struct Ctx<'d> {
    doc: &'d Document,
    object: String,
}

impl Run<'_> {
    fn document(&mut self, doc: &Document) {
        let api_version = doc.value.get("apiVersion").and_then(Value::as_str);
        let kind = doc.value.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            self.errors.push(doc.error_at(
                &["kind"],
                "not a Kubernetes object: apiVersion and kind are required",
            ));
            return;
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if group.is_empty() && version == "v1" && kind == "Service" {
            self.service(doc);
            return;
        }
        if group == metallb::GROUP {
            if metallb::STATUS_KINDS.contains(&kind) {
                self.migration.findings.push(Finding {
                    location: doc.location(),
                    object: kind.to_owned(),
                    field: String::new(),
                    severity: Severity::Note,
                    meaning: "state MetalLB reports, not configuration".to_owned(),
                    todo: "nothing to translate; Herald reports the same through `herald status`"
                        .to_owned(),
                });
                return;
            }
            if let Some((_, hint)) = metallb::RETIRED_KINDS.iter().find(|(k, _)| *k == kind) {
                self.errors.push(doc.error_at(
                    &["kind"],
                    format!("{api_version} {kind} cannot be migrated: {hint}"),
                ));
                return;
            }
            let Some(known) = Kind::from_name(kind) else {
                self.errors.push(doc.error_at(
                    &["kind"],
                    format!(
                        "unknown MetalLB kind {kind:?} (known: IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, BFDProfile, Community)"
                    ),
                ));
                return;
            };
            if !known.versions().contains(&version) {
                self.errors.push(doc.error_at(
                    &["apiVersion"],
                    format!(
                        "{kind} is not served as {api_version}; MetalLB serves it as {}",
                        known
                            .versions()
                            .iter()
                            .map(|v| format!("{}/{v}", metallb::GROUP))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ));
                return;
            }
            self.metallb_object(doc, known, version);
            return;
        }
        if self.options.skip_unknown {
            self.migration.findings.push(Finding {
                location: doc.location(),
                object: format!("{kind} {}", object_name(&doc.value)),
                field: String::new(),
                severity: Severity::Note,
                meaning: "not a MetalLB object".to_owned(),
                todo: "skipped (--skip-unknown)".to_owned(),
            });
            return;
        }
        self.errors.push(doc.error_at(
            &["kind"],
            format!(
                "unknown kind {api_version} {kind}: herald migrate reads metallb.io objects and v1 Services (use --skip-unknown to pass over other objects)"
            ),
        ));
    }

    fn metallb_object(&mut self, doc: &Document, kind: Kind, version: &str) {
        let ctx = Ctx {
            doc,
            object: format!("{} {}", kind.name(), object_name(&doc.value)),
        };
        self.unknown_fields(&ctx, kind, version);
        let result = match kind {
            Kind::IPAddressPool => self.pool(&ctx),
            Kind::L2Advertisement => self.l2(&ctx),
            Kind::BGPAdvertisement => self.bgp_advertisement(&ctx),
            Kind::BGPPeer => self.peer(&ctx),
            Kind::BFDProfile => self.bfd_profile(&ctx),
            Kind::Community => self.community(&ctx),
        };
        if let Err(error) = result {
            self.errors.push(error);
        }
    }

    fn unknown_fields(&mut self, ctx: &Ctx<'_>, kind: Kind, version: &str) {
        let known = metallb::known_spec_fields(kind, version);
        let newest = kind.versions()[0];
        let in_newest = metallb::known_spec_fields(kind, newest);
        let Some(spec) = ctx.doc.value.get("spec").and_then(Value::as_object) else {
            return;
        };
        for key in spec.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            if in_newest.contains(&key.as_str()) {
                self.finding(
                    ctx,
                    &["spec", key],
                    Severity::Note,
                    format!(
                        "a field of {} {newest}, written in a {version} object",
                        kind.name()
                    ),
                    format!("translated as in {newest}"),
                );
                continue;
            }
            self.untranslated(
                ctx,
                &["spec", key],
                format!(
                    "a field MetalLB's {} {version} does not define",
                    kind.name()
                ),
                "dropped; check the spelling, or whether it belongs to another MetalLB release",
            );
        }
    }

    fn finding(
        &mut self,
        ctx: &Ctx<'_>,
        path: &[&str],
        severity: Severity,
        meaning: impl Into<String>,
        todo: impl Into<String>,
    ) {
        self.migration.findings.push(Finding {
            location: ctx.doc.location_of(path),
            object: ctx.object.clone(),
            field: path.join("."),
            severity,
            meaning: meaning.into(),
            todo: todo.into(),
        });
    }

    fn untranslated(
        &mut self,
        ctx: &Ctx<'_>,
        path: &[&str],
        meaning: impl Into<String>,
        todo: impl Into<String>,
    ) {
        self.finding(ctx, path, Severity::Untranslated, meaning, todo);
    }

    fn emit(&mut self, kind: &'static str, object: Value) {
        self.by_kind.entry(kind).or_default().push(object);
    }

    /// Metadata of the Herald object: the MetalLB name and labels, Herald's namespace.
    fn metadata(&self, ctx: &Ctx<'_>, meta: &metallb::Metadata) -> Result<ObjectMeta, InputError> {
        let name = meta
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ctx.doc.error_at(&["metadata"], "metadata.name is missing"))?;
        Ok(ObjectMeta {
            name: Some(name),
            namespace: Some(self.options.namespace.clone()),
            labels: meta.labels.clone().filter(|l| !l.is_empty()),
            ..ObjectMeta::default()
        })
    }

    fn pool(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::IPAddressPoolSpec> = typed(ctx.doc)?;
        let spec = required(ctx, object.spec)?;
        let mut bad = Vec::new();
        for (index, entry) in spec.addresses.iter().enumerate() {
            if let Err(error) = entry.trim().parse::<AddressRange>() {
                bad.push(format!("addresses[{index}] {entry:?}: {error}"));
            }
        }
        if !bad.is_empty() {
            return Err(ctx.doc.error_at(
                &["spec", "addresses"],
                format!("{}: invalid spec.addresses: {}", ctx.object, bad.join("; ")),
            ));
        }
        let allocation = spec.service_allocation.map(|a| {
            let priority = match a.priority {
                None | Some(0) => None,
                Some(p) => i32::try_from(p).ok(),
            };
            ServiceAllocation {
                priority,
                namespaces: a.namespaces,
                namespace_selectors: a.namespace_selectors,
                service_selectors: a.service_selectors,
            }
        });
        if let Some(p) = allocation
            .as_ref()
            .and(ctx.doc.value.pointer("/spec/serviceAllocation/priority"))
            && p.as_i64()
                .is_some_and(|p| !(0..=i64::from(i32::MAX)).contains(&p))
        {
            return Err(ctx.doc.error_at(
                &["spec", "serviceAllocation", "priority"],
                format!(
                    "{}: serviceAllocation.priority {p} is out of range (0..2147483647)",
                    ctx.object
                ),
            ));
        }
        let herald = IPAddressPool {
            metadata: self.metadata(ctx, &object.metadata)?,
            spec: IPAddressPoolSpec {
                addresses: spec.addresses.iter().map(|a| a.trim().to_owned()).collect(),
                auto_assign: spec.auto_assign.unwrap_or(true),
                avoid_buggy_ips: spec.avoid_buggy_ips.unwrap_or(false),
                allow_external_ips: false,
                service_allocation: allocation,
            },
            status: None,
        };
        self.emit("IPAddressPool", to_value(&herald, ctx)?);
        Ok(())
    }

    fn l2(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::L2AdvertisementSpec> = typed(ctx.doc)?;
        let spec = object.spec.unwrap_or_default();
        let herald = L2Advertisement {
            metadata: self.metadata(ctx, &object.metadata)?,
            spec: L2AdvertisementSpec {
                pools: spec.ip_address_pools,
                pool_selectors: spec.ip_address_pool_selectors,
                node_selectors: spec.node_selectors,
                interfaces: spec.interfaces,
            },
        };
        self.emit("L2Advertisement", to_value(&herald, ctx)?);
        Ok(())
    }

    fn bgp_advertisement(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::BGPAdvertisementSpec> = typed(ctx.doc)?;
        let spec = object.spec.unwrap_or_default();
        let length = |value: Option<i64>, max: i32, field: &str| -> Result<i32, InputError> {
            match value {
                None => Ok(max),
                Some(v) => i32::try_from(v)
                    .ok()
                    .filter(|v| (0..=max).contains(v))
                    .ok_or_else(|| {
                        ctx.doc.error_at(
                            &["spec", field],
                            format!(
                                "{}: spec.{field} {v} is out of range (0..{max})",
                                ctx.object
                            ),
                        )
                    }),
            }
        };
        let aggregation_length = length(spec.aggregation_length, 32, "aggregationLength")?;
        let aggregation_length_v6 = length(spec.aggregation_length_v6, 128, "aggregationLengthV6")?;
        for community in &spec.communities {
            CommunityRef::parse(community).map_err(|error| {
                ctx.doc.error_at(
                    &["spec", "communities"],
                    format!("{}: spec.communities: {error}", ctx.object),
                )
            })?;
        }
        let herald = BGPAdvertisement {
            metadata: self.metadata(ctx, &object.metadata)?,
            spec: BGPAdvertisementSpec {
                pools: spec.ip_address_pools,
                pool_selectors: spec.ip_address_pool_selectors,
                aggregation_length,
                aggregation_length_v6,
                // MetalLB treats 0 as "not set" (the field is omitted when empty).
                local_pref: spec.local_pref.filter(|p| *p != 0),
                communities: spec.communities,
                peers: spec.peers,
                node_selectors: spec.node_selectors,
                link_bandwidth: None,
            },
        };
        self.emit("BGPAdvertisement", to_value(&herald, ctx)?);
        Ok(())
    }

    /// A MetalLB duration (Go syntax) as Herald's whole-second text, or an error at `field`.
    /// A MetalLB duration (Go syntax) in whole seconds (a fraction is rounded up and
    /// reported), or an error at `field`.
    fn duration(
        &mut self,
        ctx: &Ctx<'_>,
        field: &str,
        text: Option<&str>,
    ) -> Result<Option<u64>, InputError> {
        let Some(text) = text else {
            return Ok(None);
        };
        let nanos = metallb::parse_go_duration(text).map_err(|error| {
            ctx.doc.error_at(
                &["spec", field],
                format!("{}: spec.{field}: {error}", ctx.object),
            )
        })?;
        let mut seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        if nanos % 1_000_000_000 != 0 {
            seconds = seconds.saturating_add(1);
            self.finding(
                ctx,
                &["spec", field],
                Severity::Action,
                format!("{field} {text}"),
                format!(
                    "BGP carries timers in whole seconds (RFC 4271 §4.2); Herald takes whole seconds only: written as {seconds}s"
                ),
            );
        }
        Ok(Some(seconds))
    }

    /// Checks the BGP timers against RFC 4271 §4.2 / §10 as Herald's schema does, so a
    /// translation the apiserver would refuse is an error here, at the MetalLB field.
    fn check_timers(
        &self,
        ctx: &Ctx<'_>,
        hold: Option<u64>,
        keepalive: Option<u64>,
        connect: Option<u64>,
    ) -> Result<(), InputError> {
        let error = |field: &str, message: String| {
            Err(ctx.doc.error_at(
                &["spec", field],
                format!("{}: spec.{field}: {message}", ctx.object),
            ))
        };
        if let Some(hold) = hold
            && hold != 0
            && !(3..=65535).contains(&hold)
        {
            return error(
                "holdTime",
                format!("{hold}s: a hold time is 0s or 3s..65535s (RFC 4271 §4.2)"),
            );
        }
        if let Some(keepalive) = keepalive {
            let hold = hold.unwrap_or(90);
            if (hold == 0 && keepalive != 0) || (hold != 0 && (keepalive == 0 || keepalive >= hold))
            {
                return error(
                    "keepaliveTime",
                    format!(
                        "{keepalive}s: the keepalive interval must be above 0s and below the hold time ({hold}s), or 0s with a hold time of 0s (RFC 4271 §10)"
                    ),
                );
            }
        }
        if let Some(connect) = connect
            && !(1..=65535).contains(&connect)
        {
            return error("connectTime", format!("{connect}s: must be 1s..65535s"));
        }
        Ok(())
    }

    fn peer(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::BGPPeerSpec> = typed(ctx.doc)?;
        let spec = required(ctx, object.spec)?;
        let metadata = self.metadata(ctx, &object.metadata)?;
        let name = metadata.name.clone().unwrap_or_default();

        let check_ip = |field: &str, text: &str| -> Result<(), InputError> {
            text.trim()
                .parse::<std::net::IpAddr>()
                .map(|_| ())
                .map_err(|_| {
                    ctx.doc.error_at(
                        &["spec", field],
                        format!("{}: spec.{field} {text:?} is not an IP address", ctx.object),
                    )
                })
        };
        check_ip("peerAddress", &spec.peer_address)?;
        if let Some(source) = &spec.source_address {
            check_ip("sourceAddress", source)?;
        }
        if let Some(id) = &spec.router_id
            && id.trim().parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(ctx.doc.error_at(
                &["spec", "routerID"],
                format!(
                    "{}: spec.routerID {id:?} is not an IPv4 address",
                    ctx.object
                ),
            ));
        }
        if spec.my_asn == 0 {
            return Err(ctx.doc.error_at(
                &["spec", "myASN"],
                format!("{}: spec.myASN 0 is not a valid AS number", ctx.object),
            ));
        }

        let peer_asn = match (spec.peer_asn.filter(|a| *a != 0), &spec.dynamic_asn) {
            (Some(asn), None) => asn,
            (Some(_), Some(_)) => {
                return Err(ctx.doc.error_at(
                    &["spec", "dynamicASN"],
                    format!(
                        "{}: peerASN and dynamicASN are mutually exclusive",
                        ctx.object
                    ),
                ));
            }
            (None, Some(mode)) => {
                if mode != "internal" && mode != "external" {
                    return Err(ctx.doc.error_at(
                        &["spec", "dynamicASN"],
                        format!(
                            "{}: spec.dynamicASN {mode:?} must be internal or external",
                            ctx.object
                        ),
                    ));
                }
                if mode == "internal" {
                    self.finding(
                        ctx,
                        &["spec", "dynamicASN"],
                        Severity::Note,
                        "internal: accept the peer only if its ASN equals myASN",
                        format!("translated as peerASN: {} (iBGP)", spec.my_asn),
                    );
                    spec.my_asn
                } else {
                    self.untranslated(
                        ctx,
                        &["spec", "dynamicASN"],
                        "external: accept any peer ASN other than myASN",
                        "Herald needs the peer's AS number; the BGPPeer is not written: add it with peerASN set",
                    );
                    return Ok(());
                }
            }
            (None, None) => {
                return Err(ctx.doc.error_at(
                    &["spec", "peerASN"],
                    format!("{}: spec.peerASN is missing (or 0)", ctx.object),
                ));
            }
        };

        let hold_time = self.duration(ctx, "holdTime", spec.hold_time.as_deref())?;
        let keepalive_time = self.duration(ctx, "keepaliveTime", spec.keepalive_time.as_deref())?;
        let connect_time = self.duration(ctx, "connectTime", spec.connect_time.as_deref())?;
        self.check_timers(ctx, hold_time, keepalive_time, connect_time)?;
        let text = |seconds: Option<u64>| seconds.map(|s| format_duration(Duration::from_secs(s)));
        let (hold_time, keepalive_time, connect_time) =
            (text(hold_time), text(keepalive_time), text(connect_time));

        let mut herald = BGPPeerSpec::new(spec.my_asn, peer_asn, spec.peer_address.trim());
        if let Some(port) = spec.peer_port.filter(|p| *p != 0) {
            herald.peer_port = port;
        }
        herald.source_address = spec.source_address.map(|s| s.trim().to_owned());
        herald.router_id = spec.router_id.map(|s| s.trim().to_owned());
        herald.hold_time = hold_time;
        herald.keepalive_time = keepalive_time;
        herald.connect_time = connect_time;
        herald.ebgp_multi_hop = spec.ebgp_multi_hop.unwrap_or(false);
        herald.enable_graceful_restart = spec.enable_graceful_restart.unwrap_or(false);
        herald.node_selectors = spec.node_selectors;

        let secret_set = spec
            .password_secret
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .is_some_and(|n| !n.is_empty());
        match (&spec.password, secret_set) {
            (Some(password), false) if !password.is_empty() => {
                let secret_name = format!("{name}-bgp-password");
                self.emit(
                    "Secret",
                    json!({
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": secret_name, "namespace": self.options.namespace},
                        "type": "kubernetes.io/basic-auth",
                        "stringData": {"password": password},
                    }),
                );
                herald.password_secret = Some(PasswordSecretRef {
                    name: secret_name.clone(),
                    key: "password".to_owned(),
                });
                self.finding(
                    ctx,
                    &["spec", "password"],
                    Severity::Action,
                    "TCP MD5 password (RFC 2385) written in the clear in the BGPPeer",
                    format!(
                        "moved into Secret {}/{secret_name} (written with the manifests; keep the output as secret as the password) and list {secret_name} in the chart value speaker.bgpPasswordSecrets",
                        self.options.namespace
                    ),
                );
            }
            (_, true) => {
                let reference = spec.password_secret.clone().unwrap_or_default();
                let secret_name = reference.name.unwrap_or_default();
                herald.password_secret = Some(PasswordSecretRef {
                    name: secret_name.clone(),
                    key: "password".to_owned(),
                });
                if spec.password.as_deref().is_some_and(|p| !p.is_empty()) {
                    self.finding(
                        ctx,
                        &["spec", "password"],
                        Severity::Note,
                        "clear-text password, ignored by MetalLB when passwordSecret is set",
                        "dropped; passwordSecret is used",
                    );
                }
                let from = reference
                    .namespace
                    .unwrap_or_else(|| "metallb-system".to_owned());
                if from != self.options.namespace {
                    self.finding(
                        ctx,
                        &["spec", "passwordSecret"],
                        Severity::Action,
                        format!("TCP MD5 password in Secret {from}/{secret_name}, key password"),
                        format!(
                            "Herald reads the Secret from the BGPPeer's namespace: copy {from}/{secret_name} into {}, and list {secret_name} in the chart value speaker.bgpPasswordSecrets",
                            self.options.namespace
                        ),
                    );
                }
            }
            _ => {}
        }

        let mut value = to_value(
            &BGPPeer {
                metadata,
                spec: herald,
                status: None,
            },
            ctx,
        )?;
        if let Some(profile) = spec.bfd_profile.filter(|p| !p.is_empty())
            && let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("bfdProfile".to_owned(), Value::String(profile));
        }

        if let Some(vrf) = spec.vrf.filter(|v| !v.is_empty()) {
            self.untranslated(
                ctx,
                &["spec", "vrf"],
                format!("peer through the host VRF {vrf:?} (FRR mode)"),
                "Herald peers from the node's default routing table only; the BGPPeer is written without it: reach the peer from the default VRF, or keep this peer on MetalLB",
            );
        }
        if let Some(interface) = spec.interface.filter(|v| !v.is_empty()) {
            self.untranslated(
                ctx,
                &["spec", "interface"],
                format!("unnumbered BGP over interface {interface:?} (FRR mode)"),
                "Herald dials peerAddress only; give the peer an address on that link and use it as peerAddress",
            );
        }
        if spec.disable_mp == Some(true) {
            self.untranslated(
                ctx,
                &["spec", "disableMP"],
                "one session per address family instead of multiprotocol BGP (RFC 4760)",
                "Herald always uses one session per peer address with MP-BGP families; define one BGPPeer per peer address of each family",
            );
        }
        if spec.dual_stack_address_family == Some(true) {
            self.untranslated(
                ctx,
                &["spec", "dualStackAddressFamily"],
                "announce both IPv4 and IPv6 routes over this one session (FRR mode)",
                "Herald sends each family over a session to a peer address of that family; add a BGPPeer for the peer's other-family address",
            );
        }
        self.emit("BGPPeer", value);
        Ok(())
    }

    fn bfd_profile(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::BFDProfileSpec> = typed(ctx.doc)?;
        let spec = object.spec.unwrap_or_default();
        let metadata = self.metadata(ctx, &object.metadata)?;
        let mut out = serde_json::Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        put("receiveInterval", spec.receive_interval.map(Value::from));
        put("transmitInterval", spec.transmit_interval.map(Value::from));
        put("detectMultiplier", spec.detect_multiplier.map(Value::from));
        put("passiveMode", spec.passive_mode.map(Value::from));
        put("minimumTtl", spec.minimum_ttl.map(Value::from));
        if spec.echo_mode == Some(true) {
            self.untranslated(
                ctx,
                &["spec", "echoMode"],
                "BFD echo mode (RFC 5880 §6.4): the peer loops our packets back",
                "Herald runs asynchronous-mode BFD only; detection stays at transmitInterval x detectMultiplier",
            );
        }
        if let Some(interval) = spec.echo_interval {
            self.untranslated(
                ctx,
                &["spec", "echoInterval"],
                format!("echo packet interval {interval} ms"),
                "Herald has no echo mode; dropped",
            );
        }
        let value = json!({
            "apiVersion": format!("{}/{}", names::GROUP, names::VERSION),
            "kind": "BFDProfile",
            "metadata": serde_json::to_value(&metadata).unwrap_or(Value::Null),
            "spec": Value::Object(out),
        });
        self.emit("BFDProfile", value);
        Ok(())
    }

    fn community(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let object: metallb::Object<metallb::CommunitySpec> = typed(ctx.doc)?;
        let mut aliases = Vec::new();
        for alias in object.spec.unwrap_or_default().communities {
            CommunityValue::parse(&alias.value).map_err(|error| {
                ctx.doc.error_at(
                    &["spec", "communities"],
                    format!("{}: alias {:?}: {error}", ctx.object, alias.name),
                )
            })?;
            if !herald_crds::api::community::is_alias_name(&alias.name) {
                self.untranslated(
                    ctx,
                    &["spec", "communities"],
                    format!("alias {:?} for {}", alias.name, alias.value),
                    "Herald alias names are lower-case letters, digits and '-', starting with a letter: rename the alias here and in the BGPAdvertisements that use it",
                );
                continue;
            }
            aliases.push(CommunityAlias {
                name: alias.name,
                value: alias.value,
            });
        }
        let herald = Community {
            metadata: self.metadata(ctx, &object.metadata)?,
            spec: CommunitySpec {
                communities: aliases,
            },
        };
        self.emit("Community", to_value(&herald, ctx)?);
        Ok(())
    }

    fn service(&mut self, doc: &Document) {
        let ctx = Ctx {
            doc,
            object: format!("Service {}", object_name(&doc.value)),
        };
        if let Err(error) = self.service_inner(&ctx) {
            self.errors.push(error);
        }
    }

    fn service_inner(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
        let doc = ctx.doc;
        let mut service = doc.value.clone();
        let annotations: BTreeMap<String, String> = doc
            .value
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let is_load_balancer =
            doc.value.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
        let has_metallb = annotations.keys().any(|k| is_metallb_annotation(k));
        if !is_load_balancer && !has_metallb {
            return Ok(());
        }

        // MetalLB annotations: metallb.io/ wins over metallb.universe.tf/ (the newer form).
        let mut wanted: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for (key, value) in &annotations {
            let Some(name) = key
                .strip_prefix(metallb::ANNOTATION_PREFIX)
                .or_else(|| key.strip_prefix(metallb::LEGACY_ANNOTATION_PREFIX))
            else {
                continue;
            };
            let path = ["metadata", "annotations", key.as_str()];
            let Some(known) = metallb::SERVICE_ANNOTATIONS.iter().find(|n| **n == name) else {
                self.untranslated(
                    ctx,
                    &path,
                    format!("MetalLB annotation {key}"),
                    "Herald has no such annotation; left on the Service, without effect",
                );
                continue;
            };
            match wanted.get(known) {
                Some((existing_key, existing))
                    if existing_key.starts_with(metallb::ANNOTATION_PREFIX) =>
                {
                    if existing != value {
                        self.finding(
                            ctx,
                            &path,
                            Severity::Note,
                            format!("{key}={value:?}, also written as {existing_key}={existing:?}"),
                            format!("{existing_key} is used (the newer form)"),
                        );
                    }
                }
                // Keys are visited in sorted order, so metallb.io/ comes before
                // metallb.universe.tf/ and is never overwritten by it.
                _ => {
                    wanted.insert(known, (key.clone(), value.clone()));
                }
            }
        }

        // The addresses MetalLB assigned, from status: pinned so nothing moves.
        let assigned: Vec<String> = doc
            .value
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("ip").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let mut herald: BTreeMap<&str, String> = BTreeMap::new();
        if let Some((key, pool)) = wanted.get("address-pool") {
            if pool.trim().is_empty() {
                return Err(doc.error_at(
                    &["metadata", "annotations", key],
                    format!("{}: annotation {key} is empty", ctx.object),
                ));
            }
            herald.insert(names::ANNOTATION_ADDRESS_POOL, pool.trim().to_owned());
        }
        if let Some((_, shared)) = wanted.get("allow-shared-ip") {
            herald.insert(names::ANNOTATION_ALLOW_SHARED_IP, shared.trim().to_owned());
        }
        if let Some((key, requested)) = wanted.get("loadBalancerIPs") {
            address::parse_address_list(requested).map_err(|error| {
                doc.error_at(
                    &["metadata", "annotations", key],
                    format!("{}: annotation {key}: {error}", ctx.object),
                )
            })?;
        }
        if !assigned.is_empty() {
            let parsed = address::parse_address_list(&assigned.join(",")).map_err(|error| {
                doc.error_at(
                    &["status", "loadBalancer"],
                    format!("{}: status.loadBalancer.ingress: {error}", ctx.object),
                )
            })?;
            let pinned = parsed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            if let Some((key, requested)) = wanted.get("loadBalancerIPs") {
                let requested = address::parse_address_list(requested).unwrap_or_default();
                if requested.iter().any(|a| !parsed.contains(a)) {
                    self.finding(
                        ctx,
                        &["metadata", "annotations", key],
                        Severity::Action,
                        format!("requested {}, but MetalLB assigned {pinned}", key),
                        "the assigned addresses are pinned so nothing moves; change herald.dev/loadBalancerIPs afterwards if the request should win",
                    );
                }
            }
            let load_balancer_ip = doc
                .value
                .pointer("/spec/loadBalancerIP")
                .and_then(Value::as_str);
            if let Some(field) = load_balancer_ip.filter(|f| !f.trim().is_empty())
                && field
                    .trim()
                    .parse()
                    .is_ok_and(|a: std::net::IpAddr| !parsed.contains(&a))
            {
                self.untranslated(
                    ctx,
                    &["spec", "loadBalancerIP"],
                    format!("spec.loadBalancerIP {field} differs from the assigned {pinned}"),
                    "Herald refuses a Service whose spec.loadBalancerIP is not among herald.dev/loadBalancerIPs: clear spec.loadBalancerIP",
                );
            }
            herald.insert(names::ANNOTATION_LOAD_BALANCER_IPS, pinned);
            if let Some((_, pools)) = wanted.get("ip-allocated-from-pool") {
                herald.insert(
                    names::ANNOTATION_ALLOCATED_FROM_POOL,
                    pools.trim().to_owned(),
                );
            }
        } else if let Some((_, requested)) = wanted.get("loadBalancerIPs") {
            herald.insert(
                names::ANNOTATION_LOAD_BALANCER_IPS,
                requested.trim().to_owned(),
            );
        }

        if let Some(class) = doc
            .value
            .pointer("/spec/loadBalancerClass")
            .and_then(Value::as_str)
            .filter(|c| *c != names::LOAD_BALANCER_CLASS)
        {
            self.finding(
                ctx,
                &["spec", "loadBalancerClass"],
                Severity::Action,
                format!("the Service asks for load-balancer class {class:?}"),
                format!(
                    "spec.loadBalancerClass cannot be changed on a Service: run Herald's controller with --load-balancer-class={class} (chart value controller.extraArgs)"
                ),
            );
        }

        // The manifest to apply: the Service without server-set fields or status, with the
        // Herald annotations added (MetalLB's stay, so going back needs no edit).
        if let Some(object) = service.as_object_mut() {
            object.remove("status");
        }
        if let Some(metadata) = service.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
            ] {
                metadata.remove(key);
            }
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                for (key, value) in &herald {
                    annotations.insert((*key).to_owned(), Value::String(value.clone()));
                }
            }
        }
        self.emit("Service", service);
        Ok(())
    }
}

/// Whether an annotation is MetalLB's (either prefix).
pub fn is_metallb_annotation(key: &str) -> bool {
    key.starts_with(metallb::ANNOTATION_PREFIX)
        || key.starts_with(metallb::LEGACY_ANNOTATION_PREFIX)
}

/// `namespace/name` of an object (as far as known).
fn object_name(value: &Value) -> String {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match value.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// Deserializes the document into a typed MetalLB object. From text, serde_yaml names the
/// field path and the line; from cluster data, the field path is in the message.
fn typed<T: serde::de::DeserializeOwned>(doc: &Document) -> Result<T, InputError> {
    if doc.text.is_empty() {
        return serde_json::from_value(doc.value.clone()).map_err(|error| InputError {
            location: doc.location(),
            message: format!("invalid value: {error}"),
        });
    }
    serde_yaml::from_str(&doc.text).map_err(|error| {
        let line = match (doc.first_line, error.location()) {
            (Some(first), Some(location)) => Some(first + location.line() - 1),
            (first, _) => first,
        };
        InputError {
            location: Location {
                origin: doc.origin.clone(),
                line,
            },
            message: format!("invalid value: {}", strip_location(&error.to_string())),
        }
    })
}

/// The spec of a kind that cannot do without one.
fn required<S>(ctx: &Ctx<'_>, spec: Option<S>) -> Result<S, InputError> {
    spec.ok_or_else(|| {
        ctx.doc
            .error_at(&["kind"], format!("{} has no spec", ctx.object))
    })
}

fn to_value<T: serde::Serialize>(object: &T, ctx: &Ctx<'_>) -> Result<Value, InputError> {
    serde_json::to_value(object).map_err(|error| InputError {
        location: ctx.doc.location(),
        message: format!("{}: cannot write the Herald object: {error}", ctx.object),
    })
}

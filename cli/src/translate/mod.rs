//! The translation of MetalLB manifests into Herald manifests (`herald migrate`).
//!
//! Owns the mapping field by field, the pinning of Services to the addresses MetalLB gave
//! them (so the switch moves no address), and the report of every field that has no Herald
//! counterpart, with what it meant and what to do instead. Input is a list of parsed
//! [`Document`]s; output is a list of JSON objects (Herald's `herald.dev/v1alpha1` kinds,
//! Secrets for clear-text BGP passwords, and Services with Herald annotations) plus the
//! report. Invalid input is an [`InputError`] naming the file and line. Pure: no I/O.

mod bgp;
mod service;

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

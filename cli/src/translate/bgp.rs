//! The BGP kinds: BGPAdvertisement, BGPPeer (timers, passwords, BFD), BFDProfile and
//! Community, translated field by field. Pure.

use super::*;

impl Run<'_> {
    pub(super) fn bgp_advertisement(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
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
    pub(super) fn duration(
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

    /// Checks the BGP timers with Herald's schema rules (`herald_crds::api::check_timers`,
    /// kept in step with the CRDs' CEL by a test), so a translation the apiserver would
    /// refuse is an error here, at the MetalLB field.
    pub(super) fn check_timers(
        &self,
        ctx: &Ctx<'_>,
        hold: Option<u64>,
        keepalive: Option<u64>,
        connect: Option<u64>,
    ) -> Result<(), InputError> {
        let seconds = |value: Option<u64>| value.map(std::time::Duration::from_secs);
        herald_crds::api::check_timers(seconds(hold), seconds(keepalive), seconds(connect)).map_err(
            |error| {
                let field = error.field();
                ctx.doc.error_at(
                    &["spec", field],
                    format!("{}: spec.{field}: {error}", ctx.object),
                )
            },
        )
    }

    pub(super) fn peer(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
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

    pub(super) fn bfd_profile(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
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

    pub(super) fn community(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
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
}

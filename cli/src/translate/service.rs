//! Services: MetalLB annotations turned into Herald's, and each Service pinned to the
//! addresses MetalLB gave it so the switch moves no address. Pure.

use super::*;

impl Run<'_> {
    pub(super) fn service(&mut self, doc: &Document) {
        let ctx = Ctx {
            doc,
            object: format!("Service {}", object_name(&doc.value)),
        };
        if let Err(error) = self.service_inner(&ctx) {
            self.errors.push(error);
        }
    }

    pub(super) fn service_inner(&mut self, ctx: &Ctx<'_>) -> Result<(), InputError> {
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

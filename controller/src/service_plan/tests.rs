use super::*;

use std::collections::BTreeMap;

use herald_crds::address::parse_entries;
use herald_crds::names;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServicePort as ApiPort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::allocator::PoolSpec;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn pool(name: &str, entries: &[&str]) -> PoolSpec {
    PoolSpec::new(name, parse_entries(entries).unwrap_or_default())
}

fn serve_all() -> ClassFilter {
    ClassFilter::herald(false)
}

struct Svc(Service);

impl Svc {
    fn lb(name: &str) -> Svc {
        Svc(Service {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ports: Some(vec![ApiPort {
                    port: 80,
                    ..ApiPort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        })
    }

    fn annotate(mut self, key: &str, value: &str) -> Svc {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn spec(mut self, edit: impl FnOnce(&mut ServiceSpec)) -> Svc {
        if let Some(spec) = self.0.spec.as_mut() {
            edit(spec);
        }
        self
    }

    fn port(self, port: i32) -> Svc {
        self.spec(|s| {
            s.ports = Some(vec![ApiPort {
                port,
                ..ApiPort::default()
            }])
        })
    }

    fn status_ips(mut self, ips: &[&str], pool_annotation: &str) -> Svc {
        self.0.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|a| LoadBalancerIngress {
                            ip: Some((*a).into()),
                            ip_mode: Some("VIP".into()),
                            ..LoadBalancerIngress::default()
                        })
                        .collect(),
                ),
            }),
            conditions: None,
        });
        self.annotate(names::ANNOTATION_ALLOCATED_FROM_POOL, pool_annotation)
    }
}

fn plan(allocator: &mut Allocator, service: &Service) -> ServicePlan {
    match plan_service(allocator, service, &Labels::new(), &serve_all(), now()) {
        Some(plan) => plan,
        None => panic!("no plan for a named Service"),
    }
}

/// Restores `service` as the start-up restore does (its view, no namespace labels).
fn restore(allocator: &mut Allocator, service: &Service) -> Restored {
    match ServiceView::new(service, &Labels::new(), &serve_all()) {
        Some(view) => restore_service(allocator, &view),
        None => panic!("no view of a named Service"),
    }
}

/// What the apiserver holds after the edge performed the plan's writes.
fn written(service: &Service, plan: &ServicePlan) -> Service {
    let mut out = service.clone();
    for (name, change) in [
        (names::ANNOTATION_ALLOCATED_FROM_POOL, &plan.annotation),
        (ANNOTATION_EXTERNAL_IPS_BOOKED, &plan.external_annotation),
    ] {
        match change {
            Some(AnnotationChange::Set(value)) => {
                out.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name.into(), value.clone());
            }
            Some(AnnotationChange::Remove) => {
                if let Some(a) = out.metadata.annotations.as_mut() {
                    a.remove(name);
                }
            }
            None => {}
        }
    }
    if let Some(status) = &plan.status {
        let ingress = match &status.ingress {
            None => out
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone()),
            Some(list) if list.is_empty() => None,
            Some(list) => Some(
                list.iter()
                    .map(|a| LoadBalancerIngress {
                        ip: Some(a.to_string()),
                        ip_mode: Some(IP_MODE_VIP.into()),
                        ..LoadBalancerIngress::default()
                    })
                    .collect(),
            ),
        };
        out.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus { ingress }),
            conditions: Some(status.conditions.clone()),
        });
    }
    out
}

fn condition<'a>(plan: &'a ServicePlan, type_: &str) -> Option<&'a Condition> {
    plan.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

fn reasons(plan: &ServicePlan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

#[test]
fn a_new_load_balancer_gets_an_address_a_vip_ingress_the_pool_annotation_and_a_condition() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let plan = plan(&mut allocator, &svc);
    assert_eq!(plan.outcome, Outcome::Assigned { changed: true });
    assert_eq!(
        plan.status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![ip("192.0.2.128")])
    );
    assert_eq!(plan.annotation, Some(AnnotationChange::Set("a".into())));
    assert_eq!(plan.pools, vec!["a".to_owned()]);
    let assigned = condition(&plan, CONDITION_ADDRESS_ASSIGNED);
    assert_eq!(assigned.map(|c| c.status.as_str()), Some("True"));
    assert_eq!(assigned.map(|c| c.reason.as_str()), Some("Assigned"));
    assert_eq!(assigned.and_then(|c| c.observed_generation), Some(1));
    assert_eq!(reasons(&plan), vec!["AddressAssigned"]);
    assert!(plan.changed_bookings());
}

#[test]
fn reconciling_the_written_service_again_changes_nothing() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let after = written(&svc, &first);
    let second = plan(&mut allocator, &after);
    assert_eq!(second.status, None);
    assert_eq!(second.annotation, None);
    assert_eq!(second.events, vec![]);
    assert_eq!(second.outcome, Outcome::Assigned { changed: false });
}

#[test]
fn services_of_another_class_are_left_alone() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web")
        .spec(|s| s.load_balancer_class = Some("other.example/lb".into()))
        .0;
    let plan = plan(&mut allocator, &svc);
    assert_eq!(plan.outcome, Outcome::NotServed);
    assert_eq!(plan.status, None);
    assert_eq!(plan.annotation, None);
    assert!(plan.events.is_empty());
}

#[test]
fn a_class_change_releases_the_address_and_clears_what_herald_wrote() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let mut after = written(&svc, &first);
    if let Some(spec) = after.spec.as_mut() {
        spec.load_balancer_class = Some("other.example/lb".into());
    }
    let released = plan(&mut allocator, &after);
    assert_eq!(
        released.outcome,
        Outcome::Released {
            addresses: vec![ip("192.0.2.128")]
        }
    );
    let status = released.status.clone();
    assert_eq!(
        status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![])
    );
    assert_eq!(status.map(|s| s.conditions), Some(vec![]));
    assert_eq!(released.annotation, Some(AnnotationChange::Remove));
    assert_eq!(reasons(&released), vec!["AddressReleased"]);
    // The address is free again.
    let other = plan(&mut allocator, &Svc::lb("other").0);
    assert_eq!(
        other.status.and_then(|s| s.ingress),
        Some(vec![ip("192.0.2.128")])
    );
}

#[test]
fn a_type_change_away_from_load_balancer_releases_the_address() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let mut after = written(&svc, &first);
    if let Some(spec) = after.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
    }
    let released = plan(&mut allocator, &after);
    assert!(matches!(released.outcome, Outcome::Released { .. }));
    assert_eq!(allocator.assignment(&ServiceKey::new("ns", "web")), None);
}

#[test]
fn a_service_being_deleted_is_released_without_writes() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let mut after = written(&svc, &first);
    after.metadata.deletion_timestamp = Some(Time(now()));
    let released = plan(&mut allocator, &after);
    assert!(matches!(released.outcome, Outcome::Released { .. }));
    assert_eq!(released.status, None);
    assert_eq!(released.annotation, None);
}

#[test]
fn an_exhausted_pool_gives_a_warning_a_false_condition_and_no_address() {
    let mut allocator = Allocator::new(vec![pool("tiny", &["192.0.2.128/32"])]);
    let _first = plan(&mut allocator, &Svc::lb("first").0);
    let second = plan(&mut allocator, &Svc::lb("second").0);
    assert_eq!(
        second.outcome,
        Outcome::Failed {
            reason: "PoolExhausted",
            changed: false
        }
    );
    let assigned = condition(&second, CONDITION_ADDRESS_ASSIGNED);
    assert_eq!(assigned.map(|c| c.status.as_str()), Some("False"));
    assert_eq!(assigned.map(|c| c.reason.as_str()), Some("PoolExhausted"));
    assert_eq!(second.status.and_then(|s| s.ingress), Some(vec![]));
    assert_eq!(second.annotation, None);
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].type_, EventType::Warning);
    assert!(
        second.events[0].message.contains("tiny"),
        "{:?}",
        second.events
    );
}

#[test]
fn an_invalid_annotation_keeps_the_address_and_says_why() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let broken = Svc(written(&svc, &first))
        .annotate(names::ANNOTATION_LOAD_BALANCER_IPS, "not-an-address")
        .0;
    let plan = plan(&mut allocator, &broken);
    assert_eq!(
        plan.outcome,
        Outcome::Failed {
            reason: REASON_INVALID_SERVICE,
            changed: false
        }
    );
    let assigned = condition(&plan, CONDITION_ADDRESS_ASSIGNED);
    assert_eq!(assigned.map(|c| c.status.as_str()), Some("True"));
    assert!(
        assigned.is_some_and(|c| c.message.contains("not-an-address")),
        "{assigned:?}"
    );
    assert_eq!(
        plan.status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![ip("192.0.2.128")])
    );
    assert_eq!(reasons(&plan), vec![REASON_INVALID_SERVICE]);
}

#[test]
fn restored_addresses_are_kept_even_when_a_lower_one_is_free() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let old = Svc::lb("old").status_ips(&["192.0.2.130"], "a").0;
    assert!(restore(&mut allocator, &old).events.is_empty());
    let plan = plan(&mut allocator, &old);
    assert_eq!(plan.outcome, Outcome::Assigned { changed: false });
    // Only the condition is new; ingress and annotation are already right.
    assert_eq!(
        plan.status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![ip("192.0.2.130")])
    );
    assert_eq!(plan.annotation, None);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn restoring_everything_first_keeps_new_services_off_existing_addresses() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let old = Svc::lb("old").status_ips(&["192.0.2.128"], "a").0;
    restore(&mut allocator, &old);
    let new = plan(&mut allocator, &Svc::lb("new").0);
    assert_eq!(
        new.status.and_then(|s| s.ingress),
        Some(vec![ip("192.0.2.129")])
    );
}

#[test]
fn a_service_the_allocator_does_not_know_is_restored_before_it_is_assigned() {
    // A Service whose status was written by an earlier leader, seen first by a reconcile.
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let old = Svc::lb("old").status_ips(&["192.0.2.131"], "a").0;
    let plan = plan(&mut allocator, &old);
    assert_eq!(
        plan.status.and_then(|s| s.ingress),
        Some(vec![ip("192.0.2.131")])
    );
    assert_eq!(plan.outcome, Outcome::Assigned { changed: true });
}

#[test]
fn an_address_outside_every_pool_is_kept_and_reported() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let stray = Svc::lb("stray").status_ips(&["198.51.100.7"], "gone").0;
    let events = restore(&mut allocator, &stray).events;
    assert_eq!(
        events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["AddressOutsideEveryPool"]
    );
    let plan = plan(&mut allocator, &stray);
    assert_eq!(
        plan.status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![ip("198.51.100.7")])
    );
    assert_eq!(
        condition(&plan, CONDITION_ADDRESS_ASSIGNED).map(|c| c.reason.as_str()),
        Some("AddressOutsideEveryPool")
    );
    assert!(reasons(&plan).contains(&"AddressOutsideEveryPool"));
}

#[test]
fn sharing_services_with_distinct_ports_share_and_a_clash_is_refused() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let key = names::ANNOTATION_ALLOW_SHARED_IP;
    let dns_tcp = Svc::lb("dns-tcp").annotate(key, "dns").port(53).0;
    let dns_udp = Svc::lb("dns-udp")
        .annotate(key, "dns")
        .spec(|s| {
            s.ports = Some(vec![ApiPort {
                port: 53,
                protocol: Some("UDP".into()),
                ..ApiPort::default()
            }])
        })
        .0;
    let clash = Svc::lb("dns-clash")
        .annotate(key, "dns")
        .annotate(names::ANNOTATION_LOAD_BALANCER_IPS, "192.0.2.128")
        .port(53)
        .0;
    let first = plan(&mut allocator, &dns_tcp);
    let second = plan(&mut allocator, &dns_udp);
    assert_eq!(
        first.status.and_then(|s| s.ingress),
        second.status.and_then(|s| s.ingress)
    );
    let third = plan(&mut allocator, &clash);
    assert_eq!(
        third.outcome,
        Outcome::Failed {
            reason: "SharingConflict",
            changed: false
        }
    );
    assert!(
        third.events[0].message.contains("53/TCP"),
        "{:?}",
        third.events
    );
}

#[test]
fn external_ips_inside_an_allowing_pool_are_allowed_and_others_get_a_warning() {
    let mut external = pool("ext", &["203.0.113.0/28"]);
    external.allow_external_ips = true;
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"]), external]);
    let inside = Svc::lb("inside")
        .spec(|s| s.external_ips = Some(vec!["203.0.113.5".into()]))
        .0;
    let plan_inside = plan(&mut allocator, &inside);
    let allowed = condition(&plan_inside, CONDITION_EXTERNAL_IPS);
    assert_eq!(allowed.map(|c| c.status.as_str()), Some("True"));

    let outside = Svc::lb("outside")
        .spec(|s| s.external_ips = Some(vec!["198.51.100.9".into()]))
        .0;
    let plan_outside = plan(&mut allocator, &outside);
    let refused = condition(&plan_outside, CONDITION_EXTERNAL_IPS);
    assert_eq!(refused.map(|c| c.status.as_str()), Some("False"));
    assert!(
        refused.is_some_and(|c| c.message.contains("will not be announced")),
        "{refused:?}"
    );
    assert!(reasons(&plan_outside).contains(&"ExternalIPNotAllowed"));
    // The load-balancer address is still given: externalIPs are judged separately.
    assert!(matches!(plan_outside.outcome, Outcome::Assigned { .. }));
}

#[test]
fn external_ips_of_a_cluster_ip_service_are_judged_too() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("plain")
        .spec(|s| {
            s.type_ = Some("ClusterIP".into());
            s.external_ips = Some(vec!["192.0.2.129".into()]);
        })
        .0;
    let plan = plan(&mut allocator, &svc);
    assert_eq!(plan.outcome, Outcome::NotServed);
    assert_eq!(
        condition(&plan, CONDITION_EXTERNAL_IPS).map(|c| c.reason.as_str()),
        Some("NotAllowed")
    );
    assert!(plan.status.is_some_and(|s| s.ingress.is_none()));
}

#[test]
fn another_implementations_ingress_is_never_rewritten() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    // Herald served it once (its condition is still there), then the class changed and the
    // other implementation wrote its own ingress with ipMode Proxy.
    let mut svc = Svc::lb("web")
        .spec(|s| s.load_balancer_class = Some("other.example/lb".into()))
        .0;
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.51.100.20".into()),
                ip_mode: Some("Proxy".into()),
                ..LoadBalancerIngress::default()
            }]),
        }),
        conditions: Some(vec![Condition {
            type_: CONDITION_ADDRESS_ASSIGNED.into(),
            status: "True".into(),
            reason: "Assigned".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(now()),
        }]),
    });
    let plan = plan(&mut allocator, &svc);
    // Nothing held here: the other class's status (even a Herald condition another instance
    // wrote) is left alone.
    assert_eq!(plan.status, None);
    assert_eq!(plan.annotation, None);
    assert_eq!(plan.outcome, Outcome::NotServed);
}

#[test]
fn plain_services_external_ips_are_judged_only_by_the_instance_serving_classless_services() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.128/30"])]);
    let svc = Svc::lb("plain")
        .spec(|s| {
            s.type_ = Some("ClusterIP".into());
            s.external_ips = Some(vec!["192.0.2.129".into()]);
        })
        .0;
    let strict = ClassFilter::herald(true);
    let plan = plan_service(&mut allocator, &svc, &Labels::new(), &strict, now());
    assert_eq!(plan.and_then(|p| p.status), None);
}

// --- Booked externalIPs ---------------------------------------------------------------------

fn external_pool(name: &str, entries: &[&str]) -> PoolSpec {
    let mut spec = pool(name, entries);
    spec.allow_external_ips = true;
    spec
}

impl Svc {
    fn external_ips(self, ips: &[&str]) -> Svc {
        self.spec(|s| s.external_ips = Some(ips.iter().map(|a| (*a).to_owned()).collect()))
    }

    fn cluster_ip(name: &str) -> Svc {
        Svc::lb(name).spec(|s| s.type_ = Some("ClusterIP".into()))
    }
}

fn ingress(plan: &ServicePlan) -> Option<Vec<IpAddr>> {
    plan.status.as_ref().and_then(|s| s.ingress.clone())
}

fn booked(allocator: &Allocator, name: &str) -> Vec<IpAddr> {
    allocator
        .external_ips(&ServiceKey::new("ns", name))
        .iter()
        .map(|a| a.address)
        .collect()
}

#[test]
fn an_accepted_external_ip_is_booked_recorded_and_never_given_to_the_next_service() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let a = Svc::lb("a").external_ips(&["192.0.2.128"]).0;
    let plan_a = plan(&mut allocator, &a);
    // Booked before the address is chosen: A's own address is not its externalIP either.
    assert_eq!(ingress(&plan_a), Some(vec![ip("192.0.2.129")]));
    assert_eq!(
        condition(&plan_a, CONDITION_EXTERNAL_IPS).map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(
        plan_a.external_annotation,
        Some(AnnotationChange::Set("192.0.2.128".into()))
    );
    assert!(plan_a.external_ips.changed && !plan_a.external_ips.waiting);
    assert!(plan_a.changed_bookings());

    let plan_b = plan(&mut allocator, &Svc::lb("b").0);
    assert_eq!(ingress(&plan_b), Some(vec![ip("192.0.2.130")]));

    // Reconciling A as written changes nothing.
    let again = plan(&mut allocator, &written(&a, &plan_a));
    assert_eq!(again.status, None);
    assert_eq!(again.external_annotation, None);
    assert_eq!(again.external_ips, ExternalIpsOutcome::default());
    assert!(!again.changed_bookings());
}

#[test]
fn a_cluster_ip_services_accepted_external_ips_are_booked_and_released_with_it() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let plain = Svc::cluster_ip("plain").external_ips(&["192.0.2.128"]).0;
    let first = plan(&mut allocator, &plain);
    assert_eq!(first.outcome, Outcome::NotServed);
    assert_eq!(
        condition(&first, CONDITION_EXTERNAL_IPS).map(|c| c.reason.as_str()),
        Some("Allowed")
    );
    assert_eq!(
        first.external_annotation,
        Some(AnnotationChange::Set("192.0.2.128".into()))
    );
    assert!(first.external_ips.changed && first.changed_bookings());
    assert_eq!(booked(&allocator, "plain"), [ip("192.0.2.128")]);
    let again = plan(&mut allocator, &written(&plain, &first));
    assert!(!again.changed_bookings());
    assert_eq!((again.status, again.external_annotation), (None, None));

    let lb = plan(&mut allocator, &Svc::lb("lb").0);
    assert_eq!(ingress(&lb), Some(vec![ip("192.0.2.129")]));

    // Being deleted: released, nothing written.
    let mut going = written(&plain, &first);
    going.metadata.deletion_timestamp = Some(Time(now()));
    let gone = plan(&mut allocator, &going);
    assert!(gone.external_ips.released && gone.changed_bookings());
    assert_eq!((gone.status, gone.external_annotation), (None, None));
    assert!(booked(&allocator, "plain").is_empty());
    let next = plan(&mut allocator, &Svc::lb("next").0);
    assert_eq!(ingress(&next), Some(vec![ip("192.0.2.128")]));
}

#[test]
fn removing_an_external_ip_releases_it_and_its_record() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web")
        .external_ips(&["192.0.2.128", "192.0.2.130"])
        .0;
    let first = plan(&mut allocator, &svc);
    assert_eq!(
        first.external_annotation,
        Some(AnnotationChange::Set("192.0.2.128,192.0.2.130".into()))
    );
    let fewer = Svc(written(&svc, &first)).external_ips(&["192.0.2.130"]).0;
    let second = plan(&mut allocator, &fewer);
    assert!(second.external_ips.released && second.external_ips.changed);
    assert_eq!(
        second.external_annotation,
        Some(AnnotationChange::Set("192.0.2.130".into()))
    );
    let none = Svc(written(&fewer, &second))
        .spec(|s| s.external_ips = None)
        .0;
    let third = plan(&mut allocator, &none);
    assert_eq!(third.external_annotation, Some(AnnotationChange::Remove));
    assert_eq!(condition(&third, CONDITION_EXTERNAL_IPS), None);
    assert!(booked(&allocator, "web").is_empty());
}

#[test]
fn an_external_ip_held_by_another_service_is_refused_and_waits_for_it() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let holder = plan(&mut allocator, &Svc::lb("holder").0);
    assert_eq!(ingress(&holder), Some(vec![ip("192.0.2.128")]));
    let late = Svc::cluster_ip("late").external_ips(&["192.0.2.128"]).0;
    let refused = plan(&mut allocator, &late);
    let condition = condition(&refused, CONDITION_EXTERNAL_IPS);
    assert_eq!(condition.map(|c| c.reason.as_str()), Some("NotAllowed"));
    assert!(
        condition
            .is_some_and(|c| c.message.contains("held by another Service")
                && c.message.contains("ns/holder")),
        "{condition:?}"
    );
    assert!(reasons(&refused).contains(&"ExternalIPNotAllowed"));
    assert!(refused.external_ips.waiting);
    assert_eq!(refused.external_annotation, None);
    assert!(booked(&allocator, "late").is_empty());

    // Once the holder lets go, the next judgement books it.
    allocator.release(&ServiceKey::new("ns", "holder"));
    let accepted = plan(&mut allocator, &written(&late, &refused));
    assert!(!accepted.external_ips.waiting);
    assert_eq!(
        accepted.external_annotation,
        Some(AnnotationChange::Set("192.0.2.128".into()))
    );
}

#[test]
fn an_address_restored_from_status_displaces_an_external_ip_booked_on_it() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let claim = Svc::cluster_ip("claim").external_ips(&["192.0.2.129"]).0;
    let booked_plan = plan(&mut allocator, &claim);
    assert_eq!(booked(&allocator, "claim"), [ip("192.0.2.129")]);
    // A Service whose status an earlier leader wrote, first seen now.
    let old = Svc::lb("old").status_ips(&["192.0.2.129"], "ext").0;
    let restored = plan(&mut allocator, &old);
    assert_eq!(ingress(&restored), Some(vec![ip("192.0.2.129")]));
    assert_eq!(restored.displaced, vec![ServiceKey::new("ns", "claim")]);
    assert!(restored.changed_bookings());
    // The displaced Service's next reconcile says why and drops its record.
    let displaced = plan(&mut allocator, &written(&claim, &booked_plan));
    assert_eq!(
        condition(&displaced, CONDITION_EXTERNAL_IPS).map(|c| c.reason.as_str()),
        Some("NotAllowed")
    );
    assert_eq!(
        displaced.external_annotation,
        Some(AnnotationChange::Remove)
    );
    assert!(displaced.external_ips.waiting);
}

#[test]
fn a_class_change_releases_external_ips_and_clears_their_record_and_condition() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let svc = Svc::lb("web").external_ips(&["192.0.2.128"]).0;
    let first = plan(&mut allocator, &svc);
    let moved = Svc(written(&svc, &first))
        .spec(|s| s.load_balancer_class = Some("other.example/lb".into()))
        .0;
    let released = plan(&mut allocator, &moved);
    assert!(released.external_ips.released);
    assert_eq!(released.external_annotation, Some(AnnotationChange::Remove));
    assert_eq!(
        released.status.map(|s| s.conditions),
        Some(vec![]),
        "Herald's conditions are removed"
    );
    assert!(booked(&allocator, "web").is_empty());
}

#[test]
fn an_instance_ignoring_classless_services_books_no_external_ip_of_a_plain_service() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.128/30"])]);
    let svc = Svc::cluster_ip("plain").external_ips(&["192.0.2.128"]).0;
    let strict = ClassFilter::herald(true);
    assert!(!judges_external_ips(&svc, &strict));
    assert!(judges_external_ips(&svc, &serve_all()));
    let plan = plan_service(&mut allocator, &svc, &Labels::new(), &strict, now());
    assert!(plan.is_some_and(|p| p.external_annotation.is_none() && p.status.is_none()));
    assert!(booked(&allocator, "plain").is_empty());
}

#[test]
fn the_record_annotation_reads_back_what_was_written() {
    let svc = Svc::cluster_ip("plain")
        .annotate(
            ANNOTATION_EXTERNAL_IPS_BOOKED,
            "192.0.2.128, 2001:db8::1,garbage,",
        )
        .0;
    assert_eq!(
        recorded_external_ips(&svc),
        vec![ip("192.0.2.128"), ip("2001:db8::1")]
    );
    assert!(recorded_external_ips(&Svc::lb("none").0).is_empty());
}

#[test]
fn a_requested_node_address_is_refused_with_a_warning_naming_the_node() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.0/28"])]);
    allocator.set_node_addresses([("node-1".to_owned(), ip("192.0.2.11"))]);
    let svc = Svc::lb("web")
        .annotate(names::ANNOTATION_LOAD_BALANCER_IPS, "192.0.2.11")
        .0;
    let plan = plan(&mut allocator, &svc);
    assert_eq!(
        plan.outcome,
        Outcome::Failed {
            reason: "NodeAddress",
            changed: false
        }
    );
    assert_eq!(reasons(&plan), vec!["AllocationFailed"]);
    assert!(plan.events[0].message.contains("node node-1"));
    let assigned = condition(&plan, CONDITION_ADDRESS_ASSIGNED);
    assert_eq!(assigned.map(|c| c.reason.as_str()), Some("NodeAddress"));
    assert!(condition(&plan, CONDITION_NODE_ADDRESS).is_none());
}

#[test]
fn a_held_address_that_is_a_node_address_is_kept_with_a_warning_and_a_condition() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.0/28"])]);
    let svc = Svc::lb("web").0;
    let first = plan(&mut allocator, &svc);
    let after = written(&svc, &first);
    allocator.set_node_addresses([("node-1".to_owned(), ip("192.0.2.0"))]);
    let second = plan(&mut allocator, &after);
    assert_eq!(second.outcome, Outcome::Assigned { changed: false });
    assert_eq!(reasons(&second), vec![REASON_NODE_ADDRESS]);
    let node = condition(&second, CONDITION_NODE_ADDRESS);
    assert_eq!(node.map(|c| c.status.as_str()), Some("True"));
    let message = node.map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("192.0.2.0 is also the address of node node-1"));
    assert!(message.contains("will not be announced"));
    assert_eq!(
        second.status.as_ref().and_then(|s| s.ingress.clone()),
        Some(vec![ip("192.0.2.0")])
    );
    // The node gives the address up: the condition goes.
    let after = written(&after, &second);
    allocator.set_node_addresses(Vec::new());
    let third = plan(&mut allocator, &after);
    assert!(condition(&third, CONDITION_NODE_ADDRESS).is_none());
    assert!(third.status.is_some());
    assert_eq!(third.events, vec![]);
}

#[test]
fn a_restored_node_address_is_kept_and_reported() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.0/28"])]);
    allocator.set_node_addresses([("node-2".to_owned(), ip("192.0.2.12"))]);
    let svc = Svc::lb("web").status_ips(&["192.0.2.12"], "a").0;
    let plan = plan(&mut allocator, &svc);
    assert_eq!(plan.outcome, Outcome::Assigned { changed: true });
    assert_eq!(reasons(&plan), vec![REASON_NODE_ADDRESS]);
    assert!(condition(&plan, CONDITION_NODE_ADDRESS).is_some());
}

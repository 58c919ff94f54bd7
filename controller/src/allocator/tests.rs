//! Table tests: one test per allocation rule, named after the behaviour it proves.

use std::net::IpAddr;

use herald_crds::address::{AddressRange, Family};

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn pool(name: &str, entries: &[&str]) -> PoolSpec {
    PoolSpec::new(
        name,
        entries
            .iter()
            .map(|e| e.parse::<AddressRange>().expect("test range"))
            .collect(),
    )
}

fn service(name: &str) -> ServiceRequest {
    ServiceRequest::new("default", name)
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

fn tcp(port: u16) -> ServicePort {
    ServicePort {
        protocol: Protocol::Tcp,
        port,
    }
}

fn shared(name: &str, sharing_key: &str, ports: &[u16]) -> ServiceRequest {
    ServiceRequest {
        sharing_key: Some(sharing_key.to_owned()),
        ports: ports.iter().map(|&p| tcp(p)).collect(),
        ..service(name)
    }
}

fn requesting(name: &str, addresses: &[&str]) -> ServiceRequest {
    ServiceRequest {
        requested_addresses: addresses.iter().map(|a| ip(a)).collect(),
        ..service(name)
    }
}

fn ips(result: Result<Assignment, AllocationError>) -> Vec<IpAddr> {
    result.expect("assignment").ips()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn services_get_the_lowest_free_address_in_turn() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.128/30"])]);
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.128")]);
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.129")]);
    allocator.release(&key("a"));
    assert_eq!(ips(allocator.assign(&service("c"))), [ip("192.0.2.128")]);
    let assignment = allocator.assignment(&key("b")).expect("b");
    assert_eq!(assignment.pools(), ["lan"]);
}

#[test]
fn pools_are_tried_by_priority_lower_number_first_then_pools_without_priority_then_by_name() {
    let mut low = pool("z-low", &["192.0.2.1"]);
    low.priority = Some(1);
    let mut high = pool("a-high", &["192.0.2.2"]);
    high.priority = Some(5);
    let unprioritised_b = pool("b-none", &["192.0.2.4"]);
    let unprioritised_a = pool("a-none", &["192.0.2.3"]);
    let mut allocator = Allocator::new(vec![unprioritised_b, high, unprioritised_a, low]);
    for name in ["s1", "s2", "s3", "s4"] {
        allocator.assign(&service(name)).expect("assignment");
    }
    let pool_of = |name: &str| {
        allocator
            .assignment(&key(name))
            .and_then(|a| a.addresses[0].pool.clone())
    };
    assert_eq!(pool_of("s1").as_deref(), Some("z-low"));
    assert_eq!(pool_of("s2").as_deref(), Some("a-high"));
    assert_eq!(pool_of("s3").as_deref(), Some("a-none"));
    assert_eq!(pool_of("s4").as_deref(), Some("b-none"));
}

#[test]
fn an_auto_assign_false_pool_serves_only_explicit_requests() {
    let mut reserved = pool("reserved", &["203.0.113.0/24"]);
    reserved.auto_assign = false;
    let mut allocator = Allocator::new(vec![reserved]);
    let error = allocator.assign(&service("auto")).unwrap_err();
    assert_eq!(
        error,
        AllocationError::NoEligiblePool {
            refusals: vec![("reserved".into(), PoolRefusal::AutoAssignDisabled)]
        }
    );
    assert_eq!(
        ips(allocator.assign(&requesting("by-ip", &["203.0.113.9"]))),
        [ip("203.0.113.9")]
    );
    let pinned = ServiceRequest {
        pool: Some("reserved".into()),
        ..service("by-pool")
    };
    assert_eq!(ips(allocator.assign(&pinned)), [ip("203.0.113.0")]);
}

#[test]
fn namespace_and_service_selectors_decide_which_pools_serve_a_service() {
    let mut by_name = pool("by-name", &["192.0.2.1"]);
    by_name.namespaces = vec!["team-a".into()];
    let mut by_label = pool("by-label", &["192.0.2.2"]);
    by_label.namespace_selectors = vec![LabelSelector::with_labels([("tier", "prod")])];
    let mut by_service = pool("by-service", &["192.0.2.3"]);
    by_service.service_selectors = vec![LabelSelector::with_labels([("app", "web")])];
    let allocator = Allocator::new(vec![by_name, by_label, by_service]);

    let cases = [
        ("team-a", labels(&[]), labels(&[]), Some("192.0.2.1")),
        (
            "team-b",
            labels(&[("tier", "prod")]),
            labels(&[]),
            Some("192.0.2.2"),
        ),
        (
            "team-b",
            labels(&[]),
            labels(&[("app", "web")]),
            Some("192.0.2.3"),
        ),
        (
            "team-b",
            labels(&[("tier", "dev")]),
            labels(&[("app", "db")]),
            None,
        ),
    ];
    for (namespace, namespace_labels, service_labels, expected) in cases {
        let mut allocator = allocator.clone();
        let request = ServiceRequest {
            namespace_labels,
            service_labels,
            ..ServiceRequest::new(namespace, "svc")
        };
        let result = allocator.assign(&request).map(|a| a.ips());
        match expected {
            Some(address) => assert_eq!(result, Ok(vec![ip(address)]), "{namespace}"),
            None => {
                let error = result.unwrap_err();
                assert_eq!(
                    error.to_string(),
                    "no pool serves this Service (\"by-label\": namespace \"team-b\" is not allowed \
                     by serviceAllocation; \"by-name\": namespace \"team-b\" is not allowed by \
                     serviceAllocation; \"by-service\": the Service's labels match no serviceSelector)"
                );
            }
        }
    }
}

#[test]
fn a_requested_address_is_given_only_when_it_lies_in_a_serving_pool_and_is_free() {
    let mut restricted = pool("restricted", &["198.51.100.0/24"]);
    restricted.namespaces = vec!["other".into()];
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24"]), restricted]);
    assert_eq!(
        ips(allocator.assign(&requesting("a", &["192.0.2.77"]))),
        [ip("192.0.2.77")]
    );
    let cases = [
        (
            requesting("b", &["192.0.2.77"]),
            AllocationError::AddressInUse {
                address: ip("192.0.2.77"),
                by: key("a"),
            },
        ),
        (
            requesting("c", &["203.0.113.1"]),
            AllocationError::NotInAnyPool {
                address: ip("203.0.113.1"),
            },
        ),
        (
            requesting("d", &["198.51.100.5"]),
            AllocationError::PoolNotUsable {
                pool: "restricted".into(),
                reason: PoolRefusal::NamespaceNotAllowed {
                    namespace: "default".into(),
                },
            },
        ),
        (
            ServiceRequest {
                pool: Some("restricted".into()),
                ..requesting("e", &["192.0.2.5"])
            },
            AllocationError::PoolNotUsable {
                pool: "restricted".into(),
                reason: PoolRefusal::NamespaceNotAllowed {
                    namespace: "default".into(),
                },
            },
        ),
        (
            ServiceRequest {
                pool: Some("lan".into()),
                ..requesting("f", &["198.51.100.5"])
            },
            AllocationError::NotInPool {
                address: ip("198.51.100.5"),
                pool: "lan".into(),
            },
        ),
        (
            ServiceRequest {
                pool: Some("nope".into()),
                ..service("g")
            },
            AllocationError::UnknownPool {
                pool: "nope".into(),
            },
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(allocator.assign(&request), Err(expected), "{}", request.key);
        assert_eq!(allocator.assignment(&request.key), None);
    }
}

#[test]
fn an_exhausted_pool_and_a_missing_family_give_distinct_errors() {
    let mut allocator = Allocator::new(vec![pool("tiny", &["192.0.2.1"])]);
    allocator.assign(&service("a")).expect("first fits");
    let exhausted = allocator.assign(&service("b")).unwrap_err();
    assert_eq!(
        exhausted,
        AllocationError::PoolExhausted {
            family: Family::V4,
            pools: vec!["tiny".into()]
        }
    );
    assert_eq!(
        exhausted.to_string(),
        "no free IPv4 address left in pool \"tiny\""
    );
    let v6 = ServiceRequest {
        ip_families: vec![Family::V6],
        ..service("c")
    };
    assert_eq!(
        allocator.assign(&v6),
        Err(AllocationError::FamilyUnavailable {
            family: Family::V6,
            pools: vec!["tiny".into()]
        })
    );
}

#[test]
fn require_dual_stack_takes_both_families_from_one_pool_or_nothing() {
    let mut allocator = Allocator::new(vec![
        pool("a-v4-only", &["192.0.2.0/24"]),
        pool("b-dual", &["198.51.100.0/24", "2001:db8:1::/120"]),
    ]);
    let dual = ServiceRequest {
        ip_families: vec![Family::V6, Family::V4],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..service("dual")
    };
    let assignment = allocator.assign(&dual).expect("dual");
    assert_eq!(assignment.ips(), [ip("2001:db8:1::"), ip("198.51.100.0")]);
    assert_eq!(assignment.pools(), ["b-dual"]);

    let mut v4_only = Allocator::new(vec![pool("v4", &["192.0.2.0/24"])]);
    assert_eq!(
        v4_only.assign(&dual),
        Err(AllocationError::FamilyUnavailable {
            family: Family::V6,
            pools: vec!["v4".into()]
        })
    );
    assert_eq!(v4_only.pool_stats("v4").expect("v4").ipv4.assigned, 0);
}

#[test]
fn prefer_dual_stack_settles_for_one_family_and_adds_the_other_later_without_moving() {
    let mut allocator = Allocator::new(vec![pool("v4", &["192.0.2.0/24"])]);
    let prefer = ServiceRequest {
        ip_families: vec![Family::V4, Family::V6],
        ip_family_policy: IpFamilyPolicy::PreferDualStack,
        ..service("prefer")
    };
    assert_eq!(ips(allocator.assign(&prefer)), [ip("192.0.2.0")]);
    allocator.set_pools(vec![
        pool("v4", &["192.0.2.0/24"]),
        pool("v6", &["2001:db8:1::/120"]),
    ]);
    assert_eq!(
        ips(allocator.assign(&prefer)),
        [ip("192.0.2.0"), ip("2001:db8:1::")]
    );
}

#[test]
fn services_with_one_sharing_key_and_different_ports_share_the_lowest_address() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.10-192.0.2.20"])]);
    assert_eq!(
        ips(allocator.assign(&shared("http", "k", &[80]))),
        [ip("192.0.2.10")]
    );
    assert_eq!(
        ips(allocator.assign(&shared("https", "k", &[443]))),
        [ip("192.0.2.10")]
    );
    // Same port: not shareable, so it gets the next free address instead.
    assert_eq!(
        ips(allocator.assign(&shared("http-2", "k", &[80]))),
        [ip("192.0.2.11")]
    );
    assert_eq!(allocator.pool_stats("lan").expect("lan").ipv4.assigned, 2);

    allocator.release(&key("http"));
    assert_eq!(ips(allocator.assign(&service("plain"))), [ip("192.0.2.12")]);
    allocator.release(&key("https"));
    assert_eq!(
        ips(allocator.assign(&service("plain-2"))),
        [ip("192.0.2.10")]
    );
}

#[test]
fn a_requested_shared_address_is_refused_with_the_reason_it_cannot_be_shared() {
    let local = |name: &str, pods: &[(&str, &str)], port: u16| ServiceRequest {
        traffic_policy: TrafficPolicy::Local,
        pod_selector: labels(pods),
        requested_addresses: vec![ip("192.0.2.1")],
        ..shared(name, "k", &[port])
    };
    let with_address = |request: ServiceRequest| ServiceRequest {
        requested_addresses: vec![ip("192.0.2.1")],
        ..request
    };
    let cases = [
        (
            with_address(shared("holder", "k", &[80])),
            with_address(shared("clash", "k", &[80])),
            Some(SharingConflictReason::PortClash(tcp(80))),
        ),
        (
            with_address(shared("holder", "k", &[80])),
            with_address(shared("other-key", "j", &[81])),
            Some(SharingConflictReason::KeyMismatch {
                ours: "j".into(),
                theirs: "k".into(),
            }),
        ),
        (
            with_address(shared("holder", "k", &[80])),
            local("local", &[("app", "web")], 81),
            Some(SharingConflictReason::TrafficPolicyMismatch),
        ),
        (
            local("holder", &[("app", "web")], 80),
            local("other-pods", &[("app", "db")], 81),
            Some(SharingConflictReason::PodSelectorMismatch),
        ),
        (
            local("holder", &[("app", "web")], 80),
            local("same-pods", &[("app", "web")], 81),
            None,
        ),
        (
            with_address(shared("holder", "k", &[80])),
            with_address(shared("fine", "k", &[81])),
            None,
        ),
    ];
    for (holder, newcomer, conflict) in cases {
        let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24"])]);
        allocator.assign(&holder).expect("holder");
        let result = allocator.assign(&newcomer);
        match conflict {
            None => assert_eq!(ips(result), [ip("192.0.2.1")], "{}", newcomer.key),
            Some(reason) => assert_eq!(
                result,
                Err(AllocationError::SharingConflict {
                    address: ip("192.0.2.1"),
                    with: key("holder"),
                    reason
                }),
                "{}",
                newcomer.key
            ),
        }
    }
}

#[test]
fn a_service_without_a_sharing_key_never_shares() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.1-192.0.2.2"])]);
    allocator
        .assign(&ServiceRequest {
            requested_addresses: vec![ip("192.0.2.1")],
            ..shared("keyed", "k", &[80])
        })
        .expect("keyed");
    assert_eq!(
        allocator.assign(&requesting("plain", &["192.0.2.1"])),
        Err(AllocationError::AddressInUse {
            address: ip("192.0.2.1"),
            by: key("keyed")
        })
    );
    let empty_key = ServiceRequest {
        sharing_key: Some(String::new()),
        ..requesting("empty-key", &["192.0.2.1"])
    };
    assert!(matches!(
        allocator.assign(&empty_key),
        Err(AllocationError::AddressInUse { .. })
    ));
}

#[test]
fn assigning_again_returns_the_same_addresses_even_after_pool_priorities_change() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.1"]), pool("b", &["192.0.2.2"])]);
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.1")]);
    let mut b = pool("b", &["192.0.2.2"]);
    b.priority = Some(0);
    allocator.set_pools(vec![pool("a", &["192.0.2.1"]), b]);
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.1")]);
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.1")]);
}

#[test]
fn changing_the_requested_address_moves_the_service_but_a_failed_change_keeps_the_old_one() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24"])]);
    allocator
        .assign(&requesting("a", &["192.0.2.10"]))
        .expect("a");
    allocator
        .assign(&requesting("b", &["192.0.2.20"]))
        .expect("b");
    assert_eq!(
        ips(allocator.assign(&requesting("a", &["192.0.2.11"]))),
        [ip("192.0.2.11")]
    );
    assert!(
        allocator
            .pool_stats("lan")
            .is_some_and(|s| s.ipv4.assigned == 2)
    );
    assert_eq!(
        allocator.assign(&requesting("a", &["192.0.2.20"])),
        Err(AllocationError::AddressInUse {
            address: ip("192.0.2.20"),
            by: key("b")
        })
    );
    assert_eq!(
        allocator.assignment(&key("a")).map(|a| a.ips()),
        Some(vec![ip("192.0.2.11")])
    );
    // Dropping the request keeps the address rather than moving it.
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.11")]);
}

#[test]
fn pinning_a_new_pool_moves_the_service_but_an_unchanged_pin_never_does() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.1"]), pool("b", &["192.0.2.2"])]);
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.1")]);
    let pinned = ServiceRequest {
        pool: Some("b".into()),
        ..service("s")
    };
    assert_eq!(ips(allocator.assign(&pinned)), [ip("192.0.2.2")]);
    // Pool b loses the address: reported, not moved, and assign keeps it.
    let reports = allocator.set_pools(vec![pool("a", &["192.0.2.1"]), pool("b", &["192.0.2.3"])]);
    assert_eq!(
        reports,
        [PoolChangeReport::AddressOutsideEveryPool {
            service: key("s"),
            address: ip("192.0.2.2"),
            former_pool: Some("b".into())
        }]
    );
    assert_eq!(ips(allocator.assign(&pinned)), [ip("192.0.2.2")]);
    assert_eq!(
        allocator.addresses_outside_every_pool(),
        [(key("s"), ip("192.0.2.2"))]
    );
}

#[test]
fn restore_takes_over_status_addresses_before_anything_is_allocated() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.1-192.0.2.3"])]);
    let outcome = allocator.restore(&service("old"), &[ip("192.0.2.1")], &[]);
    assert!(outcome.problems.is_empty());
    assert_eq!(outcome.assignment.pools(), ["lan"]);
    assert_eq!(ips(allocator.assign(&service("new"))), [ip("192.0.2.2")]);
    assert_eq!(ips(allocator.assign(&service("old"))), [ip("192.0.2.1")]);
    // Restoring the same addresses again changes nothing.
    assert!(
        allocator
            .restore(&service("old"), &[ip("192.0.2.1")], &[])
            .problems
            .is_empty()
    );
    assert_eq!(allocator.pool_stats("lan").expect("lan").ipv4.assigned, 2);
}

#[test]
fn restore_reports_conflicts_and_addresses_outside_every_pool_instead_of_moving_anything() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24"])]);
    allocator.restore(&service("first"), &[ip("192.0.2.5")], &[]);
    let duplicate = allocator.restore(&service("second"), &[ip("192.0.2.5")], &[]);
    assert_eq!(
        duplicate.problems,
        [RestoreProblem::Conflict {
            address: ip("192.0.2.5"),
            error: AllocationError::AddressInUse {
                address: ip("192.0.2.5"),
                by: key("first")
            }
        }]
    );
    assert!(duplicate.assignment.is_empty());
    let outside = allocator.restore(
        &service("orphan"),
        &[ip("203.0.113.7"), ip("203.0.113.8")],
        &[],
    );
    assert_eq!(
        outside.problems,
        [
            RestoreProblem::OutsideEveryPool {
                address: ip("203.0.113.7")
            },
            RestoreProblem::ExtraAddressOfFamily {
                address: ip("203.0.113.8"),
                family: Family::V4
            }
        ]
    );
    assert_eq!(
        ips(allocator.assign(&service("orphan"))),
        [ip("203.0.113.7")]
    );
    // A pool that covers it later books it there.
    let reports = allocator.set_pools(vec![
        pool("lan", &["192.0.2.0/24"]),
        pool("bgp", &["203.0.113.0/24"]),
    ]);
    assert_eq!(
        reports,
        [PoolChangeReport::AddressRebooked {
            service: key("orphan"),
            address: ip("203.0.113.7"),
            pool: "bgp".into(),
            former_pool: None
        }]
    );
    assert_eq!(allocator.pool_stats("bgp").expect("bgp").ipv4.assigned, 1);
    assert_eq!(allocator.services_using_pool("bgp"), [key("orphan")]);
}

#[test]
fn restore_lets_compatible_sharers_hold_one_address() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24"])]);
    allocator.restore(&shared("a", "k", &[80]), &[ip("192.0.2.9")], &[]);
    let outcome = allocator.restore(&shared("b", "k", &[443]), &[ip("192.0.2.9")], &[]);
    assert!(outcome.problems.is_empty());
    assert_eq!(
        ips(allocator.assign(&shared("b", "k", &[443]))),
        [ip("192.0.2.9")]
    );
}

#[test]
fn removing_a_pool_keeps_its_addresses_and_reports_them_once() {
    let mut allocator = Allocator::new(vec![pool("a", &["192.0.2.0/24"])]);
    allocator.assign(&service("s")).expect("s");
    let reports = allocator.set_pools(vec![]);
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].to_string(),
        "default/s keeps 192.0.2.0, which is no longer in any pool (was in pool \"a\")"
    );
    assert!(allocator.set_pools(vec![]).is_empty(), "reported only once");
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.0")]);
}

#[test]
fn overlapping_pools_never_hand_out_one_address_twice() {
    let mut allocator = Allocator::new(vec![
        pool("a", &["192.0.2.0-192.0.2.1"]),
        pool("b", &["192.0.2.1-192.0.2.2"]),
    ]);
    assert_eq!(allocator.overlaps().len(), 1);
    assert_eq!(ips(allocator.assign(&service("s1"))), [ip("192.0.2.0")]);
    assert_eq!(ips(allocator.assign(&service("s2"))), [ip("192.0.2.1")]);
    let pinned_b = ServiceRequest {
        pool: Some("b".into()),
        ..service("s3")
    };
    assert_eq!(ips(allocator.assign(&pinned_b)), [ip("192.0.2.2")]);
    let b_stats = allocator.pool_stats("b").expect("b").ipv4;
    assert_eq!((b_stats.assigned, b_stats.available), (2, 0));
    // A changed overlapping pool is rebuilt with the address in use taken out.
    allocator.set_pools(vec![
        pool("a", &["192.0.2.0-192.0.2.1"]),
        pool("b", &["192.0.2.0/30"]),
    ]);
    let pinned_b2 = ServiceRequest {
        pool: Some("b".into()),
        ..service("s4")
    };
    assert_eq!(ips(allocator.assign(&pinned_b2)), [ip("192.0.2.3")]);
}

#[test]
fn duplicate_pool_names_are_reported_and_the_second_is_ignored() {
    let mut allocator = Allocator::default();
    let reports = allocator.set_pools(vec![pool("a", &["192.0.2.1"]), pool("a", &["192.0.2.2"])]);
    assert_eq!(
        reports,
        [PoolChangeReport::DuplicatePoolName { name: "a".into() }]
    );
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.1")]);
}

#[test]
fn avoid_buggy_ips_skips_dot_0_and_dot_255_also_for_requests() {
    let mut careful = pool("careful", &["192.0.2.255-192.0.3.1"]);
    careful.avoid_buggy_ips = true;
    let mut allocator = Allocator::new(vec![careful]);
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.3.1")]);
    assert_eq!(
        allocator.assign(&requesting("t", &["192.0.3.0"])),
        Err(AllocationError::NotInAnyPool {
            address: ip("192.0.3.0")
        })
    );
}

#[test]
fn a_pool_being_deleted_keeps_its_services_but_serves_no_new_ones() {
    let mut allocator = Allocator::new(vec![pool("old", &["192.0.2.0/24"])]);
    allocator.assign(&service("s")).expect("s");
    let mut deleting = pool("old", &["192.0.2.0/24"]);
    deleting.deleting = true;
    assert!(allocator.set_pools(vec![deleting]).is_empty());
    assert_eq!(ips(allocator.assign(&service("s"))), [ip("192.0.2.0")]);
    assert_eq!(
        allocator.assign(&service("t")),
        Err(AllocationError::NoEligiblePool {
            refusals: vec![("old".into(), PoolRefusal::Deleting)]
        })
    );
    assert_eq!(allocator.services_using_pool("old"), [key("s")]);
    allocator.release(&key("s"));
    assert!(allocator.services_using_pool("old").is_empty());
}

#[test]
fn requests_that_contradict_themselves_are_refused_as_invalid() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24", "2001:db8:1::/120"])]);
    let cases = [
        (
            requesting("two-v4", &["192.0.2.1", "192.0.2.2"]),
            InvalidRequest::TwoAddressesOfOneFamily {
                family: Family::V4,
                first: ip("192.0.2.1"),
                second: ip("192.0.2.2"),
            },
        ),
        (
            requesting("v6-on-v4", &["2001:db8:1::1"]),
            InvalidRequest::RequestedFamilyNotServed {
                address: ip("2001:db8:1::1"),
                family: Family::V6,
                families: vec![Family::V4],
            },
        ),
        (
            ServiceRequest {
                ip_families: vec![Family::V4, Family::V4],
                ..service("twice")
            },
            InvalidRequest::DuplicateFamily(Family::V4),
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            allocator.assign(&request),
            Err(AllocationError::InvalidRequest(expected)),
            "{}",
            request.key
        );
    }
}

#[test]
fn a_dual_stack_request_for_both_families_gets_exactly_those_addresses() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/24", "2001:db8:1::/120"])]);
    let request = ServiceRequest {
        ip_families: vec![Family::V4, Family::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..requesting("both", &["2001:db8:1::42", "192.0.2.42"])
    };
    assert_eq!(
        ips(allocator.assign(&request)),
        [ip("192.0.2.42"), ip("2001:db8:1::42")]
    );
    // Only the IPv6 one requested: IPv4 is allocated from the same pool.
    let half = ServiceRequest {
        ip_families: vec![Family::V4, Family::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..requesting("half", &["2001:db8:1::43"])
    };
    assert_eq!(
        ips(allocator.assign(&half)),
        [ip("192.0.2.0"), ip("2001:db8:1::43")]
    );
    // Going single-stack releases the other family.
    let single = ServiceRequest {
        ip_families: vec![Family::V4],
        ..service("half")
    };
    assert_eq!(ips(allocator.assign(&single)), [ip("192.0.2.0")]);
    assert_eq!(allocator.pool_stats("lan").expect("lan").ipv6.assigned, 1);
}

#[test]
fn external_ips_are_accepted_only_inside_a_serving_pool_that_allows_them() {
    let mut open = pool("open", &["203.0.113.0/25"]);
    open.allow_external_ips = true;
    open.auto_assign = false;
    let mut restricted = pool("restricted", &["203.0.113.128/25"]);
    restricted.allow_external_ips = true;
    restricted.namespaces = vec!["other".into()];
    let mut allocator = Allocator::new(vec![open, restricted, pool("lan", &["192.0.2.0/24"])]);
    allocator
        .assign(&requesting("lb", &["203.0.113.9"]))
        .expect("lb");
    let request = ServiceRequest {
        external_ips: vec![
            ip("203.0.113.5"),
            ip("192.0.2.5"),
            ip("198.51.100.5"),
            ip("203.0.113.200"),
            ip("203.0.113.9"),
        ],
        ..service("ext")
    };
    let verdicts: Vec<Result<String, ExternalIpRefusal>> = allocator
        .check_external_ips(&request)
        .into_iter()
        .map(|v| v.result)
        .collect();
    assert_eq!(verdicts[0], Ok("open".into()));
    assert_eq!(
        verdicts[1],
        Err(ExternalIpRefusal::NotAllowedByPool {
            address: ip("192.0.2.5"),
            pool: "lan".into()
        })
    );
    assert_eq!(
        verdicts[2],
        Err(ExternalIpRefusal::NotInAnyPool(ip("198.51.100.5")))
    );
    assert!(matches!(
        verdicts[3],
        Err(ExternalIpRefusal::PoolNotUsable { ref pool, .. }) if pool == "restricted"
    ));
    assert!(matches!(verdicts[4], Err(ExternalIpRefusal::InUse { .. })));
    assert_eq!(
        allocator.pool_stats("open").expect("open").ipv4.assigned,
        1,
        "nothing allocated"
    );
}

#[test]
fn pool_stats_count_per_family_without_enumerating_huge_pools() {
    let mut allocator = Allocator::new(vec![pool("big", &["10.0.0.0/8", "2001:db8::/64"])]);
    let dual = ServiceRequest {
        ip_families: vec![Family::V4, Family::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..service("s")
    };
    allocator.assign(&dual).expect("dual");
    let stats = allocator.pool_stats("big").expect("big");
    assert_eq!(
        stats.ipv4,
        FamilyStats {
            size: 1 << 24,
            assigned: 1,
            available: (1 << 24) - 1
        }
    );
    assert_eq!(stats.family(Family::V6).available, (1u128 << 64) - 1);
    assert_eq!(allocator.pool_stats("missing"), None);
}

#[test]
fn restore_books_addresses_against_the_pool_the_annotation_names() {
    let mut allocator = Allocator::new(vec![
        pool("a", &["192.0.2.0/24"]),
        pool("b", &["192.0.2.0/25"]),
    ]);
    let hinted = allocator.restore(&service("s"), &[ip("192.0.2.1")], &["b".into()]);
    assert_eq!(hinted.assignment.pools(), ["b"]);
    let unhinted = allocator.restore(&service("t"), &[ip("192.0.2.2")], &["gone".into()]);
    assert_eq!(unhinted.assignment.pools(), ["a"]);
}

#[test]
fn service_field_values_parse_from_their_api_spelling_only() {
    assert_eq!(
        "RequireDualStack".parse(),
        Ok(IpFamilyPolicy::RequireDualStack)
    );
    assert_eq!("UDP".parse(), Ok(Protocol::Udp));
    assert_eq!("Local".parse(), Ok(TrafficPolicy::Local));
    assert_eq!(
        "tcp".parse::<Protocol>().unwrap_err().to_string(),
        "unknown protocol \"tcp\""
    );
}

// --- Booked externalIPs ---------------------------------------------------------------------

/// A pool whose addresses may be used as externalIPs (and are auto-assigned too).
fn external_pool(name: &str, entries: &[&str]) -> PoolSpec {
    let mut spec = pool(name, entries);
    spec.allow_external_ips = true;
    spec
}

fn listing(request: ServiceRequest, external_ips: &[&str]) -> ServiceRequest {
    ServiceRequest {
        external_ips: external_ips.iter().map(|a| ip(a)).collect(),
        ..request
    }
}

fn results(verdicts: Vec<ExternalIpVerdict>) -> Vec<Result<String, ExternalIpRefusal>> {
    verdicts.into_iter().map(|v| v.result).collect()
}

fn booked(allocator: &Allocator, name: &str) -> Vec<IpAddr> {
    allocator
        .external_ips(&key(name))
        .into_iter()
        .map(|a| a.address)
        .collect()
}

/// Assignments, externalIP bookings and pool counts.
type Observable = (
    Vec<(ServiceKey, Assignment)>,
    Vec<(ServiceKey, Vec<AssignedAddress>)>,
    Vec<Option<PoolStats>>,
);

/// Everything observable, for comparing two allocators.
fn observable(allocator: &Allocator, pools: &[&str]) -> Observable {
    (
        allocator
            .assignments()
            .map(|(k, a)| (k.clone(), a))
            .collect(),
        allocator
            .external_bookings()
            .map(|(k, b)| (k.clone(), b))
            .collect(),
        pools.iter().map(|p| allocator.pool_stats(p)).collect(),
    )
}

#[test]
fn an_accepted_external_ip_is_booked_and_never_given_to_a_later_service() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    let verdicts = allocator.book_external_ips(&listing(service("a"), &["192.0.2.0"]));
    assert_eq!(results(verdicts), [Ok("ext".to_owned())]);
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.0")]);
    assert_eq!(allocator.assignment(&key("a")), None, "nothing allocated");
    // The lowest free address is now .1, not A's externalIP.
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.1")]);
    let stats = allocator.pool_stats("ext").expect("ext").ipv4;
    assert_eq!((stats.assigned, stats.available), (2, 2));
    // Another Service listing it is refused as in use.
    let other = allocator.check_external_ips(&listing(service("c"), &["192.0.2.0"]));
    assert!(matches!(
        &other[0].result,
        Err(ExternalIpRefusal::InUse { error, .. })
            if **error == AllocationError::AddressInUse { address: ip("192.0.2.0"), by: key("a") }
    ));
}

#[test]
fn a_requested_address_booked_as_another_services_external_ip_is_in_use() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    allocator.book_external_ips(&listing(service("a"), &["192.0.2.2"]));
    assert_eq!(
        allocator.assign(&requesting("b", &["192.0.2.2"])),
        Err(AllocationError::AddressInUse {
            address: ip("192.0.2.2"),
            by: key("a")
        })
    );
    assert_eq!(allocator.assignment(&key("b")), None);
}

#[test]
fn an_external_ip_is_shared_only_under_the_sharing_rules_of_load_balancer_addresses() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    let x = "192.0.2.0";
    assert!(
        allocator
            .book_external_ips(&listing(shared("a", "k", &[80]), &[x]))
            .iter()
            .all(|v| v.result.is_ok())
    );
    // Same key, other port: may hold it as a load-balancer address, requested or automatic.
    assert_eq!(
        ips(allocator.assign(&ServiceRequest {
            requested_addresses: vec![ip(x)],
            ..shared("b", "k", &[443])
        })),
        [ip(x)]
    );
    assert_eq!(ips(allocator.assign(&shared("c", "k", &[8080]))), [ip(x)]);
    // ... and as an externalIP.
    let same_key = allocator.book_external_ips(&listing(shared("d", "k", &[22]), &[x]));
    assert_eq!(results(same_key), [Ok("ext".to_owned())]);
    // A port clash, another key or no key at all: refused, nothing booked.
    let clash = allocator.book_external_ips(&listing(shared("e", "k", &[80]), &[x]));
    assert!(matches!(
        &clash[0].result,
        Err(ExternalIpRefusal::InUse { error, .. }) if matches!(
            **error,
            AllocationError::SharingConflict { reason: SharingConflictReason::PortClash(_), .. }
        )
    ));
    let other_key = allocator.book_external_ips(&listing(shared("f", "other", &[9]), &[x]));
    assert!(matches!(
        &other_key[0].result,
        Err(ExternalIpRefusal::InUse { error, .. }) if matches!(
            **error,
            AllocationError::SharingConflict { reason: SharingConflictReason::KeyMismatch { .. }, .. }
        )
    ));
    let no_key = allocator.book_external_ips(&listing(service("g"), &[x]));
    assert!(matches!(
        no_key[0].result,
        Err(ExternalIpRefusal::InUse { .. })
    ));
    for name in ["e", "f", "g"] {
        assert!(
            booked(&allocator, name).is_empty(),
            "{name} booked a refused entry"
        );
    }
    // Traffic policy must match too.
    let local = ServiceRequest {
        traffic_policy: TrafficPolicy::Local,
        ..shared("h", "k", &[9])
    };
    let local = allocator.book_external_ips(&listing(local, &[x]));
    assert!(matches!(
        &local[0].result,
        Err(ExternalIpRefusal::InUse { error, .. }) if matches!(
            **error,
            AllocationError::SharingConflict { reason: SharingConflictReason::TrafficPolicyMismatch, .. }
        )
    ));
    // Counted once however many hold it.
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 1);
}

#[test]
fn a_load_balancer_address_is_not_booked_as_another_services_external_ip() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    allocator.assign(&service("lb")).expect("lb");
    let verdicts = allocator.book_external_ips(&listing(service("a"), &["192.0.2.0"]));
    assert!(matches!(
        verdicts[0].result,
        Err(ExternalIpRefusal::InUse { .. })
    ));
    assert!(booked(&allocator, "a").is_empty());
    // Its own load-balancer address may be listed: nobody else holds it.
    let own = allocator.book_external_ips(&listing(service("lb"), &["192.0.2.0"]));
    assert_eq!(results(own), [Ok("ext".to_owned())]);
    allocator.release(&key("lb"));
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 0);
}

#[test]
fn releasing_a_service_gives_its_external_ips_back() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    allocator.book_external_ips(&listing(service("a"), &["192.0.2.0", "192.0.2.1"]));
    allocator.assign(&service("a")).expect("a");
    assert_eq!(
        allocator.assignment(&key("a")).expect("a").ips(),
        [ip("192.0.2.2")]
    );
    assert_eq!(
        allocator.release(&key("a")).map(|a| a.ips()),
        Some(vec![ip("192.0.2.2")])
    );
    assert!(booked(&allocator, "a").is_empty());
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 0);
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.0")]);
    // A Service that held only externalIPs is released too.
    allocator.book_external_ips(&listing(service("c"), &["192.0.2.3"]));
    assert_eq!(allocator.release(&key("c")), None);
    assert!(booked(&allocator, "c").is_empty());
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 1);
}

#[test]
fn changing_external_ips_keeps_unchanged_ones_releases_removed_ones_and_books_added_ones() {
    let mut allocator = Allocator::new(vec![
        external_pool("ext", &["192.0.2.0/29"]),
        pool("lan", &["192.0.2.0/24"]),
    ]);
    allocator.book_external_ips(&listing(service("a"), &["192.0.2.0", "192.0.2.1"]));
    let again = allocator.book_external_ips(&listing(service("a"), &["192.0.2.0", "192.0.2.1"]));
    assert!(
        again.iter().all(|v| v.result == Ok("ext".to_owned())),
        "idempotent"
    );
    let changed = allocator.book_external_ips(&listing(service("a"), &["192.0.2.1", "192.0.2.2"]));
    assert!(changed.iter().all(|v| v.result.is_ok()));
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.1"), ip("192.0.2.2")]);
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 2);
    // The removed one is free again.
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.0")]);
    // An empty list releases everything.
    assert!(allocator.book_external_ips(&service("a")).is_empty());
    assert!(booked(&allocator, "a").is_empty());
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 1);
}

#[test]
fn refused_external_ips_are_not_booked_and_an_entry_listed_twice_is_booked_once() {
    let mut allocator = Allocator::new(vec![
        external_pool("ext", &["192.0.2.0/30"]),
        pool("lan", &["198.51.100.0/30"]),
    ]);
    let verdicts = allocator.book_external_ips(&listing(
        service("a"),
        &["198.51.100.0", "203.0.113.1", "192.0.2.0", "192.0.2.0"],
    ));
    assert_eq!(
        results(verdicts),
        [
            Err(ExternalIpRefusal::NotAllowedByPool {
                address: ip("198.51.100.0"),
                pool: "lan".into()
            }),
            Err(ExternalIpRefusal::NotInAnyPool(ip("203.0.113.1"))),
            Ok("ext".into()),
            Ok("ext".into()),
        ]
    );
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.0")]);
    assert_eq!(allocator.pool_stats("lan").expect("lan").ipv4.assigned, 0);
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 1);
    allocator.release(&key("a"));
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 0);
}

#[test]
fn a_service_no_longer_served_by_the_pool_loses_its_booking_at_the_next_judgement() {
    let mut web_only = external_pool("ext", &["192.0.2.0/30"]);
    web_only.service_selectors = vec![LabelSelector::with_labels([("app", "web")])];
    let mut allocator = Allocator::new(vec![web_only]);
    let web = ServiceRequest {
        service_labels: labels(&[("app", "web")]),
        ..listing(service("a"), &["192.0.2.0"])
    };
    assert!(allocator.book_external_ips(&web)[0].result.is_ok());
    let relabelled = listing(service("a"), &["192.0.2.0"]);
    let verdicts = allocator.book_external_ips(&relabelled);
    assert!(matches!(
        verdicts[0].result,
        Err(ExternalIpRefusal::PoolNotUsable { .. })
    ));
    assert!(booked(&allocator, "a").is_empty());
    assert_eq!(allocator.pool_stats("ext").expect("ext").ipv4.assigned, 0);
}

#[test]
fn a_pool_that_stops_allowing_or_containing_external_ips_releases_them_and_says_why() {
    let ext = || external_pool("ext", &["192.0.2.0/30"]);
    let mut allocator = Allocator::new(vec![ext()]);
    let listed = listing(service("a"), &["192.0.2.0", "192.0.2.1"]);
    allocator.book_external_ips(&listed);
    assert!(
        allocator.set_pools(vec![ext()]).is_empty(),
        "no change, no report"
    );

    // No longer allowing external IPs.
    let reports = allocator.set_pools(vec![pool("ext", &["192.0.2.0/30"])]);
    assert_eq!(reports.len(), 2);
    assert_eq!(
        reports[0],
        PoolChangeReport::ExternalIpReleased {
            service: key("a"),
            address: ip("192.0.2.0"),
            refusal: ExternalIpRefusal::NotAllowedByPool {
                address: ip("192.0.2.0"),
                pool: "ext".into()
            },
        }
    );
    assert!(
        reports[0].to_string().contains("released"),
        "{}",
        reports[0]
    );
    assert!(booked(&allocator, "a").is_empty());
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.0")]);
    allocator.release(&key("b"));

    // No longer containing one of them.
    allocator.set_pools(vec![ext()]);
    allocator.book_external_ips(&listed);
    let reports = allocator.set_pools(vec![external_pool("ext", &["192.0.2.1/32"])]);
    assert_eq!(
        reports,
        [PoolChangeReport::ExternalIpReleased {
            service: key("a"),
            address: ip("192.0.2.0"),
            refusal: ExternalIpRefusal::NotInAnyPool(ip("192.0.2.0")),
        }]
    );
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.1")]);

    // Being deleted: serves no Service any more, so it accepts no externalIP.
    let mut deleting = external_pool("ext", &["192.0.2.1/32"]);
    deleting.deleting = true;
    let reports = allocator.set_pools(vec![deleting]);
    assert!(matches!(
        reports.as_slice(),
        [PoolChangeReport::ExternalIpReleased {
            refusal: ExternalIpRefusal::PoolNotUsable {
                reason: PoolRefusal::Deleting,
                ..
            },
            ..
        }]
    ));
    assert!(booked(&allocator, "a").is_empty());
    assert!(allocator.services_using_pool("ext").is_empty());
}

#[test]
fn a_pool_change_books_an_external_ip_against_the_pool_now_accepting_it() {
    let mut first = external_pool("first", &["192.0.2.0/30"]);
    first.priority = Some(1);
    let second = external_pool("second", &["192.0.2.0/29"]);
    let mut allocator = Allocator::new(vec![first.clone(), second.clone()]);
    allocator.book_external_ips(&listing(service("a"), &["192.0.2.1"]));
    assert_eq!(
        allocator.external_ips(&key("a"))[0].pool.as_deref(),
        Some("first")
    );
    first.priority = Some(9);
    let mut second_first = second;
    second_first.priority = Some(2);
    assert!(allocator.set_pools(vec![first, second_first]).is_empty());
    assert_eq!(
        allocator.external_ips(&key("a"))[0].pool.as_deref(),
        Some("second")
    );
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.1")]);
}

#[test]
fn restore_external_ips_books_only_the_recorded_entries() {
    let pools = vec![external_pool("ext", &["192.0.2.0/30"])];
    let mut allocator = Allocator::new(pools);
    let listed = listing(service("a"), &["192.0.2.0", "192.0.2.1"]);
    let verdicts = allocator.restore_external_ips(&listed, &[ip("192.0.2.1"), ip("192.0.2.3")]);
    // Recorded but no longer listed (.3) is not booked; listed but unrecorded (.0) waits.
    assert_eq!(results(verdicts), [Ok("ext".to_owned())]);
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.1")]);
    // The next judgement books the new claim, keeping the restored one.
    allocator.book_external_ips(&listed);
    assert_eq!(booked(&allocator, "a"), [ip("192.0.2.0"), ip("192.0.2.1")]);
}

#[test]
fn a_load_balancer_address_restored_from_status_wins_over_an_external_ip_in_either_order() {
    let pools = || vec![external_pool("ext", &["192.0.2.0/30"])];
    let x = ip("192.0.2.2");
    let claim = listing(service("claim"), &["192.0.2.2", "192.0.2.3"]);

    // Status first, then the recorded externalIP: the claim is refused as in use.
    let mut status_first = Allocator::new(pools());
    let outcome = status_first.restore(&service("lb"), &[x], &["ext".into()]);
    assert!(outcome.problems.is_empty() && outcome.displaced.is_empty());
    let verdicts = status_first.restore_external_ips(&claim, &[x, ip("192.0.2.3")]);
    assert!(matches!(
        &verdicts[0].result,
        Err(ExternalIpRefusal::InUse { error, .. })
            if **error == AllocationError::AddressInUse { address: x, by: key("lb") }
    ));
    assert!(verdicts[1].result.is_ok());

    // The externalIP first: the restore takes the address and displaces the booking.
    let mut claim_first = Allocator::new(pools());
    claim_first.restore_external_ips(&claim, &[x, ip("192.0.2.3")]);
    let outcome = claim_first.restore(&service("lb"), &[x], &["ext".into()]);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.assignment.ips(), [x]);
    assert_eq!(outcome.displaced, [(key("claim"), x)]);

    assert_eq!(
        observable(&status_first, &["ext"]),
        observable(&claim_first, &["ext"]),
        "the order of restores changed the result"
    );
    assert_eq!(booked(&claim_first, "claim"), [ip("192.0.2.3")]);
}

#[test]
fn a_restored_address_leaves_external_ips_it_may_share_with_alone() {
    let mut allocator = Allocator::new(vec![external_pool("ext", &["192.0.2.0/30"])]);
    let x = ip("192.0.2.1");
    allocator.restore_external_ips(&listing(shared("ext", "k", &[80]), &["192.0.2.1"]), &[x]);
    let outcome = allocator.restore(&shared("lb", "k", &[443]), &[x], &[]);
    assert!(outcome.problems.is_empty() && outcome.displaced.is_empty());
    assert_eq!(booked(&allocator, "ext"), [x]);
    // Another load-balancer address still keeps a conflicting restore out.
    let late = allocator.restore(&service("late"), &[x], &[]);
    assert!(matches!(
        late.problems.as_slice(),
        [RestoreProblem::Conflict { .. }]
    ));
    assert_eq!(booked(&allocator, "ext"), [x]);
}

#[test]
fn external_ips_of_a_service_are_booked_against_every_overlapping_pool() {
    let mut allocator = Allocator::new(vec![
        external_pool("ext", &["192.0.2.0/30"]),
        pool("wide", &["192.0.2.0/29"]),
    ]);
    allocator.book_external_ips(&listing(service("a"), &["192.0.2.0"]));
    assert_eq!(allocator.pool_stats("wide").expect("wide").ipv4.assigned, 1);
    let pinned = ServiceRequest {
        pool: Some("wide".into()),
        ..service("b")
    };
    assert_eq!(ips(allocator.assign(&pinned)), [ip("192.0.2.1")]);
}

fn nodes(pairs: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
    pairs
        .iter()
        .map(|(n, a)| ((*n).to_owned(), ip(a)))
        .collect()
}

#[test]
fn node_addresses_are_never_allocated_and_leave_the_free_set() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.10-192.0.2.13"])]);
    let affected = allocator.set_node_addresses(nodes(&[
        ("node-a", "192.0.2.10"),
        ("node-b", "192.0.2.12"),
        ("node-b", "10.0.0.1"),
    ]));
    assert!(affected.is_empty());
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.11")]);
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.13")]);
    assert!(matches!(
        allocator.assign(&service("c")),
        Err(AllocationError::PoolExhausted { .. })
    ));
    let stats = allocator.pool_stats("lan").expect("stats");
    assert_eq!((stats.ipv4.assigned, stats.ipv4.available), (4, 0));
    // Releasing a Service gives back its address, never a node address.
    allocator.release(&key("a"));
    assert_eq!(ips(allocator.assign(&service("c"))), [ip("192.0.2.11")]);
}

#[test]
fn a_node_address_no_node_has_any_more_goes_back_to_its_pool() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.10/31"])]);
    allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.10")]));
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.11")]);
    allocator.set_node_addresses(Vec::new());
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.10")]);
}

#[test]
fn pools_installed_after_the_nodes_leave_node_addresses_out_too() {
    let mut allocator = Allocator::new(Vec::new());
    allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.10")]));
    allocator.set_pools(vec![pool("lan", &["192.0.2.10/31"])]);
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.11")]);
    assert_eq!(
        allocator.node_addresses_in_pool("lan"),
        [(ip("192.0.2.10"), vec!["node-a".to_owned()])]
    );
    assert!(allocator.node_addresses_in_pool("unknown").is_empty());
}

#[test]
fn a_requested_node_address_is_refused_naming_the_node() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/28"])]);
    allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.11"), ("node-b", "192.0.2.11")]));
    let error = allocator
        .assign(&requesting("a", &["192.0.2.11"]))
        .expect_err("node address");
    assert_eq!(
        error,
        AllocationError::NodeAddress {
            address: ip("192.0.2.11"),
            nodes: vec!["node-a".to_owned(), "node-b".to_owned()],
        }
    );
    assert!(error.to_string().contains("node node-a, node-b"));
    assert!(allocator.assignment(&key("a")).is_none());
}

#[test]
fn a_service_holding_an_address_a_node_takes_later_keeps_it_and_is_reported() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/28"])]);
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.0")]);
    let affected = allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.0")]));
    assert_eq!(affected, [key("a")]);
    // Never moved, also on the next assign.
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.0")]);
    assert_eq!(
        allocator.node_addresses_held(&key("a")),
        [(ip("192.0.2.0"), vec!["node-a".to_owned()])]
    );
    // Once released, the address stays reserved for the node.
    allocator.release(&key("a"));
    assert_eq!(ips(allocator.assign(&service("b"))), [ip("192.0.2.1")]);
    // The node gives it up: nobody is affected, the address is free again.
    assert!(allocator.set_node_addresses(Vec::new()).is_empty());
    assert_eq!(ips(allocator.assign(&service("c"))), [ip("192.0.2.0")]);
}

#[test]
fn a_restored_node_address_is_kept_and_reported() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/28"])]);
    allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.5")]));
    let outcome = allocator.restore(&service("a"), &[ip("192.0.2.5")], &[]);
    assert!(outcome.problems.is_empty());
    assert_eq!(ips(allocator.assign(&service("a"))), [ip("192.0.2.5")]);
    assert_eq!(allocator.node_addresses_held(&key("a")).len(), 1);
    assert!(allocator.node_addresses_held(&key("b")).is_empty());
}

#[test]
fn a_shared_address_that_became_a_node_address_is_not_given_to_new_sharers() {
    let mut allocator = Allocator::new(vec![pool("lan", &["192.0.2.0/30"])]);
    assert_eq!(
        ips(allocator.assign(&shared("a", "k", &[80]))),
        [ip("192.0.2.0")]
    );
    allocator.set_node_addresses(nodes(&[("node-a", "192.0.2.0")]));
    assert_eq!(
        ips(allocator.assign(&shared("b", "k", &[443]))),
        [ip("192.0.2.1")]
    );
    assert_eq!(
        ips(allocator.assign(&shared("a", "k", &[80]))),
        [ip("192.0.2.0")]
    );
}

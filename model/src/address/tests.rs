//! Tests of the address math: parsing, sizes, avoidBuggyIPs, overlaps, the free set.

use std::collections::BTreeSet;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn range(text: &str) -> AddressRange {
    text.parse().expect("test range")
}

#[test]
fn cidrs_host_addresses_and_ranges_parse_to_the_addresses_they_name() {
    let cases = [
        ("192.0.2.0/24", "192.0.2.0", "192.0.2.255", 256),
        (
            "2001:db8::/64",
            "2001:db8::",
            "2001:db8::ffff:ffff:ffff:ffff",
            1 << 64,
        ),
        ("192.0.2.7", "192.0.2.7", "192.0.2.7", 1),
        ("2001:db8::7", "2001:db8::7", "2001:db8::7", 1),
        ("192.0.2.10-192.0.2.20", "192.0.2.10", "192.0.2.20", 11),
        (" 192.0.2.10 - 192.0.2.10 ", "192.0.2.10", "192.0.2.10", 1),
        (
            "2001:db8::1-2001:db8::1:0",
            "2001:db8::1",
            "2001:db8::1:0",
            65536,
        ),
        ("10.0.0.0/8", "10.0.0.0", "10.255.255.255", 1 << 24),
        ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", 1 << 32),
        ("198.51.100.9/32", "198.51.100.9", "198.51.100.9", 1),
    ];
    for (text, first, last, size) in cases {
        let parsed = range(text);
        assert_eq!(parsed.first(), ip(first), "{text}");
        assert_eq!(parsed.last(), ip(last), "{text}");
        assert_eq!(parsed.size(), size, "{text}");
    }
}

#[test]
fn the_whole_ipv6_space_has_a_saturated_size() {
    assert_eq!(range("::/0").size(), u128::MAX);
    assert_eq!(range("::/1").size(), 1u128 << 127);
}

#[test]
fn invalid_entries_are_refused_with_an_error_that_says_why() {
    let cases: [(&str, AddressError); 10] = [
        ("", AddressError::Empty),
        ("   ", AddressError::Empty),
        (
            "192.0.2.300/24",
            AddressError::InvalidAddress {
                text: "192.0.2.300".into(),
            },
        ),
        (
            "192.0.2.0/33",
            AddressError::PrefixTooLong {
                length: 33,
                family: Family::V4,
                max: 32,
            },
        ),
        (
            "2001:db8::/129",
            AddressError::PrefixTooLong {
                length: 129,
                family: Family::V6,
                max: 128,
            },
        ),
        (
            "192.0.2.0/x",
            AddressError::InvalidPrefixLength { text: "x".into() },
        ),
        (
            "192.0.2.5/24",
            AddressError::HostBitsSet {
                entry: "192.0.2.5/24".into(),
                network: "192.0.2.0/24".into(),
            },
        ),
        (
            "192.0.2.1-2001:db8::1",
            AddressError::MixedFamilies {
                entry: "192.0.2.1-2001:db8::1".into(),
            },
        ),
        (
            "192.0.2.20-192.0.2.10",
            AddressError::ReversedRange {
                entry: "192.0.2.20-192.0.2.10".into(),
            },
        ),
        (
            "192.0.2.1-",
            AddressError::InvalidAddress { text: "".into() },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<AddressRange>(), Err(expected), "{text:?}");
    }
}

#[test]
fn error_messages_name_the_offending_text() {
    let error = "192.0.2.5/24".parse::<AddressRange>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"192.0.2.5/24\" has host bits set: write the network 192.0.2.0/24 or a single address"
    );
    let errors = parse_entries(["192.0.2.0/24", "nonsense", "2001:db8::/200"]).unwrap_err();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].index, 1);
    assert_eq!(
        errors[0].to_string(),
        "addresses[1] \"nonsense\": \"nonsense\" is not an IP address"
    );
    assert_eq!(errors[1].index, 2);
}

#[test]
fn a_valid_list_parses_in_order() {
    let ranges = parse_entries(["192.0.2.0/28", "2001:db8::/120"]).expect("valid");
    assert_eq!(ranges, vec![range("192.0.2.0/28"), range("2001:db8::/120")]);
}

#[test]
fn ranges_display_as_cidr_when_they_are_one_block_and_as_a_dash_range_otherwise() {
    let cases = [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.0-192.0.2.255", "192.0.2.0/24"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("192.0.2.1-192.0.2.2", "192.0.2.1-192.0.2.2"),
        ("192.0.2.0-192.0.2.2", "192.0.2.0-192.0.2.2"),
        ("::/0", "::/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/64", "2001:db8::/64"),
    ];
    for (text, shown) in cases {
        assert_eq!(range(text).to_string(), shown, "{text}");
    }
}

#[test]
fn address_lists_and_family_names_parse_as_kubernetes_writes_them() {
    assert_eq!(
        parse_address_list(" 192.0.2.10, 2001:db8::10 ,"),
        Ok(vec![ip("192.0.2.10"), ip("2001:db8::10")])
    );
    assert_eq!(
        parse_address_list("192.0.2.10,nope"),
        Err(AddressError::InvalidAddress {
            text: "nope".into()
        })
    );
    assert_eq!("IPv6".parse(), Ok(Family::V6));
    assert_eq!("ipv4".parse::<Family>(), Err(UnknownFamily("ipv4".into())));
}

#[test]
fn buggy_ipv4_addresses_are_those_ending_in_0_or_255() {
    assert!(is_buggy_ipv4(ip("192.0.2.0")));
    assert!(is_buggy_ipv4(ip("192.0.2.255")));
    assert!(!is_buggy_ipv4(ip("192.0.2.1")));
    assert!(!is_buggy_ipv4(ip("192.0.2.254")));
    assert!(!is_buggy_ipv4(ip("2001:db8::")));
    assert!(!is_buggy_ipv4(ip("2001:db8::ff")));
}

#[test]
fn pool_size_counts_each_address_once_and_skips_buggy_ones_when_asked() {
    let ranges = [
        range("192.0.2.0/24"),
        range("192.0.2.128/25"),
        range("198.51.100.10-198.51.100.19"),
        range("2001:db8::/120"),
    ];
    assert_eq!(pool_size(&ranges, Family::V4, false), 256 + 10);
    assert_eq!(pool_size(&ranges, Family::V4, true), 254 + 10);
    assert_eq!(pool_size(&ranges, Family::V6, true), 256);
    assert_eq!(
        pool_size(&[range("10.0.0.0/8")], Family::V4, true),
        (1 << 24) - 2 * (1 << 16)
    );
    assert_eq!(
        pool_size(&[range("::/0"), range("::/1")], Family::V6, false),
        u128::MAX
    );
}

#[test]
fn overlapping_entries_of_different_pools_are_reported_with_their_common_part() {
    let a = [range("192.0.2.0/24"), range("2001:db8::/64")];
    let b = [range("198.51.100.0/24"), range("192.0.2.128-192.0.2.130")];
    let c = [range("2001:db8::ff-2001:db8:1::")];
    let d = [range("203.0.113.0/24")];
    let overlaps = find_overlaps([
        ("a", a.as_slice()),
        ("b", b.as_slice()),
        ("c", c.as_slice()),
        ("d", d.as_slice()),
    ]);
    assert_eq!(overlaps.len(), 2, "{overlaps:?}");
    assert_eq!(
        (
            overlaps[0].first.pool.as_str(),
            overlaps[0].second.pool.as_str()
        ),
        ("a", "b")
    );
    assert_eq!(overlaps[0].second.index, 1);
    assert_eq!(overlaps[0].common, range("192.0.2.128-192.0.2.130"));
    assert_eq!(
        (
            overlaps[1].first.pool.as_str(),
            overlaps[1].second.pool.as_str()
        ),
        ("a", "c")
    );
    assert_eq!(
        overlaps[1].common,
        range("2001:db8::ff-2001:db8::ffff:ffff:ffff:ffff")
    );
    assert!(overlaps.iter().all(|o| !o.within_one_pool()));
    assert!(!overlaps.iter().any(|o| o.involves("d")));
}

#[test]
fn adjacent_entries_do_not_overlap_but_an_entry_inside_another_of_the_same_pool_does() {
    let a = [range("192.0.2.0/25"), range("192.0.2.128/25")];
    assert!(find_overlaps([("a", a.as_slice())]).is_empty());
    let b = [range("192.0.2.0/24"), range("192.0.2.7")];
    let overlaps = find_overlaps([("b", b.as_slice())]);
    assert_eq!(overlaps.len(), 1);
    assert!(overlaps[0].within_one_pool());
}

#[test]
fn a_long_entry_is_found_to_overlap_entries_well_past_its_start() {
    let big = [range("10.0.0.0/8")];
    let small = [
        range("10.1.0.0/16"),
        range("10.200.0.0/16"),
        range("11.0.0.0/8"),
    ];
    let overlaps = find_overlaps([("big", big.as_slice()), ("small", small.as_slice())]);
    assert_eq!(overlaps.len(), 2);
}

#[test]
fn the_free_set_hands_out_the_lowest_free_address_first() {
    let mut free = FreeAddresses::new(&[range("192.0.2.10-192.0.2.12")], false);
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.2.10")));
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.2.11")));
    assert!(free.release(ip("192.0.2.10")));
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.2.10")));
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.2.12")));
    assert_eq!(free.allocate_lowest(Family::V4), None);
    assert_eq!(free.allocate_lowest(Family::V6), None);
}

#[test]
fn a_specific_address_can_be_taken_once_and_only_inside_the_pool() {
    let mut free = FreeAddresses::new(&[range("2001:db8::/120")], false);
    assert_eq!(free.take(ip("2001:db8::50")), Ok(()));
    assert_eq!(
        free.take(ip("2001:db8::50")),
        Err(TakeError::AlreadyAllocated(ip("2001:db8::50")))
    );
    assert_eq!(
        free.take(ip("2001:db8::1:0")),
        Err(TakeError::NotInPool(ip("2001:db8::1:0")))
    );
    assert!(free.contains(ip("2001:db8::50")));
    assert!(!free.is_free(ip("2001:db8::50")));
    assert!(free.is_free(ip("2001:db8::51")));
    assert_eq!(free.allocated_count(Family::V6), 1);
    assert_eq!(free.free_count(Family::V6), 255);
}

#[test]
fn releasing_an_address_that_is_free_or_outside_changes_nothing() {
    let mut free = FreeAddresses::new(&[range("192.0.2.0/30")], false);
    let before = free.clone();
    assert!(!free.release(ip("192.0.2.1")));
    assert!(!free.release(ip("192.0.2.9")));
    assert_eq!(free, before);
}

#[test]
fn avoid_buggy_ips_never_hands_out_dot_0_or_dot_255() {
    let mut free = FreeAddresses::new(&[range("192.0.2.254-192.0.3.1")], true);
    assert_eq!(free.usable_count(Family::V4), 2);
    assert!(!free.contains(ip("192.0.2.255")));
    assert!(!free.contains(ip("192.0.3.0")));
    assert_eq!(
        free.take(ip("192.0.3.0")),
        Err(TakeError::NotInPool(ip("192.0.3.0")))
    );
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.2.254")));
    assert_eq!(free.allocate_lowest(Family::V4), Some(ip("192.0.3.1")));
    assert_eq!(free.allocate_lowest(Family::V4), None);
    assert_eq!(free.free_count(Family::V4), 0);
}

#[test]
fn a_pool_of_only_buggy_addresses_has_nothing_to_hand_out() {
    let mut free = FreeAddresses::new(&[range("192.0.2.255-192.0.3.0")], true);
    assert_eq!(free.usable_count(Family::V4), 0);
    assert!(!free.has_family(Family::V4));
    assert_eq!(free.allocate_lowest(Family::V4), None);
}

#[test]
fn a_slash_8_and_a_slash_64_with_100k_allocations_stay_compact() {
    let mut free = FreeAddresses::new(&[range("10.0.0.0/8"), range("2001:db8::/64")], true);
    for _ in 0..100_000 {
        assert!(free.allocate_lowest(Family::V4).is_some());
        assert!(free.allocate_lowest(Family::V6).is_some());
    }
    assert_eq!(free.allocated_count(Family::V4), 100_000);
    assert_eq!(free.free_count(Family::V6), (1u128 << 64) - 100_000);
    assert_eq!(free.free_interval_count(Family::V6), 1);
    assert_eq!(
        free.free_count_by_walking(Family::V4),
        free.free_count(Family::V4)
    );
    // Sequential allocation skipped exactly the buggy addresses below the 100,000th.
    assert_eq!(free.lowest_free(Family::V4), Some(ip("10.1.137.179")));
}

#[test]
fn the_whole_ipv6_space_can_be_a_pool() {
    let mut free = FreeAddresses::new(&[range("::/0")], false);
    assert_eq!(free.allocate_lowest(Family::V6), Some(ip("::")));
    assert_eq!(
        free.take(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
        Ok(())
    );
    assert!(free.release(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(free.release(ip("::")));
    assert_eq!(free.free_interval_count(Family::V6), 1);
}

#[test]
fn buggy_count_matches_counting_one_by_one() {
    for (first, last) in [
        (0u128, 0u128),
        (0, 255),
        (1, 254),
        (255, 256),
        (250, 1000),
        (256, 511),
    ] {
        let expected = (first..=last).filter(|&v| is_buggy_value(v)).count() as u128;
        assert_eq!(buggy_count(first, last), expected, "{first}..={last}");
    }
}

/// One operation on a small pool, for the model-based property test.
#[derive(Debug, Clone)]
enum Op {
    AllocateLowest,
    Take(u8),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::AllocateLowest),
        any::<u8>().prop_map(Op::Take),
        any::<u8>().prop_map(Op::Release),
    ]
}

proptest! {
    /// The free set behaves exactly like a set of allocated addresses checked one by one.
    #[test]
    fn the_free_set_agrees_with_a_one_by_one_model(
        pieces in proptest::collection::vec((0u8..=255, 0u8..=40), 1..4),
        avoid in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        // Small IPv4 pool around a .255/.0 boundary, built from possibly overlapping pieces.
        let base = u32::from(std::net::Ipv4Addr::new(192, 0, 2, 0)) as u128;
        let ranges: Vec<AddressRange> = pieces
            .iter()
            .map(|&(start, length)| {
                let first = base + u128::from(start);
                AddressRange::from_values(Family::V4, first, first + u128::from(length))
            })
            .collect();
        let in_pool = |value: u128| {
            ranges.iter().any(|r| r.values().0 <= value && value <= r.values().1)
                && !(avoid && is_buggy_value(value))
        };
        let mut free = FreeAddresses::new(&ranges, avoid);
        let mut allocated: BTreeSet<u128> = BTreeSet::new();
        let universe: Vec<u128> = (base..base + 300).filter(|&v| in_pool(v)).collect();
        prop_assert_eq!(free.usable_count(Family::V4), universe.len() as u128);
        for op in ops {
            match op {
                Op::AllocateLowest => {
                    let expected = universe.iter().copied().find(|v| !allocated.contains(v));
                    let got = free.allocate_lowest(Family::V4);
                    prop_assert_eq!(got, expected.map(|v| Family::V4.address(v)));
                    if let Some(v) = expected { allocated.insert(v); }
                }
                Op::Take(offset) => {
                    let value = base + u128::from(offset);
                    let address = Family::V4.address(value);
                    let expected = if !in_pool(value) {
                        Err(TakeError::NotInPool(address))
                    } else if allocated.contains(&value) {
                        Err(TakeError::AlreadyAllocated(address))
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(free.take(address), expected);
                    if expected.is_ok() { allocated.insert(value); }
                }
                Op::Release(offset) => {
                    let value = base + u128::from(offset);
                    prop_assert_eq!(free.release(Family::V4.address(value)), allocated.remove(&value));
                }
            }
            prop_assert_eq!(free.allocated_count(Family::V4), allocated.len() as u128);
            prop_assert_eq!(free.free_count(Family::V4), free.free_count_by_walking(Family::V4));
            prop_assert!(free.free_interval_count(Family::V4) <= pieces.len() + allocated.len() + 1);
        }
        for &v in &universe {
            prop_assert_eq!(free.is_free(Family::V4.address(v)), !allocated.contains(&v));
        }
    }

    /// Parsing what Display prints gives the same range back.
    #[test]
    fn display_then_parse_round_trips(a in any::<u32>(), b in any::<u32>(), v6 in any::<bool>(), c in any::<u128>(), d in any::<u128>()) {
        let parsed = if v6 {
            AddressRange::from_values(Family::V6, c.min(d), c.max(d))
        } else {
            AddressRange::from_values(Family::V4, u128::from(a.min(b)), u128::from(a.max(b)))
        };
        prop_assert_eq!(parsed.to_string().parse::<AddressRange>(), Ok(parsed));
    }

    /// Overlap detection finds exactly the pairs a quadratic comparison finds.
    #[test]
    fn overlap_detection_agrees_with_comparing_every_pair(
        entries in proptest::collection::vec((0u8..4, 0u16..1000, 0u16..200), 0..30)
    ) {
        let pools: Vec<(String, Vec<AddressRange>)> = (0..4)
            .map(|p| {
                let ranges = entries
                    .iter()
                    .filter(|(pool, _, _)| *pool == p)
                    .map(|&(_, start, length)| {
                        AddressRange::from_values(Family::V4, u128::from(start), u128::from(start) + u128::from(length))
                    })
                    .collect();
                (format!("pool-{p}"), ranges)
            })
            .collect();
        let found = find_overlaps(pools.iter().map(|(name, ranges)| (name.as_str(), ranges.iter())));
        let mut expected = 0;
        let flat: Vec<&AddressRange> = pools.iter().flat_map(|(_, r)| r.iter()).collect();
        for i in 0..flat.len() {
            for j in i + 1..flat.len() {
                if flat[i].overlaps(flat[j]) { expected += 1; }
            }
        }
        prop_assert_eq!(found.len(), expected);
    }
}

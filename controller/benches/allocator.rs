//! Allocator throughput: how fast the pure allocator hands out and takes back addresses.
//!
//! For a /8 IPv4 pool and a /64 IPv6 pool: allocate N Services (100,000), then churn (release
//! a pseudo-random Service, allocate a new one) N times, then rebuild a fresh allocator from
//! the assignments as a restarted controller does (`restore`). References measured in the same
//! run, on the same pool:
//! - a naive allocator (a `HashSet` of used addresses, scanned from the pool's start for the
//!   lowest free one): what the interval set avoids; O(n) per allocation, so measured on
//!   fewer Services and reported with its count;
//! - `BTreeSet<u128>` inserts of N addresses: the cost floor of any ordered bookkeeping.
//!
//! `cargo bench -p herald-controller --bench allocator` (add `-- --quick`, or set CI, for the
//! small mode CI uses to prove it still works; it asserts no timing).

use std::collections::{BTreeSet, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use herald_controller::allocator::{Allocator, PoolSpec, ServiceKey, ServiceRequest};
use herald_crds::address::{AddressRange, Family, address_value};

struct Sizes {
    services: usize,
    churn: usize,
    naive_services: usize,
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick") || std::env::var_os("CI").is_some();
    let sizes = if quick {
        Sizes {
            services: 5_000,
            churn: 5_000,
            naive_services: 1_000,
        }
    } else {
        Sizes {
            services: 100_000,
            churn: 100_000,
            naive_services: 10_000,
        }
    };
    println!(
        "# allocator throughput ({} mode): {} Services, {} churn operations",
        if quick { "quick" } else { "full" },
        sizes.services,
        sizes.churn
    );
    println!(
        "{:<8} {:<14} {:>14} {:>14} {:>14} {:>16} {:>16} {:>10} {:>10}",
        "pool",
        "family",
        "alloc/s",
        "churn ops/s",
        "restore/s",
        "naive alloc/s",
        "btreeset ins/s",
        "x naive",
        "x btree"
    );
    for (pool, family) in [("10.0.0.0/8", Family::V4), ("2001:db8::/64", Family::V6)] {
        run(pool, family, &sizes);
    }
}

fn run(pool_text: &str, family: Family, sizes: &Sizes) {
    let range: AddressRange = match pool_text.parse() {
        Ok(range) => range,
        Err(error) => {
            eprintln!("bad pool {pool_text}: {error}");
            return;
        }
    };
    let pool = PoolSpec::new("bench", vec![range]);
    let request = |i: usize| {
        let mut request = ServiceRequest::new("bench", format!("svc-{i}"));
        request.ip_families = vec![family];
        request
    };
    let requests: Vec<ServiceRequest> = (0..sizes.services + sizes.churn).map(request).collect();

    // Allocate N.
    let mut allocator = Allocator::new(vec![pool.clone()]);
    let start = Instant::now();
    for request in &requests[..sizes.services] {
        black_box(allocator.assign(request).is_ok());
    }
    let allocate = rate(sizes.services, start.elapsed());
    let assigned = allocator
        .pool_stats("bench")
        .map(|s| s.family(family).assigned)
        .unwrap_or_default();
    assert_eq!(
        assigned, sizes.services as u128,
        "every Service got an address"
    );

    // Churn: release a pseudo-random live Service, allocate a new one.
    let mut live: Vec<ServiceKey> = requests[..sizes.services]
        .iter()
        .map(|r| r.key.clone())
        .collect();
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    for request in &requests[sizes.services..] {
        let victim = (random.next() % live.len() as u64) as usize;
        black_box(allocator.release(&live[victim]));
        black_box(allocator.assign(request).is_ok());
        live[victim] = request.key.clone();
    }
    let churn = rate(sizes.churn, start.elapsed());

    // Restart: rebuild from the assignments.
    let snapshot: Vec<(ServiceKey, Vec<std::net::IpAddr>, Vec<String>)> = allocator
        .assignments()
        .map(|(k, a)| (k.clone(), a.ips(), a.allocated_from()))
        .collect();
    let by_key: std::collections::HashMap<&ServiceKey, &ServiceRequest> =
        requests.iter().map(|r| (&r.key, r)).collect();
    let mut rebuilt = Allocator::new(vec![pool]);
    let start = Instant::now();
    for (key, ips, pools) in &snapshot {
        if let Some(request) = by_key.get(key) {
            black_box(rebuilt.restore(request, ips, pools));
        }
    }
    let restore = rate(snapshot.len(), start.elapsed());

    let naive = naive_allocations(range, sizes.naive_services);
    let btree = btreeset_inserts(range, sizes.services);
    println!(
        "{:<8} {:<14} {:>14.0} {:>14.0} {:>14.0} {:>16} {:>16.0} {:>10.1} {:>10.2}",
        pool_text
            .split('/')
            .nth(1)
            .map_or("?".to_owned(), |p| format!("/{p}")),
        family.to_string(),
        allocate,
        churn,
        restore,
        format!("{naive:.0} (n={})", sizes.naive_services),
        btree,
        allocate / naive,
        allocate / btree
    );
}

/// The naive reference: a set of used addresses, scanned from the pool start each time.
fn naive_allocations(range: AddressRange, count: usize) -> f64 {
    let (_, first) = address_value(range.first());
    let (_, last) = address_value(range.last());
    let mut used: HashSet<u128> = HashSet::new();
    let start = Instant::now();
    for _ in 0..count {
        let mut candidate = first;
        while used.contains(&candidate) && candidate < last {
            candidate += 1;
        }
        used.insert(black_box(candidate));
    }
    rate(count, start.elapsed())
}

/// The floor: inserting `count` addresses of the pool into a `BTreeSet<u128>`.
fn btreeset_inserts(range: AddressRange, count: usize) -> f64 {
    let (_, first) = address_value(range.first());
    let mut set: BTreeSet<u128> = BTreeSet::new();
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let start = Instant::now();
    for _ in 0..count {
        set.insert(black_box(first + u128::from(random.next() % (1 << 24))));
    }
    rate(count, start.elapsed())
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// A tiny deterministic generator (xorshift64), so runs are comparable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

//! The free-address set of one pool: which of its addresses are still free, as intervals.
//!
//! Per family, the pool's shape (the union of its entries) and its free addresses are each a
//! `BTreeMap<start, end>` of disjoint inclusive `u128` intervals. Allocation takes the start of
//! the first free interval or splits the interval holding a requested address; release puts
//! one address back and merges it with adjacent intervals. Each is O(log n) in the number of
//! intervals, which is at most the number of entries plus the number of allocations; counts
//! are kept as running totals, so nothing walks the pool. Pure data, no I/O.
//!
//! With `avoidBuggyIPs`, `.0`/`.255` IPv4 addresses are not part of the usable pool. Invariant:
//! every free interval *starts* at a usable address (buggy ones may sit inside or at its end),
//! so the lowest free address is always the first interval's start.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{AddressRange, Family, address_value, buggy_count, is_buggy_value, merge};

/// Why a specific address could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// The address is not in the pool (or is a buggy address the pool avoids).
    #[error("{0} is not in the pool")]
    NotInPool(IpAddr),
    /// The address is in the pool but already allocated.
    #[error("{0} is already allocated")]
    AlreadyAllocated(IpAddr),
}

/// Disjoint inclusive intervals `start -> end`.
type Intervals = BTreeMap<u128, u128>;

/// One family's half of a [`FreeAddresses`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FamilySpace {
    /// The pool's addresses of this family (merged entries, buggy ones included).
    pool: Intervals,
    /// The free addresses; every interval starts at a usable address.
    free: Intervals,
    /// Usable addresses in the pool, saturating.
    usable: u128,
    /// Addresses currently allocated.
    allocated: u128,
}

/// One pool's address space and its free addresses, for both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeAddresses {
    avoid_buggy_ips: bool,
    families: [FamilySpace; 2],
}

impl FreeAddresses {
    /// A fully free pool made of `ranges` (overlapping entries count once). With
    /// `avoid_buggy_ips`, IPv4 addresses ending in `.0` or `.255` are never handed out.
    pub fn new(ranges: &[AddressRange], avoid_buggy_ips: bool) -> Self {
        let mut free = FreeAddresses {
            avoid_buggy_ips,
            families: [FamilySpace::default(), FamilySpace::default()],
        };
        for family in Family::ALL {
            let avoid = free.avoids(family);
            let space = &mut free.families[family.index()];
            for (first, last) in merge(ranges, family) {
                space.pool.insert(first, last);
                let range = AddressRange::from_values(family, first, last);
                space.usable = space.usable.saturating_add(range.usable_size(avoid));
                if let Some(start) = first_usable(avoid, first, last) {
                    space.free.insert(start, last);
                }
            }
        }
        free
    }

    /// Whether buggy-address avoidance applies to `family`.
    fn avoids(&self, family: Family) -> bool {
        self.avoid_buggy_ips && family == Family::V4
    }

    /// Whether this pool avoids `.0`/`.255` IPv4 addresses.
    pub fn avoids_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    /// Whether `address` is a usable address of the pool (allocated or not).
    pub fn contains(&self, address: IpAddr) -> bool {
        let (family, value) = address_value(address);
        if self.avoids(family) && is_buggy_value(value) {
            return false;
        }
        covering(&self.families[family.index()].pool, value).is_some()
    }

    /// Whether `address` is in the pool and not allocated.
    pub fn is_free(&self, address: IpAddr) -> bool {
        let (family, value) = address_value(address);
        if self.avoids(family) && is_buggy_value(value) {
            return false;
        }
        covering(&self.families[family.index()].free, value).is_some()
    }

    /// Whether the pool has any address of `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.families[family.index()].usable > 0
    }

    /// The lowest free address of `family`, without taking it.
    pub fn lowest_free(&self, family: Family) -> Option<IpAddr> {
        let space = &self.families[family.index()];
        space
            .free
            .first_key_value()
            .map(|(&start, _)| family.address(start))
    }

    /// Takes the lowest free address of `family`.
    pub fn allocate_lowest(&mut self, family: Family) -> Option<IpAddr> {
        let address = self.lowest_free(family)?;
        self.take(address).ok()?;
        Some(address)
    }

    /// Takes the specific address `address`.
    pub fn take(&mut self, address: IpAddr) -> Result<(), TakeError> {
        if !self.contains(address) {
            return Err(TakeError::NotInPool(address));
        }
        let (family, value) = address_value(address);
        let avoid = self.avoids(family);
        let space = &mut self.families[family.index()];
        let (start, end) =
            covering(&space.free, value).ok_or(TakeError::AlreadyAllocated(address))?;
        space.free.remove(&start);
        if start < value {
            space.free.insert(start, value - 1);
        }
        if value < end
            && let Some(next) = first_usable(avoid, value + 1, end)
        {
            space.free.insert(next, end);
        }
        space.allocated += 1;
        Ok(())
    }

    /// Returns `address` to the free set. Returns false (and changes nothing) when it is not a
    /// usable address of the pool or is already free.
    pub fn release(&mut self, address: IpAddr) -> bool {
        if !self.contains(address) || self.is_free(address) {
            return false;
        }
        let (family, value) = address_value(address);
        let space = &mut self.families[family.index()];
        let mut start = value;
        let mut end = value;
        // Merge with a free interval ending just below, and one starting just above.
        if let Some(adjacent_below_start) = value
            .checked_sub(1)
            .and_then(|before| space.free.range(..=before).next_back())
            .filter(|&(_, &below_end)| below_end.checked_add(1) == Some(value))
            .map(|(&below_start, _)| below_start)
        {
            start = adjacent_below_start;
        }
        if let Some(after) = value.checked_add(1)
            && let Some(next_end) = space.free.remove(&after)
        {
            end = next_end;
        }
        space.free.insert(start, end);
        space.allocated = space.allocated.saturating_sub(1);
        true
    }

    /// Usable addresses of `family` in the pool (saturating at `u128::MAX`).
    pub fn usable_count(&self, family: Family) -> u128 {
        self.families[family.index()].usable
    }

    /// Allocated addresses of `family`.
    pub fn allocated_count(&self, family: Family) -> u128 {
        self.families[family.index()].allocated
    }

    /// Free usable addresses of `family`.
    pub fn free_count(&self, family: Family) -> u128 {
        let space = &self.families[family.index()];
        space.usable.saturating_sub(space.allocated)
    }

    /// Number of free intervals of `family` (a measure of fragmentation, for tests/benches).
    pub fn free_interval_count(&self, family: Family) -> usize {
        self.families[family.index()].free.len()
    }

    /// Free addresses of `family` counted by walking the free intervals (O(intervals)); the
    /// running total [`FreeAddresses::free_count`] must always agree. For tests.
    pub fn free_count_by_walking(&self, family: Family) -> u128 {
        let avoid = self.avoids(family);
        self.families[family.index()]
            .free
            .iter()
            .map(|(&first, &last)| {
                AddressRange::from_values(family, first, last).usable_size(avoid)
            })
            .fold(0u128, u128::saturating_add)
    }
}

/// The interval of `intervals` holding `value`, if any.
fn covering(intervals: &Intervals, value: u128) -> Option<(u128, u128)> {
    intervals
        .range(..=value)
        .next_back()
        .filter(|&(_, &end)| value <= end)
        .map(|(&start, &end)| (start, end))
}

/// The first usable value in `first..=last` (skipping `.0`/`.255` when `avoid`).
fn first_usable(avoid: bool, first: u128, last: u128) -> Option<u128> {
    if !avoid {
        return Some(first);
    }
    let candidate = match first & 0xff {
        0 => first + 1,
        0xff => first + 2,
        _ => first,
    };
    // A range of only buggy values has none usable; buggy_count confirms nothing is missed.
    debug_assert!(candidate > last || !is_buggy_value(candidate));
    debug_assert!(candidate <= last || buggy_count(first, last) == last - first + 1);
    (candidate <= last).then_some(candidate)
}

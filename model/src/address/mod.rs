//! Address math for pools: parsing pool entries, `avoidBuggyIPs`, overlap detection between
//! pools, pool sizes, and a free-address set that allocates and releases in O(log n).
//!
//! Everything here is pure arithmetic over `u128` intervals tagged with an address [`Family`];
//! no pool is ever enumerated address by address, so a /8 IPv4 or a /64 IPv6 pool (or `::/0`)
//! costs the same as a /30. No I/O happens in this module.
//!
//! - [`AddressRange`]: one pool entry, an inclusive interval in one family. Parsed from a CIDR
//!   (`192.0.2.0/24`, `2001:db8::/64`), a host address (`192.0.2.7` = /32, `2001:db8::7` = /128)
//!   or a range `a-b` (same family, `a <= b`).
//! - [`parse_entries`]: a pool's `addresses` list, every invalid entry reported at once;
//!   [`parse_address_list`]: the `herald.dev/loadBalancerIPs` annotation.
//! - [`pool_size`]: addresses per family of a pool (overlapping entries once, buggy ones
//!   skipped on request), saturating `u128`.
//! - [`find_overlaps`]: which entries of which pools overlap, by a sort-and-sweep.
//! - [`FreeAddresses`]: one pool's address space and its free intervals; lowest-free or
//!   specific allocation, release, membership and counts per family.
//! - [`is_buggy_ipv4`]: the `avoidBuggyIPs` rule (IPv4 addresses ending in `.0` or `.255`).

mod free;
mod overlap;

pub use free::{FreeAddresses, TakeError};
pub use overlap::{EntryRef, Overlap, find_overlaps};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address family, named as Kubernetes names them in `spec.ipFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`IPv4` in `spec.ipFamilies`).
    V4,
    /// IPv6 (`IPv6` in `spec.ipFamilies`).
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of an address.
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address length in bits: the longest prefix length of the family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// Index for per-family arrays: 0 for IPv4, 1 for IPv6.
    pub fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    /// The highest address value of the family.
    pub(crate) fn max_value(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    /// The address with numeric value `value`. Values above the family's maximum are clamped
    /// (they never occur: every value in this module comes from an address of that family).
    pub(crate) fn address(self, value: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A family name that Kubernetes does not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IP family {0:?} (expected IPv4 or IPv6)")]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    /// Parses `spec.ipFamilies` entries: `IPv4` or `IPv6`.
    fn from_str(text: &str) -> Result<Self, UnknownFamily> {
        match text {
            "IPv4" => Ok(Family::V4),
            "IPv6" => Ok(Family::V6),
            other => Err(UnknownFamily(other.to_owned())),
        }
    }
}

/// Parses a comma-separated address list such as the `herald.dev/loadBalancerIPs` annotation
/// (`192.0.2.10,2001:db8::10`); spaces and empty items are ignored.
pub fn parse_address_list(text: &str) -> Result<Vec<IpAddr>, AddressError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_address)
        .collect()
}

/// An address as (family, numeric value).
pub fn address_value(address: IpAddr) -> (Family, u128) {
    match address {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// The `avoidBuggyIPs` rule: an IPv4 address whose last octet is 0 or 255 is skipped, because
/// some old client firmware treats it as a network or broadcast address. IPv6 has no such rule.
pub fn is_buggy_ipv4(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => matches!(a.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// Why a pool entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The entry is empty or only whitespace.
    #[error("empty address entry")]
    Empty,
    /// Part of the entry is not an IPv4 or IPv6 address.
    #[error("{text:?} is not an IP address")]
    InvalidAddress {
        /// The text that failed to parse.
        text: String,
    },
    /// The part after `/` is not a number.
    #[error("{text:?} is not a prefix length")]
    InvalidPrefixLength {
        /// The text after the `/`.
        text: String,
    },
    /// The prefix length is longer than the family allows.
    #[error("prefix length /{length} is too long for {family} (at most /{max})")]
    PrefixTooLong {
        /// The prefix length given.
        length: u8,
        /// The family of the address.
        family: Family,
        /// The family's longest prefix.
        max: u8,
    },
    /// A CIDR whose address has bits set beyond the prefix (`192.0.2.5/24`); refused rather
    /// than guessed at, since it may mean the /24 or the one address.
    #[error("{entry:?} has host bits set: write the network {network} or a single address")]
    HostBitsSet {
        /// The entry as written.
        entry: String,
        /// The network the prefix describes.
        network: String,
    },
    /// A range whose two ends are of different families.
    #[error("range {entry:?} mixes IPv4 and IPv6")]
    MixedFamilies {
        /// The entry as written.
        entry: String,
    },
    /// A range whose end is below its start.
    #[error("range {entry:?} ends before it starts")]
    ReversedRange {
        /// The entry as written.
        entry: String,
    },
}

/// One pool entry: the inclusive interval `first..=last` of addresses of one family.
///
/// Ordered by family, then first, then last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    family: Family,
    first: u128,
    last: u128,
}

impl AddressRange {
    /// The range `first..=last`; both of one family and `first <= last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, AddressError> {
        let (family, low) = address_value(first);
        let (last_family, high) = address_value(last);
        let entry = || format!("{first}-{last}");
        if family != last_family {
            return Err(AddressError::MixedFamilies { entry: entry() });
        }
        if low > high {
            return Err(AddressError::ReversedRange { entry: entry() });
        }
        Ok(AddressRange {
            family,
            first: low,
            last: high,
        })
    }

    /// The range holding the single address `address` (a /32 or /128).
    pub fn single(address: IpAddr) -> Self {
        let (family, value) = address_value(address);
        AddressRange {
            family,
            first: value,
            last: value,
        }
    }

    /// The network `network/prefix_length`; refuses host bits beyond the prefix.
    pub fn cidr(network: IpAddr, prefix_length: u8) -> Result<Self, AddressError> {
        let (family, value) = address_value(network);
        let bits = family.bits();
        if prefix_length > bits {
            return Err(AddressError::PrefixTooLong {
                length: prefix_length,
                family,
                max: bits,
            });
        }
        let host_bits = u32::from(bits - prefix_length);
        // host_mask has the low `host_bits` bits set; 128 host bits only for ::/0.
        let host_mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = value & !host_mask;
        if first != value {
            return Err(AddressError::HostBitsSet {
                entry: format!("{network}/{prefix_length}"),
                network: format!("{}/{prefix_length}", family.address(first)),
            });
        }
        Ok(AddressRange {
            family,
            first,
            last: first | host_mask,
        })
    }

    /// Internal constructor from raw values; callers guarantee `first <= last` within `family`.
    pub(crate) fn from_values(family: Family, first: u128, last: u128) -> Self {
        AddressRange {
            family,
            first,
            last,
        }
    }

    /// The family of every address in the range.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The lowest address.
    pub fn first(&self) -> IpAddr {
        self.family.address(self.first)
    }

    /// The highest address.
    pub fn last(&self) -> IpAddr {
        self.family.address(self.last)
    }

    /// (lowest, highest) as numbers.
    pub(crate) fn values(&self) -> (u128, u128) {
        (self.first, self.last)
    }

    /// Number of addresses, saturating at `u128::MAX` (only `::/0` saturates).
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Number of addresses that `avoidBuggyIPs` leaves usable (all of them when `avoid` is
    /// false or the range is IPv6). Saturating like [`AddressRange::size`].
    pub fn usable_size(&self, avoid_buggy_ips: bool) -> u128 {
        if avoid_buggy_ips && self.family == Family::V4 {
            // A V4 range is at most 2^32 addresses, so no saturation here.
            (self.last - self.first + 1) - buggy_count(self.first, self.last)
        } else {
            self.size()
        }
    }

    /// Whether `address` lies in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        let (family, value) = address_value(address);
        family == self.family && self.first <= value && value <= self.last
    }

    /// The addresses common to both ranges, if any.
    pub fn intersection(&self, other: &AddressRange) -> Option<AddressRange> {
        if self.family != other.family {
            return None;
        }
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(AddressRange {
            family: self.family,
            first,
            last,
        })
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.intersection(other).is_some()
    }

    /// The prefix length if the range is exactly one CIDR block.
    pub fn prefix_length(&self) -> Option<u8> {
        let bits = self.family.bits();
        if self.first == 0 && self.last == self.family.max_value() {
            return Some(0);
        }
        // Not the whole family, so the size fits in u128 (for V6 the full range is excluded).
        let size = self.last - self.first + 1;
        if !size.is_power_of_two() || !self.first.is_multiple_of(size) {
            return None;
        }
        let host_bits = u8::try_from(size.trailing_zeros()).ok()?;
        bits.checked_sub(host_bits)
    }
}

impl fmt::Display for AddressRange {
    /// CIDR notation when the range is one block (`192.0.2.0/24`, `192.0.2.7/32`), else `a-b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_length() {
            Some(length) => write!(f, "{}/{length}", self.first()),
            None => write!(f, "{}-{}", self.first(), self.last()),
        }
    }
}

impl FromStr for AddressRange {
    type Err = AddressError;

    /// Parses a pool entry: `a.b.c.d/n`, `x::/n`, a host address, or `a-b` (spaces around
    /// either side of the `-` and around the entry are allowed).
    fn from_str(entry: &str) -> Result<Self, AddressError> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some((start, end)) = entry.split_once('-') {
            return AddressRange::new(parse_address(start)?, parse_address(end)?);
        }
        if let Some((network, length)) = entry.split_once('/') {
            let network = parse_address(network)?;
            let length_text = length.trim();
            let length =
                length_text
                    .parse::<u8>()
                    .map_err(|_| AddressError::InvalidPrefixLength {
                        text: length_text.to_owned(),
                    })?;
            return AddressRange::cidr(network, length);
        }
        Ok(AddressRange::single(parse_address(entry)?))
    }
}

fn parse_address(text: &str) -> Result<IpAddr, AddressError> {
    let text = text.trim();
    text.parse().map_err(|_| AddressError::InvalidAddress {
        text: text.to_owned(),
    })
}

/// One invalid entry in a pool's address list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("addresses[{index}] {entry:?}: {error}")]
pub struct EntryError {
    /// Position in the list.
    pub index: usize,
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    #[source]
    pub error: AddressError,
}

/// Parses a pool's `addresses` list. On failure returns every invalid entry, so one condition
/// can name them all.
pub fn parse_entries<S: AsRef<str>>(
    entries: impl IntoIterator<Item = S>,
) -> Result<Vec<AddressRange>, Vec<EntryError>> {
    let mut ranges = Vec::new();
    let mut errors = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let entry = entry.as_ref();
        match entry.parse::<AddressRange>() {
            Ok(range) => ranges.push(range),
            Err(error) => errors.push(EntryError {
                index,
                entry: entry.to_owned(),
                error,
            }),
        }
    }
    if errors.is_empty() {
        Ok(ranges)
    } else {
        Err(errors)
    }
}

/// Number of addresses across `ranges` of `family`, counting overlapping entries once and
/// skipping buggy IPv4 addresses when `avoid_buggy_ips`; saturating at `u128::MAX`.
pub fn pool_size(ranges: &[AddressRange], family: Family, avoid_buggy_ips: bool) -> u128 {
    merge(ranges, family)
        .iter()
        .map(|&(first, last)| {
            AddressRange::from_values(family, first, last).usable_size(avoid_buggy_ips)
        })
        .fold(0u128, u128::saturating_add)
}

/// The union of the `family` entries of `ranges` as sorted, disjoint, non-adjacent intervals.
pub(crate) fn merge(ranges: &[AddressRange], family: Family) -> Vec<(u128, u128)> {
    let mut values: Vec<(u128, u128)> = ranges
        .iter()
        .filter(|range| range.family == family)
        .map(AddressRange::values)
        .collect();
    values.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(values.len());
    for (first, last) in values {
        match merged.last_mut() {
            Some((_, previous_last)) if first <= previous_last.saturating_add(1) => {
                *previous_last = (*previous_last).max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// Whether an IPv4 value ends in `.0` or `.255`.
pub(crate) fn is_buggy_value(value: u128) -> bool {
    matches!(value & 0xff, 0 | 0xff)
}

/// How many IPv4 values in `first..=last` end in `.0` or `.255`, without enumerating them.
pub(crate) fn buggy_count(first: u128, last: u128) -> u128 {
    // Values in 0..=n whose low octet equals `octet`.
    fn up_to(n: u128, octet: u128) -> u128 {
        if n < octet { 0 } else { (n - octet) / 256 + 1 }
    }
    let in_range = |octet| {
        let below = if first == 0 {
            0
        } else {
            up_to(first - 1, octet)
        };
        up_to(last, octet) - below
    };
    in_range(0) + in_range(255)
}

#[cfg(test)]
mod tests;

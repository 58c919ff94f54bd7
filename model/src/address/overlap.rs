//! Overlap detection between pool entries: which entries of which pools share addresses.
//!
//! A sort-and-sweep over all entries (O(n log n + overlaps)); never enumerates addresses.
//! Pure, no I/O.

use super::AddressRange;

/// One entry of one pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryRef {
    /// The pool's name.
    pub pool: String,
    /// Position of the entry in the pool's address list.
    pub index: usize,
    /// The entry.
    pub range: AddressRange,
}

/// Two entries that share addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Overlap {
    /// The entry that starts lower (ties: by pool name, then index).
    pub first: EntryRef,
    /// The other entry.
    pub second: EntryRef,
    /// The addresses both contain.
    pub common: AddressRange,
}

impl Overlap {
    /// Whether both entries belong to the same pool (harmless: a pool is the union of its
    /// entries, but usually a typo worth a warning).
    pub fn within_one_pool(&self) -> bool {
        self.first.pool == self.second.pool
    }

    /// Whether this overlap involves the pool `name`.
    pub fn involves(&self, name: &str) -> bool {
        self.first.pool == name || self.second.pool == name
    }
}

/// Every pair of overlapping entries among `pools` (name, entries), sorted. Pairs within one
/// pool are included; see [`Overlap::within_one_pool`].
pub fn find_overlaps<'a, P, R>(pools: P) -> Vec<Overlap>
where
    P: IntoIterator<Item = (&'a str, R)>,
    R: IntoIterator<Item = &'a AddressRange>,
{
    let mut entries: Vec<EntryRef> = pools
        .into_iter()
        .flat_map(|(pool, ranges)| {
            ranges
                .into_iter()
                .enumerate()
                .map(move |(index, range)| EntryRef {
                    pool: pool.to_owned(),
                    index,
                    range: *range,
                })
        })
        .collect();
    entries.sort_by(|a, b| {
        (a.range.family(), a.range.values(), &a.pool, a.index).cmp(&(
            b.range.family(),
            b.range.values(),
            &b.pool,
            b.index,
        ))
    });

    let mut overlaps = Vec::new();
    // Entries that started earlier and may still reach the current one.
    let mut active: Vec<&EntryRef> = Vec::new();
    for entry in &entries {
        let (start, _) = entry.range.values();
        active.retain(|open| {
            open.range.family() == entry.range.family() && open.range.values().1 >= start
        });
        for open in &active {
            if let Some(common) = open.range.intersection(&entry.range) {
                overlaps.push(Overlap {
                    first: (*open).clone(),
                    second: entry.clone(),
                    common,
                });
            }
        }
        active.push(entry);
    }
    overlaps.sort();
    overlaps
}

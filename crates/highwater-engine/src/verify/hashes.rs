//! The row-by-row comparison in bounded memory: 16 bytes per source row,
//! 4 per target row's match count, whatever the table's width.
//!
//! ```text
//! source rows ─► SourceRows: (key hash, row hash) pushed, then sealed
//!                (sorted; keys not due dropped; binary search from then on)
//! table target ─► Matcher::add, one row at a time (streamed, not kept)
//! file target  ─► Replay (outputs in commit order; the latest version of
//!                 each key, deletes applied; compacted as it grows)
//!                 ─► Matcher::add for each replayed row
//! Matcher::finish ─► missing / different / extra key hashes
//! ```
//!
//! A sorted vector, not a map: a `HashMap<u64, (u64, u32)>` costs about
//! 60 bytes an entry with its growth slack, and the target side held one
//! too (about 130 bytes a key in all; 212 MB peak for 1M rows). Sorting by
//! the key's hash needs no ordering that every database agrees on (text
//! collations differ), unlike a merge of two key-ordered reads.

use std::collections::HashMap;
use std::ops::Range;

/// The source's due rows: (key hash, row hash), sorted by key hash once
/// [`SourceRows::seal`]ed. A key may repeat (a whole-row key of a table
/// without a primary key).
///
/// One growing vector: past a few MiB the allocator maps it, and growing
/// it remaps pages rather than copying (the unused capacity is never
/// touched, so not resident). Chunks moved into an exactly sized vector at
/// the end were measured worse: both are resident for a moment.
#[derive(Default)]
pub(super) struct SourceRows {
    rows: Vec<(u64, u64)>,
    not_due: Vec<u64>,
    sealed: bool,
}

impl SourceRows {
    pub(super) fn push(&mut self, key: u64, row: u64) {
        self.sealed = false;
        self.rows.push((key, row));
    }

    /// `key` has a row past the position: it is left out on both sides.
    pub(super) fn not_due(&mut self, key: u64) {
        self.not_due.push(key);
    }

    /// Sort, drop the keys that are not due, release the growth slack.
    pub(super) fn seal(&mut self) {
        self.not_due.sort_unstable();
        self.not_due.dedup();
        self.not_due.shrink_to_fit();
        self.rows.sort_unstable();
        if !self.not_due.is_empty() {
            let not_due = &self.not_due;
            self.rows.retain(|(k, _)| not_due.binary_search(k).is_err());
        }
        self.rows.shrink_to_fit();
        self.sealed = true;
    }

    /// Rows due.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Distinct keys past the position.
    pub(super) fn not_due_count(&self) -> usize {
        self.not_due.len()
    }

    pub(super) fn contains(&self, key: u64) -> bool {
        !self.group(key).is_empty()
    }

    pub(super) fn is_not_due(&self, key: u64) -> bool {
        self.not_due.binary_search(&key).is_ok()
    }

    /// The indexes of `key`'s rows.
    fn group(&self, key: u64) -> Range<usize> {
        debug_assert!(self.sealed);
        let start = self.rows.partition_point(|(k, _)| *k < key);
        let end = start + self.rows[start..].partition_point(|(k, _)| *k == key);
        start..end
    }
}

/// What differs, by key hash; extra keys the source lacks as text.
pub(super) struct Hashes {
    pub missing: Vec<u64>,
    pub different: Vec<u64>,
    /// Keyless comparisons: more copies of a source row in the target.
    pub extra_in_source: Vec<u64>,
    pub extra: Vec<String>,
}

/// Target rows, one at a time, against sealed source rows.
pub(super) struct Matcher<'a> {
    src: &'a SourceRows,
    /// Target rows seen per source key (at the index of its first row);
    /// saturates at 65,535 copies of one whole row.
    seen: Vec<u16>,
    different: Vec<u64>,
    extra: HashMap<u64, String>,
    /// The whole row is the key: copies are counted, not compared.
    keyless: bool,
}

impl<'a> Matcher<'a> {
    pub(super) fn new(src: &'a SourceRows, keyless: bool) -> Matcher<'a> {
        Matcher {
            src,
            seen: vec![0; src.rows.len()],
            different: Vec::new(),
            extra: HashMap::new(),
            keyless,
        }
    }

    /// One target row; `text` renders its key (asked only for an extra key).
    pub(super) fn add(&mut self, key: u64, row: u64, text: impl FnOnce() -> String) {
        let group = self.src.group(key);
        if group.is_empty() {
            if !self.src.is_not_due(key) {
                self.extra.entry(key).or_insert_with(text);
            }
            return;
        }
        self.seen[group.start] = self.seen[group.start].saturating_add(1);
        if !self.keyless && !self.src.rows[group].iter().any(|(_, h)| *h == row) {
            self.different.push(key);
        }
    }

    pub(super) fn finish(mut self) -> Hashes {
        let mut d = Hashes {
            missing: vec![],
            different: std::mem::take(&mut self.different),
            extra_in_source: vec![],
            extra: self.extra.into_values().collect(),
        };
        let rows = &self.src.rows;
        let mut i = 0;
        while i < rows.len() {
            let key = rows[i].0;
            let n = rows[i..].partition_point(|(k, _)| *k == key);
            let seen = self.seen[i] as usize;
            match (self.keyless, seen) {
                (_, 0) => d.missing.push(key),
                (false, t) if t != n => d.different.push(key),
                (true, t) if t < n => d.missing.push(key),
                (true, t) if t > n => d.extra_in_source.push(key),
                _ => {}
            }
            i += n;
        }
        d.different.sort_unstable();
        d.different.dedup();
        d
    }
}

/// A deleted key in a [`Replay`].
const TOMBSTONE: u64 = u64::MAX;
/// A [`Replay`] compacts once it holds this many more entries than after
/// its last compaction (at least).
const REPLAY_SLACK: usize = 1 << 16;

/// A file target's rows replayed in commit order: (key hash, row hash).
/// With `last_wins` (watermark, change tracking) a later row of a key
/// replaces the earlier and a delete removes it; otherwise (full copies,
/// whole-row keys) every row counts. Compacted (stable sort, the last
/// entry of each key kept, deletes dropped) whenever it has grown by half
/// since the last compaction, so it stays near one entry per live key.
pub(super) struct Replay {
    entries: Vec<(u64, u64)>,
    limit: usize,
    last_wins: bool,
}

impl Replay {
    pub(super) fn new(last_wins: bool) -> Replay {
        Replay {
            entries: Vec::new(),
            limit: REPLAY_SLACK,
            last_wins,
        }
    }

    pub(super) fn upsert(&mut self, key: u64, row: u64) {
        // A row hash equal to the tombstone is one in 2^64; nudge it.
        self.push(key, row.min(TOMBSTONE - 1));
    }

    pub(super) fn delete(&mut self, key: u64) {
        if self.last_wins {
            self.push(key, TOMBSTONE);
        }
    }

    /// A full reload: the copy starts afresh.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    fn push(&mut self, key: u64, row: u64) {
        if self.last_wins && self.entries.len() >= self.limit {
            self.compact();
            let len = self.entries.len();
            self.limit = len + (len / 2).max(REPLAY_SLACK);
            self.entries.reserve_exact(self.limit - len);
        }
        self.entries.push((key, row));
    }

    fn compact(&mut self) {
        // Stable: the entries of one key stay in replay order.
        self.entries.sort_by_key(|(k, _)| *k);
        self.entries.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                *kept = *later;
                true
            } else {
                false
            }
        });
        self.entries.retain(|(_, h)| *h != TOMBSTONE);
    }

    /// The replayed rows.
    pub(super) fn finish(mut self) -> Vec<(u64, u64)> {
        if self.last_wins {
            self.compact();
        }
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(rows: &[(u64, u64)], not_due: &[u64]) -> SourceRows {
        let mut s = SourceRows::default();
        for (k, h) in rows {
            s.push(*k, *h);
        }
        for k in not_due {
            s.not_due(*k);
        }
        s.seal();
        s
    }

    #[test]
    fn keyed_rows_are_missing_different_or_extra() {
        let src = sealed(&[(3, 30), (1, 10), (2, 20), (5, 50), (4, 40)], &[5, 9]);
        assert_eq!(src.len(), 4);
        let mut m = Matcher::new(&src, false);
        m.add(1, 10, || unreachable!());
        m.add(2, 21, || unreachable!());
        m.add(7, 70, || "7".into());
        m.add(7, 70, || "7".into());
        m.add(9, 90, || unreachable!()); // not due: not extra
        m.add(5, 51, || unreachable!()); // not due
        m.add(4, 40, || unreachable!());
        m.add(4, 40, || unreachable!()); // twice: different
        let d = m.finish();
        assert_eq!(d.missing, [3]);
        assert_eq!(d.different, [2, 4]);
        assert_eq!(d.extra, ["7"]);
    }

    #[test]
    fn whole_row_keys_count_copies() {
        let src = sealed(&[(1, 1), (1, 1), (2, 2), (3, 3)], &[]);
        let mut m = Matcher::new(&src, true);
        m.add(1, 1, || unreachable!());
        m.add(2, 2, || unreachable!());
        m.add(2, 2, || unreachable!());
        let d = m.finish();
        assert_eq!(d.missing, [1, 3]);
        assert_eq!(d.extra_in_source, [2]);
    }

    #[test]
    fn replay_keeps_the_latest_version_and_applies_deletes() {
        let mut r = Replay::new(true);
        // Enough entries to compact on the way several times.
        for round in 0..4u64 {
            for k in 0..50_000u64 {
                r.upsert(k, round);
            }
        }
        r.delete(7);
        r.upsert(8, 99);
        r.delete(9);
        r.upsert(9, 100);
        let rows = r.finish();
        assert_eq!(rows.len(), 49_999);
        assert!(!rows.iter().any(|(k, _)| *k == 7));
        assert_eq!(rows.iter().find(|(k, _)| *k == 8), Some(&(8, 99)));
        assert_eq!(rows.iter().find(|(k, _)| *k == 9), Some(&(9, 100)));
        assert_eq!(rows.iter().find(|(k, _)| *k == 10), Some(&(10, 3)));

        let mut all = Replay::new(false);
        all.upsert(1, 1);
        all.upsert(1, 1);
        all.delete(1);
        assert_eq!(all.finish(), [(1, 1), (1, 1)]);
    }
}

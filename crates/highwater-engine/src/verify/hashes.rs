//! The row-by-row comparison in bounded memory: 16 bytes per source row,
//! and 2 more (a match count) or 1 (a file target's latest row: equal,
//! different or deleted),
//! whatever the table's width; nothing per target row.
//!
//! ```text
//! source rows ─► SourceRows: (key hash, row hash) pushed, then sealed
//!                (sorted; keys not due dropped; binary search from then on)
//! table target ─► Matcher::add, one row at a time (streamed, not kept)
//! file target  ─► outputs in commit order: Latest (watermark, change
//!                 tracking: the latest row hash per source key, deletes
//!                 applied) or Matcher::add (full copies, whole-row keys)
//! Matcher::finish / Latest::finish ─► missing / different / extra keys
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
    pub(super) fn len(&self) -> usize {
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

    /// A full reload: the copy starts afresh.
    pub(super) fn clear(&mut self) {
        self.seen.fill(0);
        self.different.clear();
        self.extra.clear();
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

/// A deleted key in [`Latest::outside`].
const TOMBSTONE: u64 = u64::MAX;

/// What the latest replayed row of a source key says ([`Latest::state`]).
const UNSEEN: u8 = 0;
const EQUAL: u8 = 1;
const DIFFERENT: u8 = 2;
const DELETED: u8 = 3;

/// A file target replayed in commit order where a later row of a key
/// replaces the earlier and a delete removes it (watermark, change
/// tracking), kept beside the sealed source rows: one byte per source key
/// saying whether its latest replayed row equals the source's (compared
/// when it is replayed), and a map for the keys the source does not have
/// (extra or not due; few unless the target is far off). Nothing per
/// replayed row: a list of the replayed rows compacted as it grew held 16
/// bytes a row plus growth slack and a stable sort's buffer (122 MiB at 2M
/// rows); a row hash per source key, 8 bytes (99 MiB).
pub(super) struct Latest<'a> {
    src: &'a SourceRows,
    /// Per source row, at the index of its key's first row.
    state: Vec<u8>,
    outside: HashMap<u64, u64>,
}

impl<'a> Latest<'a> {
    pub(super) fn new(src: &'a SourceRows) -> Latest<'a> {
        Latest {
            src,
            state: vec![UNSEEN; src.rows.len()],
            outside: HashMap::new(),
        }
    }

    pub(super) fn upsert(&mut self, key: u64, row: u64) {
        let group = self.src.group(key);
        if group.is_empty() {
            // A row hash equal to the tombstone is one in 2^64; nudge it.
            self.outside.insert(key, row.min(TOMBSTONE - 1));
            return;
        }
        let rows = &self.src.rows[group.clone()];
        self.state[group.start] = match rows.len() == 1 && rows[0].1 == row {
            true => EQUAL,
            false => DIFFERENT,
        };
    }

    pub(super) fn delete(&mut self, key: u64) {
        let group = self.src.group(key);
        if group.is_empty() {
            self.outside.insert(key, TOMBSTONE);
        } else {
            self.state[group.start] = DELETED;
        }
    }

    /// A full reload: the copy starts afresh.
    pub(super) fn clear(&mut self) {
        self.state.fill(UNSEEN);
        self.outside.clear();
    }

    /// What differs; `text` renders an extra key from its hash.
    pub(super) fn finish(self, mut text: impl FnMut(u64) -> String) -> Hashes {
        let mut d = Hashes {
            missing: vec![],
            different: vec![],
            extra_in_source: vec![],
            extra: vec![],
        };
        let rows = &self.src.rows;
        let mut i = 0;
        while i < rows.len() {
            let key = rows[i].0;
            let n = rows[i..].partition_point(|(k, _)| *k == key);
            match self.state[i] {
                UNSEEN | DELETED => d.missing.push(key),
                DIFFERENT => d.different.push(key),
                _ => {}
            }
            i += n;
        }
        for (key, value) in self.outside {
            if value != TOMBSTONE && !self.src.is_not_due(key) {
                d.extra.push(text(key));
            }
        }
        d
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
    fn latest_keeps_the_last_version_and_applies_deletes() {
        let src = sealed(&[(1, 10), (2, 20), (3, 30), (4, 40), (6, 60)], &[5]);
        let mut l = Latest::new(&src);
        for round in 0..3u64 {
            for k in 1..=8u64 {
                l.upsert(k, k * 10 + round);
            }
        }
        l.upsert(1, 10); // back to the source's row
        l.delete(2); // deleted: missing
        l.upsert(3, 30);
        l.delete(3);
        l.upsert(3, 30); // deleted then inserted again: equal
        l.delete(7); // an extra key deleted: not extra
        l.upsert(4, 41); // different
        // 5 is not due; 8 is extra; 6 stays different (62)
        let mut d = l.finish(|k| k.to_string());
        d.extra.sort();
        assert_eq!(d.missing, [2]);
        assert_eq!(d.different, [4, 6]);
        assert_eq!(d.extra, ["8"]);

        let mut l = Latest::new(&src);
        l.upsert(9, 1);
        l.clear();
        l.upsert(1, 10);
        let d = l.finish(|k| k.to_string());
        assert_eq!(d.missing, [2, 3, 4, 6]);
        assert!(d.extra.is_empty());
    }
}

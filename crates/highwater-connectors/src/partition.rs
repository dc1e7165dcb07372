//! `partitions: N`: what PostgreSQL and MariaDB share — how many readers
//! `auto` opens and how a key span is cut into ranges.

/// Below this many rows (the database's estimate) `auto` reads over one
/// connection: the extra connections cost more than they save.
const AUTO_MIN_ROWS: f64 = 500_000.0;

/// The most connections `auto` opens.
const AUTO_MAX: usize = 4;

/// How many readers to open: `wanted`, or for `auto` (0) one per core (at
/// most [`AUTO_MAX`]) when the table has about [`AUTO_MIN_ROWS`] rows or
/// more. `None`: one reader.
pub(crate) fn readers(wanted: usize, estimated_rows: f64) -> Option<usize> {
    let n = match wanted {
        0 if estimated_rows < AUTO_MIN_ROWS => return None,
        0 => std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
            .clamp(1, AUTO_MAX),
        n => n,
    };
    (n > 1).then_some(n)
}

/// `[lo, hi]` in at most `n` contiguous ranges covering it exactly.
pub(crate) fn split(lo: i128, hi: i128, n: usize) -> Vec<(i128, i128)> {
    let span = hi - lo + 1;
    let n = (n as i128).clamp(1, span.max(1));
    (0..n)
        .map(|i| (lo + span * i / n, lo + span * (i + 1) / n - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn ranges_cover_the_key_span_exactly() {
        for (lo, hi, n) in [
            (1, 10, 3),
            (0, 0, 4),
            (i64::MIN as i128, i64::MAX as i128, 4),
            (0, u64::MAX as i128, 3),
            (-5, 5, 16),
            (7, 9, 8),
        ] {
            let r = split(lo, hi, n);
            assert_eq!(r.first().unwrap().0, lo);
            assert_eq!(r.last().unwrap().1, hi);
            assert!(r.len() <= n);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0, "{r:?}");
            }
            assert!(r.iter().all(|(a, b)| a <= b), "{r:?}");
        }
    }
}

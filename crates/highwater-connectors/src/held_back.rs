//! Rows a watermark run leaves for later: how many, why, and when a run
//! picks them up. Sources count them in their snapshot (only when the bound
//! stopped below the newest cursor value) and pass the sentence as a note.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use highwater_core::{CursorValue, Lag};

/// Why the upper bound of a watermark read stopped below the newest value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Why {
    /// The oldest open transaction started then (the late-commit cap).
    pub open_since: Option<DateTime<Utc>>,
    /// Transactions whose start this role cannot see are still open
    /// (PostgreSQL): the bound stayed at the previous watermark.
    pub hidden_open: bool,
    /// `lag:` of the stream.
    pub lag: Option<Lag>,
    /// Zone-less cursors: the margin for writers in unknown time zones.
    pub zone_margin_hours: Option<i64>,
}

/// What the count query found above the bound.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counted {
    pub rows: u64,
    /// Of those, rows whose value lies in the future.
    pub future_rows: u64,
    /// The greatest value held back.
    pub newest: Option<CursorValue>,
}

/// The moment a cursor value stands for (zone-less values read as UTC wall
/// clock); `None` for integers and text that is no timestamp.
pub(crate) fn instant(v: &CursorValue) -> Option<DateTime<Utc>> {
    match v {
        CursorValue::Int(_) => None,
        CursorValue::TimestampTz(us) | CursorValue::Timestamp(us) => {
            DateTime::from_timestamp_micros(*us)
        }
        CursorValue::Date(d) => DateTime::from_timestamp(*d as i64 * 86_400, 0),
        CursorValue::Text(t) => {
            let t = t.trim();
            if let Ok(z) = DateTime::parse_from_rfc3339(t) {
                return Some(z.with_timezone(&Utc));
            }
            for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
                    return Some(n.and_utc());
                }
            }
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        }
    }
}

/// A `lag:` duration as the config writes it (`30s`, `5m`, `2h`, `1d`).
pub(crate) fn duration_text(us: i64) -> String {
    const S: i64 = 1_000_000;
    match us {
        0 => "0s".into(),
        _ if us % (86_400 * S) == 0 => format!("{}d", us / (86_400 * S)),
        _ if us % (3_600 * S) == 0 => format!("{}h", us / (3_600 * S)),
        _ if us % (60 * S) == 0 => format!("{}m", us / (60 * S)),
        _ if us % S == 0 => format!("{}s", us / S),
        _ => format!("{}ms", us / 1000),
    }
}

fn when_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The note for rows held back above `above` (the new watermark, or the
/// bound when no row lies below it). `None` when nothing is held back.
pub(crate) fn note(
    cursor: &str,
    above: &str,
    now: DateTime<Utc>,
    why: &Why,
    c: &Counted,
) -> Option<String> {
    if c.rows == 0 {
        return None;
    }
    let mut reasons = Vec::new();
    if why.hidden_open {
        reasons.push(
            "transactions of other roles that are still open (this role cannot see when they started)"
                .to_string(),
        );
    }
    if let Some(t) = why.open_since {
        reasons.push(format!("an open transaction (since {})", when_text(t)));
    }
    if let Some(h) = why.zone_margin_hours {
        reasons.push(format!(
            "the {h}-hour zone margin of zone-less cursors (writers' time zones are unknown; \
             `writer_time_zone: \"+00:00\"` on the stream says which offset they write in)"
        ));
    }
    match why.lag {
        Some(Lag::Micros(us)) if us > 0 => reasons.push(format!("lag: {}", duration_text(us))),
        Some(Lag::Units(n)) if n > 0 => reasons.push(format!("lag: {n}")),
        _ => {}
    }
    if c.future_rows > 0 {
        reasons.push(format!(
            "values in the future ({} of them after {})",
            c.future_rows,
            when_text(now)
        ));
    }
    if reasons.is_empty() {
        reasons.push("the late-commit cap".to_string());
    }
    // When a run (with no transaction open) reaches the newest of them.
    let ready = c.newest.as_ref().and_then(instant).map(|t| {
        let margin = Duration::hours(why.zone_margin_hours.unwrap_or(0));
        let lag = match why.lag {
            Some(Lag::Micros(us)) => Duration::microseconds(us),
            _ => Duration::zero(),
        };
        t.checked_add_signed(margin + lag + Duration::seconds(1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    let waits_for_trx = why.hidden_open || why.open_since.is_some();
    let when = match (waits_for_trx, ready) {
        (true, Some(r)) if r > now => format!(
            "a run after that transaction ends and from {} on copies them",
            when_text(r)
        ),
        (true, _) => "a run after that transaction ends copies them".to_string(),
        (false, Some(r)) if r > now => format!("a run from {} on copies them", when_text(r)),
        (false, Some(_)) => "a later run copies them".to_string(),
        (false, None) => match why.lag {
            Some(Lag::Units(n)) => {
                format!("a later run copies them once newer rows move {cursor} {n} past them")
            }
            _ => "a later run copies them".to_string(),
        },
    };
    Some(format!(
        "{} row(s) with {cursor} above {above} are held back by {}; {when}",
        c.rows,
        reasons.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_count_reason_and_time() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = Counted {
            rows: 3,
            future_rows: 0,
            newest: Some(CursorValue::TimestampTz(now.timestamp_micros() - 1_000_000)),
        };
        let why = Why {
            lag: Some(Lag::Micros(30_000_000)),
            ..Why::default()
        };
        let n = note("at", "2023-11-14T22:13:00", now, &why, &c).unwrap();
        assert!(n.starts_with("3 row(s) with at above 2023-11-14T22:13:00 are held back by lag: 30s; a run from 2023-11-14 22:13:50 UTC on"), "{n}");
        let why = Why {
            open_since: Some(now),
            ..Why::default()
        };
        let n = note("at", "x", now, &why, &c).unwrap();
        assert!(
            n.contains("an open transaction (since 2023-11-14 22:13:20 UTC)"),
            "{n}"
        );
        assert!(
            n.ends_with("a run after that transaction ends copies them"),
            "{n}"
        );
        assert!(note("at", "x", now, &why, &Counted::default()).is_none());
        assert_eq!(duration_text(90_000_000), "90s");
        assert_eq!(duration_text(7_200_000_000), "2h");
        assert_eq!(
            instant(&CursorValue::Text("2024-01-01 10:00:05".into())),
            DateTime::from_timestamp(1_704_103_205, 0)
        );
    }
}

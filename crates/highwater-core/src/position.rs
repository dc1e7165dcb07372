//! What the state store keeps per stream: a watermark or a change version.
//!
//! Cursor values keep full precision and their time zone: timestamps are
//! microseconds (UTC for zoned types), dates are days since 1970-01-01, and
//! SQLite's text timestamps are kept as the exact text the database stores,
//! because SQLite compares them as text.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

const MICROS_PER_SEC: i64 = 1_000_000;

/// One value of a cursor column, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorValue {
    /// Integer key (smallint, int, bigint).
    Int(i64),
    /// Timestamp with time zone: microseconds since the Unix epoch, UTC.
    TimestampTz(i64),
    /// Timestamp without time zone: microseconds since 1970-01-01 00:00 (wall clock).
    Timestamp(i64),
    /// Date: days since 1970-01-01.
    Date(i32),
    /// A value compared as text by its database (SQLite's TEXT timestamps).
    Text(String),
}

impl CursorValue {
    /// How far `self` is ahead of `older`: seconds for times (`"seconds"`),
    /// the difference for integers (`"units"`); `None` for values of other
    /// kinds or text that is no timestamp.
    pub fn ahead_of(&self, older: &CursorValue) -> Option<(f64, &'static str)> {
        use CursorValue::*;
        let text_micros = |t: &str| {
            let t = t.trim_end_matches('Z');
            [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|t| t.and_utc().timestamp_micros())
        };
        let micros = |a: i64, b: i64| Some(((a - b) as f64 / 1e6, "seconds"));
        match (self, older) {
            (Int(a), Int(b)) => Some((a.saturating_sub(*b) as f64, "units")),
            (TimestampTz(a), TimestampTz(b)) | (Timestamp(a), Timestamp(b)) => micros(*a, *b),
            (Date(a), Date(b)) => Some((f64::from(a - b) * 86_400.0, "seconds")),
            (Text(a), Text(b)) => micros(text_micros(a)?, text_micros(b)?),
            _ => None,
        }
    }

    /// Compare two values of the same variant; `None` when the variants differ.
    pub fn compare(&self, other: &CursorValue) -> Option<Ordering> {
        use CursorValue::*;
        match (self, other) {
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (TimestampTz(a), TimestampTz(b)) | (Timestamp(a), Timestamp(b)) => Some(a.cmp(b)),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (Text(a), Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// The value as text a database parses back losslessly (ISO 8601, 6 fraction digits).
    pub fn to_sql_text(&self) -> String {
        match self {
            CursorValue::Int(v) => v.to_string(),
            CursorValue::TimestampTz(us) => format_micros(*us, true),
            CursorValue::Timestamp(us) => format_micros(*us, false),
            CursorValue::Date(d) => format_date(*d),
            CursorValue::Text(s) => s.clone(),
        }
    }

    /// The name of the variant, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            CursorValue::Int(_) => "integer",
            CursorValue::TimestampTz(_) => "timestamptz",
            CursorValue::Timestamp(_) => "timestamp",
            CursorValue::Date(_) => "date",
            CursorValue::Text(_) => "text",
        }
    }
}

impl fmt::Display for CursorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sql_text())
    }
}

fn format_micros(us: i64, tz: bool) -> String {
    let secs = us.div_euclid(MICROS_PER_SEC);
    let nanos = (us.rem_euclid(MICROS_PER_SEC) * 1000) as u32;
    match DateTime::from_timestamp(secs, nanos) {
        Some(t) if tz => t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        Some(t) => t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        None => us.to_string(),
    }
}

fn format_date(days: i32) -> String {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(chrono::Duration::days(days as i64)))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_string())
}

/// A watermark with what is needed to never drop nor repeat rows that share
/// the boundary value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkPosition {
    /// The greatest cursor value copied (inclusive upper bound of the last
    /// range); `None` after a full load that found no non-NULL cursor.
    pub value: Option<CursorValue>,
    /// Hashes of the keys of the rows copied whose cursor equals `value`.
    /// The next range starts at `value` inclusive and skips these rows.
    #[serde(default)]
    pub boundary: BTreeSet<u64>,
    /// Rows with a NULL cursor seen by the last run (copied by the full load).
    #[serde(default)]
    pub null_rows: u64,
}

/// A change-tracking position: the last synchronised version, and the
/// generation of the tracking objects (change log, triggers) it was read
/// from. Versions of one generation mean nothing in another: when the
/// objects are removed and set up again, or repaired, their generation
/// changes and a stream whose position names another generation reloads in
/// full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChangeVersionRepr")]
pub struct ChangeVersion {
    pub version: i64,
    /// `None`: written before generations existed (a bare version in the
    /// state store); it predates every generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

impl ChangeVersion {
    pub fn new(version: i64, generation: impl Into<String>) -> ChangeVersion {
        ChangeVersion {
            version,
            generation: Some(generation.into()),
        }
    }
}

/// What the state store may hold: a bare version (older highwater) or the
/// version with its generation.
#[derive(Deserialize)]
#[serde(untagged)]
enum ChangeVersionRepr {
    Bare(i64),
    Full {
        version: i64,
        #[serde(default)]
        generation: Option<String>,
    },
}

impl From<ChangeVersionRepr> for ChangeVersion {
    fn from(r: ChangeVersionRepr) -> ChangeVersion {
        match r {
            ChangeVersionRepr::Bare(version) => ChangeVersion {
                version,
                generation: None,
            },
            ChangeVersionRepr::Full {
                version,
                generation,
            } => ChangeVersion {
                version,
                generation,
            },
        }
    }
}

/// The position of a stream: where the next delta starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// `full` mode: nothing to remember but that a run happened.
    Full,
    Watermark(WatermarkPosition),
    /// The last synchronised change-tracking version (and its generation).
    Version(ChangeVersion),
}

impl Position {
    /// Short human form: the watermark value or the version.
    pub fn display_value(&self) -> String {
        match self {
            Position::Full => "-".to_string(),
            Position::Watermark(w) => w.value.as_ref().map_or("-".to_string(), |v| v.to_string()),
            Position::Version(v) => v.version.to_string(),
        }
    }

    /// Serialise for the state store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Read back what [`Position::to_json`] wrote.
    pub fn from_json(s: &str) -> Result<Position, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds() {
        let a = CursorValue::TimestampTz(1_504_227_360_123_456);
        assert_eq!(a.to_sql_text(), "2017-09-01T00:56:00.123456+00:00");
        let b = CursorValue::Timestamp(-1);
        assert_eq!(b.to_sql_text(), "1969-12-31T23:59:59.999999");
        let p = Position::Watermark(WatermarkPosition {
            value: Some(a.clone()),
            boundary: [1u64, u64::MAX].into_iter().collect(),
            null_rows: 0,
        });
        assert_eq!(Position::from_json(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn change_versions_keep_their_generation_and_read_old_state() {
        let p = Position::Version(ChangeVersion::new(42, "g1"));
        assert_eq!(
            p.to_json(),
            r#"{"version":{"version":42,"generation":"g1"}}"#
        );
        assert_eq!(Position::from_json(&p.to_json()).unwrap(), p);
        // Written by a highwater without generations: readable, no generation.
        assert_eq!(
            Position::from_json(r#"{"version":7}"#).unwrap(),
            Position::Version(ChangeVersion {
                version: 7,
                generation: None
            })
        );
    }

    #[test]
    fn dates_print_iso() {
        assert_eq!(CursorValue::Date(0).to_sql_text(), "1970-01-01");
        assert_eq!(CursorValue::Date(17_410).to_sql_text(), "2017-09-01");
    }
}

//! SQLite declared types → Arrow types, and values → Arrow builders.
//!
//! SQLite is dynamically typed; the declared type of a column (its affinity)
//! decides the Arrow type. Text in DATETIME/TIMESTAMP columns is parsed as
//! ISO 8601 (`YYYY-MM-DD HH:MM:SS[.fff…]`, `T` or space, optional `Z` or
//! offset, converted to UTC); a value that does not parse is an error naming
//! the column.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::*;
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rusqlite::types::ValueRef;

/// How a column is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
    Blob,
    Bool,
    Timestamp,
    Date,
}

impl Kind {
    /// From a declared type, by SQLite's affinity rules plus dates.
    pub fn from_decl(decl: Option<&str>) -> Kind {
        let d = decl.unwrap_or("").to_ascii_uppercase();
        if d.contains("INT") {
            Kind::Int
        } else if d.contains("BOOL") {
            Kind::Bool
        } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
            Kind::Timestamp
        } else if d == "DATE" {
            Kind::Date
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") || d.is_empty() {
            Kind::Text
        } else if d.contains("BLOB") {
            Kind::Blob
        } else {
            // REAL, FLOA, DOUB, NUMERIC, DECIMAL.
            Kind::Float
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Blob => DataType::Binary,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
        }
    }
}

/// One column's builder.
pub enum Col {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Col {
    pub fn new(kind: Kind, cap: usize) -> Col {
        match kind {
            Kind::Int => Col::Int(Int64Builder::with_capacity(cap)),
            Kind::Float => Col::Float(Float64Builder::with_capacity(cap)),
            Kind::Text => Col::Text(StringBuilder::with_capacity(cap, cap * 16)),
            Kind::Blob => Col::Blob(BinaryBuilder::with_capacity(cap, cap * 16)),
            Kind::Bool => Col::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Timestamp => Col::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap)),
            Kind::Date => Col::Date(Date32Builder::with_capacity(cap)),
        }
    }

    /// Append one value; `Err` holds a description of the offending value.
    pub fn push(&mut self, v: ValueRef<'_>) -> Result<(), String> {
        match (self, v) {
            (Col::Int(b), ValueRef::Null) | (Col::Int(b), ValueRef::Text(&[])) => b.append_null(),
            (Col::Float(b), ValueRef::Null) => b.append_null(),
            (Col::Text(b), ValueRef::Null) => b.append_null(),
            (Col::Blob(b), ValueRef::Null) => b.append_null(),
            (Col::Bool(b), ValueRef::Null) => b.append_null(),
            (Col::Timestamp(b), ValueRef::Null) => b.append_null(),
            (Col::Date(b), ValueRef::Null) => b.append_null(),
            (Col::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (Col::Int(b), ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                b.append_value(f as i64)
            }
            (Col::Int(b), ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "invalid UTF-8".to_string())?;
                b.append_value(
                    s.trim()
                        .parse()
                        .map_err(|_| format!("text '{s}' is not an integer"))?,
                )
            }
            (Col::Float(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Col::Float(b), ValueRef::Real(f)) => b.append_value(f),
            (Col::Float(b), ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "invalid UTF-8".to_string())?;
                b.append_value(
                    s.trim()
                        .parse()
                        .map_err(|_| format!("text '{s}' is not a number"))?,
                )
            }
            (Col::Text(b), ValueRef::Text(t)) => b.append_value(
                std::str::from_utf8(t).map_err(|_| "invalid UTF-8 text".to_string())?,
            ),
            (Col::Text(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (Col::Text(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (Col::Text(b), ValueRef::Blob(x)) => b.append_value(String::from_utf8_lossy(x)),
            (Col::Blob(b), ValueRef::Blob(x)) | (Col::Blob(b), ValueRef::Text(x)) => {
                b.append_value(x)
            }
            (Col::Bool(b), ValueRef::Integer(i)) => b.append_value(i != 0),
            (Col::Bool(b), ValueRef::Text(t)) => match t.to_ascii_lowercase().as_slice() {
                b"true" | b"t" | b"1" => b.append_value(true),
                b"false" | b"f" | b"0" => b.append_value(false),
                _ => return Err(format!("'{}' is not a boolean", String::from_utf8_lossy(t))),
            },
            (Col::Timestamp(b), ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "invalid UTF-8".to_string())?;
                b.append_value(
                    parse_timestamp(s).ok_or_else(|| format!("'{s}' is not a timestamp"))?,
                )
            }
            (Col::Timestamp(b), ValueRef::Integer(secs)) => b.append_value(
                secs.checked_mul(1_000_000)
                    .ok_or("timestamp out of range")?,
            ),
            (Col::Date(b), ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "invalid UTF-8".to_string())?;
                let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .or_else(|| {
                        parse_timestamp(s)
                            .and_then(DateTime::from_timestamp_micros)
                            .map(|t| t.date_naive())
                    })
                    .ok_or_else(|| format!("'{s}' is not a date"))?;
                b.append_value((d - NaiveDate::default()).num_days() as i32)
            }
            (_, other) => return Err(format!("unexpected {:?} value", other.data_type())),
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Int(b) => Arc::new(b.finish()),
            Col::Float(b) => Arc::new(b.finish()),
            Col::Text(b) => Arc::new(b.finish()),
            Col::Blob(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Timestamp(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// ISO 8601 text → microseconds since the epoch (UTC when an offset is given).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
        return Some(t.timestamp_micros());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| {
        d.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_micros()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000001Z"), Some(1));
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("nope"), None);
    }
}

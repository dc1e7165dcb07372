//! MariaDB/MySQL column types → Arrow types, and binary-protocol values →
//! Arrow builders.
//!
//! Reads use prepared statements, so values arrive typed (`Int`, `UInt`,
//! `Double`, `Date`, `Time`) except DECIMAL, strings, JSON and BIT, which
//! arrive as bytes. DECIMAL(p ≤ 38) becomes `Decimal128` parsed from its
//! text; TIMESTAMP is read with the session time zone at `+00:00` and is
//! UTC; TIME (which can exceed 24 hours) is kept as text.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::*;
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};

/// How a column is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MyKind {
    Int,
    UInt,
    Float,
    Decimal(u8, i8),
    Text,
    Binary,
    Date,
    DateTime,
    Timestamp,
    Time,
}

impl MyKind {
    pub fn from_column(c: &mysql_async::Column) -> MyKind {
        use ColumnType::*;
        let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        match c.column_type() {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_YEAR => MyKind::Int,
            MYSQL_TYPE_LONGLONG if unsigned => MyKind::UInt,
            MYSQL_TYPE_LONGLONG => MyKind::Int,
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => MyKind::Float,
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
                let scale = c.decimals() as i64;
                let precision =
                    c.column_length() as i64 - i64::from(scale > 0) - i64::from(!unsigned);
                if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
                    MyKind::Decimal(precision as u8, scale as i8)
                } else {
                    MyKind::Text
                }
            }
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => MyKind::Date,
            MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => MyKind::DateTime,
            MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => MyKind::Timestamp,
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => MyKind::Time,
            MYSQL_TYPE_BIT | MYSQL_TYPE_GEOMETRY => MyKind::Binary,
            MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
                if c.character_set() == 63 =>
            {
                MyKind::Binary
            }
            _ => MyKind::Text,
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            MyKind::Int => DataType::Int64,
            MyKind::UInt => DataType::UInt64,
            MyKind::Float => DataType::Float64,
            MyKind::Decimal(p, s) => DataType::Decimal128(*p, *s),
            MyKind::Text | MyKind::Time => DataType::Utf8,
            MyKind::Binary => DataType::Binary,
            MyKind::Date => DataType::Date32,
            MyKind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            MyKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        }
    }
}

/// One column's builder.
pub enum Col {
    I64(Int64Builder),
    U64(UInt64Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "invalid UTF-8".to_string())
}

fn micros(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Result<i64, String> {
    NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32)
        .and_then(|d| d.and_hms_micro_opt(h as u32, mi as u32, s as u32, us))
        .map(|t| t.and_utc().timestamp_micros())
        .ok_or_else(|| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} is not a valid date"))
}

impl Col {
    pub fn new(kind: MyKind, cap: usize) -> Col {
        match kind {
            MyKind::Int => Col::I64(Int64Builder::with_capacity(cap)),
            MyKind::UInt => Col::U64(UInt64Builder::with_capacity(cap)),
            MyKind::Float => Col::F64(Float64Builder::with_capacity(cap)),
            MyKind::Decimal(p, s) => Col::Dec(Decimal128Builder::with_capacity(cap), p, s),
            MyKind::Text | MyKind::Time => Col::Str(StringBuilder::with_capacity(cap, cap * 16)),
            MyKind::Binary => Col::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            MyKind::Date => Col::Date(Date32Builder::with_capacity(cap)),
            MyKind::DateTime => Col::Ts(TimestampMicrosecondBuilder::with_capacity(cap), None),
            MyKind::Timestamp => Col::Ts(
                TimestampMicrosecondBuilder::with_capacity(cap),
                Some("+00:00".into()),
            ),
        }
    }

    /// Append one value; `Err` describes the offending value.
    pub fn push(&mut self, v: &Value) -> Result<(), String> {
        match (self, v) {
            (Col::I64(b), Value::NULL) => b.append_null(),
            (Col::U64(b), Value::NULL) => b.append_null(),
            (Col::F64(b), Value::NULL) => b.append_null(),
            (Col::Dec(b, ..), Value::NULL) => b.append_null(),
            (Col::Str(b), Value::NULL) => b.append_null(),
            (Col::Bin(b), Value::NULL) => b.append_null(),
            (Col::Date(b), Value::NULL) => b.append_null(),
            (Col::Ts(b, _), Value::NULL) => b.append_null(),
            (Col::I64(b), Value::Int(i)) => b.append_value(*i),
            (Col::I64(b), Value::UInt(u)) => {
                b.append_value(i64::try_from(*u).map_err(|_| format!("{u} is out of range"))?)
            }
            (Col::I64(b), Value::Bytes(x)) => b.append_value(
                text(x)?
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{}' is not an integer", String::from_utf8_lossy(x)))?,
            ),
            (Col::U64(b), Value::UInt(u)) => b.append_value(*u),
            (Col::U64(b), Value::Int(i)) => {
                b.append_value(u64::try_from(*i).map_err(|_| format!("{i} is out of range"))?)
            }
            (Col::U64(b), Value::Bytes(x)) => b.append_value(
                text(x)?
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{}' is not an integer", String::from_utf8_lossy(x)))?,
            ),
            (Col::F64(b), Value::Double(f)) => b.append_value(*f),
            (Col::F64(b), Value::Float(f)) => b.append_value(*f as f64),
            (Col::F64(b), Value::Int(i)) => b.append_value(*i as f64),
            (Col::F64(b), Value::Bytes(x)) => b.append_value(
                text(x)?
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{}' is not a number", String::from_utf8_lossy(x)))?,
            ),
            (Col::Dec(b, _, s), Value::Bytes(x)) => b.append_value(parse_decimal(text(x)?, *s)?),
            (Col::Dec(b, _, s), Value::Int(i)) => {
                b.append_value(*i as i128 * 10i128.pow(*s as u32))
            }
            (Col::Str(b), Value::Bytes(x)) => b.append_value(text(x)?),
            (Col::Str(b), Value::Int(i)) => b.append_value(i.to_string()),
            (Col::Str(b), Value::UInt(u)) => b.append_value(u.to_string()),
            (Col::Str(b), Value::Double(f)) => b.append_value(f.to_string()),
            (Col::Str(b), Value::Float(f)) => b.append_value(f.to_string()),
            (Col::Str(b), Value::Time(neg, days, h, m, s, us)) => {
                let hours = *days * 24 + *h as u32;
                let sign = if *neg { "-" } else { "" };
                let frac = if *us > 0 {
                    format!(".{us:06}")
                } else {
                    String::new()
                };
                b.append_value(format!("{sign}{hours:02}:{m:02}:{s:02}{frac}"))
            }
            (Col::Str(b), Value::Date(y, mo, d, h, mi, s, us)) => b.append_value(format!(
                "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
            )),
            (Col::Bin(b), Value::Bytes(x)) => b.append_value(x),
            (Col::Date(b), Value::Date(y, mo, d, ..)) => {
                let day = NaiveDate::from_ymd_opt(*y as i32, *mo as u32, *d as u32)
                    .ok_or_else(|| format!("{y:04}-{mo:02}-{d:02} is not a valid date"))?;
                b.append_value((day - NaiveDate::default()).num_days() as i32)
            }
            (Col::Ts(b, _), Value::Date(y, mo, d, h, mi, s, us)) => {
                b.append_value(micros(*y, *mo, *d, *h, *mi, *s, *us)?)
            }
            (_, other) => return Err(format!("unexpected value {other:?}")),
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Col::I64(b) => Arc::new(b.finish()),
            Col::U64(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated"),
            ),
            Col::Str(b) => Arc::new(b.finish()),
            Col::Bin(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        }
    }
}

/// `-123.45` at scale 2 → -12345. Extra fraction digits are an error.
pub fn parse_decimal(s: &str, scale: i8) -> Result<i128, String> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > scale.max(0) as usize || (int.is_empty() && frac.is_empty()) {
        return Err(format!("'{s}' does not fit the column's scale {scale}"));
    }
    let bad = || format!("'{s}' is not a decimal");
    let mut acc: i128 = 0;
    for c in int.chars().chain(frac.chars()) {
        let d = c.to_digit(10).ok_or_else(bad)? as i128;
        acc = acc
            .checked_mul(10)
            .and_then(|a| a.checked_add(d))
            .ok_or_else(bad)?;
    }
    for _ in frac.len()..scale.max(0) as usize {
        acc = acc.checked_mul(10).ok_or_else(bad)?;
    }
    Ok(if neg { -acc } else { acc })
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_parse() {
        assert_eq!(super::parse_decimal("-123.45", 2).unwrap(), -12345);
        assert_eq!(super::parse_decimal("7", 3).unwrap(), 7000);
        assert_eq!(super::parse_decimal("0.5", 1).unwrap(), 5);
        assert!(super::parse_decimal("1.234", 2).is_err());
    }
}

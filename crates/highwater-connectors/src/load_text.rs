//! Arrow batches as the text a database bulk-loads: PostgreSQL
//! `COPY … FROM STDIN` in its text format and MariaDB `LOAD DATA` with its
//! default `FIELDS` and `LINES`, which read the same thing:
//!
//! ```text
//! one row per line (\n), fields separated by tabs, NULL as \N,
//! backslash, tab, newline and carriage return escaped as \\ \t \n \r
//! ```
//!
//! Values are written from the Arrow arrays straight into the output
//! buffer, without a `String` per cell: the common column types have a
//! fast path; the rest go through [`crate::table::cell`] and are written
//! the same way (a unit test holds the two paths to the same bytes).
//!
//! Where the dialects differ:
//!
//! | value     | PostgreSQL               | MariaDB                               |
//! |-----------|--------------------------|---------------------------------------|
//! | boolean   | `t` / `f`                | `1` / `0`                             |
//! | timestamp with a zone | UTC, `…+00:00` | UTC, no zone (`datetime` has none) |
//! | bytes     | `\\x` and hex (bytea)    | hex, loaded through `UNHEX(@var)`     |
//! | NUL byte in text | kept (PostgreSQL refuses it) | `\0`                   |

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use highwater_core::Result;

use crate::table::{Cell, cell};
use crate::text::{write_date, write_decimal, write_int, write_timestamp};

/// Which database reads the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// Encodes the chosen columns of each batch, and optionally a running row
/// number as the last field (the staging table's sequence column).
#[derive(Debug, Clone)]
pub struct LoadText {
    dialect: Dialect,
    /// Indexes of the batch columns written, in order.
    columns: Vec<usize>,
    /// The next row number; `None`: no sequence field.
    seq: Option<u64>,
}

impl LoadText {
    pub fn new(dialect: Dialect, columns: Vec<usize>, seq: bool) -> LoadText {
        LoadText {
            dialect,
            columns,
            seq: seq.then_some(0),
        }
    }

    /// Is a column of this type written as hex for `UNHEX` (MariaDB)?
    pub fn hex_column(dialect: Dialect, dt: &DataType) -> bool {
        dialect == Dialect::Mysql && matches!(dt, DataType::Binary | DataType::LargeBinary)
    }

    /// Append the rows of `batch` to `out`.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let cols: Vec<Col<'_>> = self
            .columns
            .iter()
            .map(|i| Col::new(batch.column(*i), self.dialect))
            .collect();
        for row in 0..batch.num_rows() {
            for (n, c) in cols.iter().enumerate() {
                if n > 0 {
                    out.push(b'\t');
                }
                c.write(row, self.dialect, out)?;
            }
            if let Some(seq) = &mut self.seq {
                if !cols.is_empty() {
                    out.push(b'\t');
                }
                write_int(out, *seq as i64);
                *seq += 1;
            }
            out.push(b'\n');
        }
        Ok(())
    }
}

/// The values of one column as PostgreSQL reads them as text, unescaped
/// (what the COPY text holds before its escapes; `None` for NULL): the
/// elements of a `text[]` parameter that SQL then casts, as the target's
/// input functions would parse the COPY fields.
pub fn pg_texts(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    let col = Col::new(a, Dialect::Postgres);
    let mut out = Vec::with_capacity(a.len());
    let mut buf = Vec::new();
    for row in 0..a.len() {
        if a.is_null(row) {
            out.push(None);
            continue;
        }
        let text = match &col {
            Col::Str(s) => s.value(row).to_string(),
            Col::LargeStr(s) => s.value(row).to_string(),
            Col::Cell(a) => match cell(a, row)? {
                Cell::Text(t) => t,
                Cell::Bytes(b) => {
                    buf.clear();
                    buf.extend_from_slice(b"\\x");
                    write_hex(&mut buf, &b);
                    String::from_utf8_lossy(&buf).into_owned()
                }
                c => {
                    buf.clear();
                    write_cell(&mut buf, &c, Dialect::Postgres);
                    String::from_utf8_lossy(&buf).into_owned()
                }
            },
            // Digits, signs, dates and times, `t`/`f`: nothing to escape.
            c => {
                buf.clear();
                c.write(row, Dialect::Postgres, &mut buf)?;
                String::from_utf8_lossy(&buf).into_owned()
            }
        };
        out.push(Some(text));
    }
    Ok(out)
}

/// A column with its fast path, or `Cell` for the rest.
enum Col<'a> {
    Bool(&'a arrow_array::BooleanArray),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    Date(&'a arrow_array::Date32Array),
    /// Microseconds since the epoch; `true`: the type has a zone (UTC).
    Ts(&'a arrow_array::TimestampMicrosecondArray, bool),
    Dec(&'a arrow_array::Decimal128Array, i8),
    Cell(&'a ArrayRef),
}

impl<'a> Col<'a> {
    fn new(a: &'a ArrayRef, dialect: Dialect) -> Col<'a> {
        match a.data_type() {
            DataType::Boolean => Col::Bool(a.as_boolean()),
            DataType::Int16 => Col::I16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
            DataType::Utf8 => Col::Str(a.as_string::<i32>()),
            DataType::LargeUtf8 => Col::LargeStr(a.as_string::<i64>()),
            DataType::Date32 => Col::Date(a.as_primitive::<Date32Type>()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Col::Ts(
                a.as_primitive::<TimestampMicrosecondType>(),
                tz.is_some() && dialect == Dialect::Postgres,
            ),
            DataType::Decimal128(_, s) => Col::Dec(a.as_primitive::<Decimal128Type>(), *s),
            _ => Col::Cell(a),
        }
    }

    #[inline]
    fn write(&self, row: usize, dialect: Dialect, out: &mut Vec<u8>) -> Result<()> {
        let null = match self {
            Col::Bool(a) => a.is_null(row),
            Col::I16(a) => a.is_null(row),
            Col::I32(a) => a.is_null(row),
            Col::I64(a) => a.is_null(row),
            Col::Str(a) => a.is_null(row),
            Col::LargeStr(a) => a.is_null(row),
            Col::Date(a) => a.is_null(row),
            Col::Ts(a, _) => a.is_null(row),
            Col::Dec(a, _) => a.is_null(row),
            Col::Cell(a) => a.is_null(row),
        };
        if null {
            out.extend_from_slice(b"\\N");
            return Ok(());
        }
        match self {
            Col::Bool(a) => write_bool(out, a.value(row), dialect),
            Col::I16(a) => write_int(out, a.value(row).into()),
            Col::I32(a) => write_int(out, a.value(row).into()),
            Col::I64(a) => write_int(out, a.value(row)),
            Col::Str(a) => write_text(out, a.value(row).as_bytes(), dialect),
            Col::LargeStr(a) => write_text(out, a.value(row).as_bytes(), dialect),
            Col::Date(a) => write_date(out, a.value(row).into()),
            Col::Ts(a, utc) => write_timestamp(out, a.value(row), *utc),
            Col::Dec(a, scale) => write_decimal(out, a.value(row), *scale),
            Col::Cell(a) => write_cell(out, &cell(a, row)?, dialect),
        }
        Ok(())
    }
}

fn write_bool(out: &mut Vec<u8>, v: bool, dialect: Dialect) {
    out.push(match (dialect, v) {
        (Dialect::Postgres, true) => b't',
        (Dialect::Postgres, false) => b'f',
        (Dialect::Mysql, true) => b'1',
        (Dialect::Mysql, false) => b'0',
    });
}

/// Text with the four escapes (and NUL for MariaDB); runs without a
/// special byte are copied whole.
#[inline]
fn write_text(out: &mut Vec<u8>, s: &[u8], dialect: Dialect) {
    let mut start = 0;
    for (i, b) in s.iter().enumerate() {
        let esc = match b {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0 if dialect == Dialect::Mysql => b'0',
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

fn write_hex(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in b {
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 15)]);
    }
}

fn write_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

/// One non-NULL value of a type without a fast path.
fn write_cell(out: &mut Vec<u8>, c: &Cell, dialect: Dialect) {
    match c {
        Cell::Null => out.extend_from_slice(b"\\N"),
        Cell::Bool(b) => write_bool(out, *b, dialect),
        Cell::Int(v) => write_int(out, *v),
        Cell::UInt(v) => write_display(out, v),
        Cell::Float(v) => {
            if v.is_nan() {
                out.extend_from_slice(b"NaN");
            } else if v.is_infinite() {
                out.extend_from_slice(if *v > 0.0 { b"Infinity" } else { b"-Infinity" });
            } else {
                use std::io::Write;
                let _ = write!(out, "{v:?}");
            }
        }
        Cell::Text(s) => write_text(out, s.as_bytes(), dialect),
        Cell::Decimal(s) => out.extend_from_slice(s.as_bytes()),
        Cell::Bytes(b) => {
            if dialect == Dialect::Postgres {
                // bytea hex input `\x…`, its backslash escaped.
                out.extend_from_slice(b"\\\\x");
            }
            write_hex(out, b);
        }
        Cell::Date(d) => write_display(out, d.format("%Y-%m-%d")),
        Cell::Timestamp(ts, utc) => {
            write_display(out, ts.format("%Y-%m-%dT%H:%M:%S%.f"));
            if *utc && dialect == Dialect::Postgres {
                out.extend_from_slice(b"+00:00");
            }
        }
        Cell::Time(t) => write_display(out, t.format("%H:%M:%S%.f")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::*;
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let ts = Some(1_504_227_360_123_456);
        let cols: Vec<(&str, ArrayRef)> = vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            ),
            (
                "i16",
                Arc::new(Int16Array::from(vec![Some(-7), Some(0), None])),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(1), None])),
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![Some(i64::MAX), Some(-1), None])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("tab\there \\ back\nline\r ünï"),
                    Some(""),
                    None,
                ])),
            ),
            (
                "ls",
                Arc::new(LargeStringArray::from(vec![
                    Some("a\0b"),
                    Some("\\N"),
                    None,
                ])),
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(17_410), Some(-719_162), None])),
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![ts, Some(-1), None])),
            ),
            (
                "tsz",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![ts, Some(0), None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                "dec",
                Arc::new(
                    Decimal128Array::from(vec![
                        Some(-12_345_678_901_234_567_890_123_456_789_012i128),
                        Some(5),
                        None,
                    ])
                    .with_precision_and_scale(38, 4)
                    .unwrap(),
                ),
            ),
        ];
        let schema = Schema::new(
            cols.iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|c| c.1).collect()).unwrap()
    }

    fn encode(d: Dialect, b: &RecordBatch, seq: bool) -> String {
        let mut out = Vec::new();
        let mut e = LoadText::new(d, (0..b.num_columns()).collect(), seq);
        e.encode(b, &mut out).unwrap();
        e.encode(b, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Undo the COPY text escapes of one field (`\\N` is NULL).
    fn unescape(field: &str) -> Option<String> {
        if field == "\\N" {
            return None;
        }
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => {}
            }
        }
        Some(out)
    }

    /// `pg_texts` holds what the COPY text holds, unescaped, for every
    /// column type (bytes included: `\x` and hex).
    #[test]
    fn pg_texts_are_the_copy_fields_unescaped() {
        let mut b = batch();
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![
            Some(&b"\x00\\ab"[..]),
            Some(&b""[..]),
            None,
        ]));
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("bin", DataType::Binary, true));
        let mut cols = b.columns().to_vec();
        cols.push(bytes);
        b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let copy = encode(Dialect::Postgres, &b, false);
        let lines: Vec<&str> = copy.lines().take(b.num_rows()).collect();
        for (i, col) in b.columns().iter().enumerate() {
            let texts = pg_texts(col).unwrap();
            for (row, line) in lines.iter().enumerate() {
                let field = line.split('\t').nth(i).unwrap();
                assert_eq!(texts[row], unescape(field), "column {i} row {row}");
            }
        }
        assert_eq!(
            pg_texts(b.column(b.num_columns() - 1)).unwrap()[0].as_deref(),
            Some("\\x005c6162")
        );
    }

    /// The fast paths write what the `Cell` path writes for the same value.
    #[test]
    fn fast_paths_match_the_cell_path() {
        let b = batch();
        for d in [Dialect::Postgres, Dialect::Mysql] {
            let mut slow = String::new();
            for row in 0..b.num_rows() {
                let fields: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|a| {
                        let mut v = Vec::new();
                        write_cell(&mut v, &cell(a, row).unwrap(), d);
                        String::from_utf8(v).unwrap()
                    })
                    .collect();
                slow.push_str(&fields.join("\t"));
                slow.push('\n');
            }
            let fast = encode(d, &b, false);
            assert_eq!(fast, format!("{slow}{slow}"), "{d:?}");
        }
    }

    #[test]
    fn values_as_each_database_reads_them() {
        let b = batch();
        let pg = encode(Dialect::Postgres, &b, true);
        let lines: Vec<&str> = pg.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[0],
            "t\t-7\t-2147483648\t9223372036854775807\ttab\\there \\\\ back\\nline\\r ünï\ta\0b\t2017-09-01\t2017-09-01T00:56:00.123456\t2017-09-01T00:56:00.123456+00:00\t-1234567890123456789012345678.9012\t0"
        );
        assert_eq!(
            lines[1],
            "f\t0\t1\t-1\t\t\\\\N\t0001-01-01\t1969-12-31T23:59:59.999999\t1970-01-01T00:00:00+00:00\t0.0005\t1"
        );
        assert_eq!(lines[2], ["\\N"; 10].join("\t") + "\t2");
        assert_eq!(
            lines[5].rsplit('\t').next(),
            Some("5"),
            "the sequence runs on"
        );
        let my = encode(Dialect::Mysql, &b, false);
        let lines: Vec<&str> = my.lines().collect();
        assert!(lines[0].starts_with("1\t-7\t"), "{}", lines[0]);
        assert!(lines[0].contains("\ta\\0b\t"), "{}", lines[0]);
        assert!(
            lines[0].contains("\t2017-09-01T00:56:00.123456\t2017-09-01T00:56:00.123456\t"),
            "no zone for MariaDB: {}",
            lines[0]
        );
        assert!(lines[1].starts_with("0\t"));
    }

    #[test]
    fn other_types_through_cells() {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from(vec![Some(&[0u8, 255, 16][..]), None])),
            Arc::new(Float64Array::from(vec![Some(0.5), Some(f64::NAN)])),
            Arc::new(Float32Array::from(vec![Some(f32::INFINITY), Some(-1.5)])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), None])),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(3_723_000_001),
                None,
            ])),
            Arc::new(TimestampNanosecondArray::from(vec![Some(1), None]).with_timezone("UTC")),
        ];
        let schema = Schema::new(
            cols.iter()
                .enumerate()
                .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let b = RecordBatch::try_new(Arc::new(schema), cols).unwrap();
        let mut out = Vec::new();
        LoadText::new(Dialect::Postgres, (0..6).collect(), false)
            .encode(&b, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\\\\x00ff10\t0.5\tInfinity\t18446744073709551615\t01:02:03.000001\t1970-01-01T00:00:00.000000001+00:00\n\
             \\N\tNaN\t-1.5\t\\N\t\\N\t\\N\n"
        );
        let mut out = Vec::new();
        LoadText::new(Dialect::Mysql, vec![0, 3], true)
            .encode(&b, &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "00ff10\t18446744073709551615\t0\n\\N\t\\N\t1\n"
        );
        let hex = |d| {
            b.schema()
                .fields()
                .iter()
                .map(|f| LoadText::hex_column(d, f.data_type()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hex(Dialect::Mysql),
            [true, false, false, false, false, false]
        );
        assert!(hex(Dialect::Postgres).iter().all(|h| !h));
    }
}

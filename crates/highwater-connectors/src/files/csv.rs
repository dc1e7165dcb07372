//! A CSV encoder for Arrow batches, written for throughput.
//!
//! RFC 4180: comma separator, CRLF-free `\n` line ends, fields quoted only
//! when they hold `,` `"` `\r` or `\n` (quotes doubled). NULL is an empty
//! field; an empty string is `""`, so the two stay distinguishable.
//! Timestamps are ISO 8601 (`2024-01-01T00:00:01.5` and, for zoned
//! columns, `…+00:00` in UTC), dates `YYYY-MM-DD`, decimals at their scale.
//!
//! Why not `arrow_csv`: measured on 2M rows it spent most of its time in
//! per-value dynamic formatting and chrono's format machinery; this encoder
//! writes bytes straight into the output buffer (see docs/decisions.md).
//! Types it has no fast path for fall back to `arrow_cast`'s formatter.
//! Lists are written as JSON arrays (`[1,null,3]`, `["a","b,c"]`): one
//! field, unambiguous about NULL elements (see docs/types.md).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, TimeUnit};
use highwater_core::{Error, Result};

use crate::text::{write_date, write_decimal, write_int, write_timestamp};

/// How a CSV file is written. [`CsvOptions::default`] is highwater's own
/// format (above); a Data Factory DelimitedText dataset sets the rest (see
/// docs/pipelines.md). Text is produced as UTF-8; the character encoding
/// and compression are applied after it (`format.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// Write the column names as the first row.
    pub header: bool,
    pub delimiter: char,
    /// `\n`, `\r\n` or one character.
    pub row_delimiter: String,
    /// `None`: values are never quoted; the escape character escapes the
    /// delimiter, line breaks and itself.
    pub quote: Option<char>,
    /// Escapes the quote character inside quoted values (`Some(quote)`:
    /// doubled, as RFC 4180; `None` too).
    pub escape: Option<char>,
    /// Quote every value and column name (`quoteAllText`).
    pub quote_all: bool,
    /// The text written for NULL.
    pub null: String,
    /// Encoding label (`format::Charset::parse` accepts it).
    pub encoding: String,
    /// `gzip` or `deflate`; `None`: uncompressed.
    pub compression: Option<String>,
    /// `Fastest` instead of `Optimal` compression.
    pub fastest: bool,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            header: true,
            delimiter: ',',
            row_delimiter: "\n".into(),
            quote: Some('"'),
            escape: Some('"'),
            quote_all: false,
            null: String::new(),
            encoding: "UTF-8".into(),
            compression: None,
            fastest: false,
        }
    }
}

impl CsvOptions {
    /// The `WriteRequest.format` that carries these options: `csv` for the
    /// defaults, else `csv:` and the options as JSON.
    pub fn to_format(&self) -> String {
        if *self == CsvOptions::default() {
            return "csv".into();
        }
        let c = |c: Option<char>| c.map(String::from).unwrap_or_default();
        format!(
            "csv:{}",
            serde_json::json!({
                "header": self.header,
                "delimiter": self.delimiter.to_string(),
                "rowDelimiter": self.row_delimiter,
                "quote": c(self.quote),
                "escape": c(self.escape),
                "quoteAll": self.quote_all,
                "null": self.null,
                "encoding": self.encoding,
                "compression": self.compression,
                "fastest": self.fastest,
            })
        )
    }

    /// Read a format written by [`CsvOptions::to_format`]; `None` when it
    /// is not CSV.
    pub fn from_format(format: &str) -> Result<Option<CsvOptions>> {
        if format == "csv" {
            return Ok(Some(CsvOptions::default()));
        }
        let Some(json) = format.strip_prefix("csv:") else {
            return Ok(None);
        };
        let bad = || Error::config("format", format!("`{format}` is not a CSV format"));
        let v: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
        let ch = |k: &str| s(k).chars().next();
        let d = CsvOptions::default();
        Ok(Some(CsvOptions {
            header: v
                .get("header")
                .and_then(|x| x.as_bool())
                .unwrap_or(d.header),
            delimiter: ch("delimiter").ok_or_else(bad)?,
            row_delimiter: s("rowDelimiter").to_string(),
            quote: ch("quote"),
            escape: ch("escape"),
            quote_all: v.get("quoteAll").and_then(|x| x.as_bool()).unwrap_or(false),
            null: s("null").to_string(),
            encoding: s("encoding").to_string(),
            compression: v
                .get("compression")
                .and_then(|x| x.as_str())
                .map(String::from),
            fastest: v.get("fastest").and_then(|x| x.as_bool()).unwrap_or(false),
        }))
    }

    fn is_default_text(&self) -> bool {
        let d = CsvOptions::default();
        self.delimiter == d.delimiter
            && self.row_delimiter == d.row_delimiter
            && self.quote == d.quote
            && self.escape == d.escape
            && !self.quote_all
            && self.null.is_empty()
    }

    /// Append one non-NULL value (its text in `raw`) with this dialect's
    /// quoting. `column` names the column in errors.
    fn field(&self, out: &mut Vec<u8>, raw: &str, column: &str) -> Result<()> {
        let special = |c: char| c == self.delimiter || c == '\r' || c == '\n';
        let mut buf = [0u8; 4];
        let mut push =
            |out: &mut Vec<u8>, c: char| out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        match self.quote {
            Some(q) => {
                let esc = self.escape.filter(|e| *e != q);
                let needs = self.quote_all
                    || raw.is_empty()
                    || raw.chars().any(|c| special(c) || c == q || Some(c) == esc);
                if !needs {
                    out.extend_from_slice(raw.as_bytes());
                    return Ok(());
                }
                push(out, q);
                for c in raw.chars() {
                    if c == q {
                        push(out, esc.unwrap_or(q));
                    } else if Some(c) == esc {
                        push(out, c);
                    }
                    push(out, c);
                }
                push(out, q);
            }
            None => match self.escape {
                Some(e) => {
                    for c in raw.chars() {
                        if special(c) || c == e {
                            push(out, e);
                        }
                        push(out, c);
                    }
                }
                None => {
                    if raw.chars().any(special) {
                        return Err(Error::data(format!(
                            "column {column}: a value holds the column delimiter or a line break, and the dataset has neither quoteChar nor escapeChar to write it"
                        )));
                    }
                    out.extend_from_slice(raw.as_bytes());
                }
            },
        }
        Ok(())
    }
}

/// Encodes batches; writes the header before the first row.
#[derive(Default)]
pub struct CsvEncoder {
    header_written: bool,
    header_off: bool,
    /// `None`: highwater's own format, on the fast path.
    options: Option<CsvOptions>,
}

impl CsvEncoder {
    pub fn new(options: CsvOptions) -> CsvEncoder {
        CsvEncoder {
            header_written: false,
            header_off: !options.header,
            options: (!options.is_default_text()).then_some(options),
        }
    }

    pub fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        if let Some(o) = self.options.take() {
            let r = self.encode_with(&o, batch, out);
            self.options = Some(o);
            return r;
        }
        let schema = batch.schema();
        if !self.header_written && !self.header_off {
            for (i, f) in schema.fields().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, f.name());
            }
            out.push(b'\n');
            self.header_written = true;
        }
        let cols: Vec<Col<'_>> = batch
            .columns()
            .iter()
            .map(|c| Col::new(c.as_ref()))
            .collect::<Result<_>>()?;
        let mut fallback = String::new();
        for row in 0..batch.num_rows() {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                c.write(row, out, &mut fallback)?;
            }
            out.push(b'\n');
        }
        Ok(())
    }

    /// Any dialect: each value's text is formatted, then quoted or
    /// escaped by [`CsvOptions::field`].
    fn encode_with(
        &mut self,
        o: &CsvOptions,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let schema = batch.schema();
        let mut delim = [0u8; 4];
        let delim = o.delimiter.encode_utf8(&mut delim).as_bytes().to_vec();
        if !self.header_written && o.header {
            for (i, f) in schema.fields().iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(&delim);
                }
                o.field(out, f.name(), f.name())?;
            }
            out.extend_from_slice(o.row_delimiter.as_bytes());
        }
        self.header_written = true;
        let cols: Vec<Col<'_>> = batch
            .columns()
            .iter()
            .map(|c| Col::new(c.as_ref()))
            .collect::<Result<_>>()?;
        let mut fallback = String::new();
        let mut raw = Vec::new();
        for row in 0..batch.num_rows() {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(&delim);
                }
                if batch.column(i).is_null(row) {
                    out.extend_from_slice(o.null.as_bytes());
                    continue;
                }
                raw.clear();
                c.write_raw(row, &mut raw, &mut fallback)?;
                let text = std::str::from_utf8(&raw).map_err(|e| Error::sink("csv", e))?;
                o.field(out, text, schema.field(i).name())?;
            }
            out.extend_from_slice(o.row_delimiter.as_bytes());
        }
        Ok(())
    }
}

enum Col<'a> {
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    Bool(&'a arrow_array::BooleanArray),
    Str(&'a arrow_array::StringArray),
    Date(&'a arrow_array::Date32Array),
    Ts(&'a arrow_array::TimestampMicrosecondArray, bool),
    Dec(&'a arrow_array::Decimal128Array, i8),
    List(&'a arrow_array::ListArray, ArrayFormatter<'a>, bool),
    Other(&'a dyn Array, ArrayFormatter<'a>),
}

impl<'a> Col<'a> {
    fn new(a: &'a dyn Array) -> Result<Col<'a>> {
        Ok(match a.data_type() {
            DataType::Int16 => Col::I16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
            DataType::Float32 => Col::F32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>()),
            DataType::Boolean => Col::Bool(a.as_boolean()),
            DataType::Utf8 => Col::Str(a.as_string::<i32>()),
            DataType::Date32 => Col::Date(a.as_primitive::<Date32Type>()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                if tz
                    .as_deref()
                    .is_some_and(|tz| !matches!(tz, "+00:00" | "UTC" | "Z"))
                {
                    return Col::fallback(a);
                }
                Col::Ts(a.as_primitive::<TimestampMicrosecondType>(), tz.is_some())
            }
            DataType::Decimal128(_, s) => Col::Dec(a.as_primitive::<Decimal128Type>(), *s),
            DataType::List(f) => {
                let l = a.as_list::<i32>();
                let opts = FormatOptions::default().with_null("null");
                let fmt = ArrayFormatter::try_new(l.values().as_ref(), &opts)
                    .map_err(|e| Error::sink("csv", e))?;
                let bare = f.data_type().is_numeric() || f.data_type() == &DataType::Boolean;
                Col::List(l, fmt, bare)
            }
            _ => return Col::fallback(a),
        })
    }

    fn fallback(a: &'a dyn Array) -> Result<Col<'a>> {
        let opts = FormatOptions::default().with_null("");
        let f = ArrayFormatter::try_new(a, &opts).map_err(|e| Error::sink("csv", e))?;
        Ok(Col::Other(a, f))
    }

    #[inline]
    fn write(&self, row: usize, out: &mut Vec<u8>, scratch: &mut String) -> Result<()> {
        self.write_as(row, out, scratch, false)
    }

    /// The value's text, unquoted (the caller quotes it).
    fn write_raw(&self, row: usize, out: &mut Vec<u8>, scratch: &mut String) -> Result<()> {
        self.write_as(row, out, scratch, true)
    }

    #[inline]
    fn write_as(
        &self,
        row: usize,
        out: &mut Vec<u8>,
        scratch: &mut String,
        raw: bool,
    ) -> Result<()> {
        let write_str = |out: &mut Vec<u8>, s: &str| {
            if raw {
                out.extend_from_slice(s.as_bytes())
            } else {
                write_str(out, s)
            }
        };
        macro_rules! null {
            ($a:expr) => {
                if $a.is_null(row) {
                    return Ok(());
                }
            };
        }
        match self {
            Col::I16(a) => {
                null!(a);
                write_int(out, a.value(row) as i64)
            }
            Col::I32(a) => {
                null!(a);
                write_int(out, a.value(row) as i64)
            }
            Col::I64(a) => {
                null!(a);
                write_int(out, a.value(row))
            }
            Col::F32(a) => {
                null!(a);
                write_display(out, a.value(row))
            }
            Col::F64(a) => {
                null!(a);
                write_display(out, a.value(row))
            }
            Col::Bool(a) => {
                null!(a);
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Col::Str(a) => {
                null!(a);
                let s = a.value(row);
                if s.is_empty() && !raw {
                    out.extend_from_slice(b"\"\"");
                } else {
                    write_str(out, s)
                }
            }
            Col::Date(a) => {
                null!(a);
                write_date(out, a.value(row) as i64)
            }
            Col::Ts(a, tz) => {
                null!(a);
                write_timestamp(out, a.value(row), *tz)
            }
            Col::Dec(a, scale) => {
                null!(a);
                write_decimal(out, a.value(row), *scale)
            }
            Col::List(a, f, bare) => {
                null!(a);
                use std::fmt::Write;
                scratch.clear();
                scratch.push('[');
                let offsets = a.value_offsets();
                let values = a.values();
                for (n, i) in (offsets[row] as usize..offsets[row + 1] as usize).enumerate() {
                    if n > 0 {
                        scratch.push(',');
                    }
                    if values.is_null(i) {
                        scratch.push_str("null");
                    } else if *bare {
                        write!(scratch, "{}", f.value(i)).map_err(|e| Error::sink("csv", e))?;
                    } else {
                        let text = f.value(i).to_string();
                        scratch.push_str(
                            &serde_json::to_string(&text).map_err(|e| Error::sink("csv", e))?,
                        );
                    }
                }
                scratch.push(']');
                write_str(out, scratch);
            }
            Col::Other(a, f) => {
                null!(a);
                use std::fmt::Write;
                scratch.clear();
                write!(scratch, "{}", f.value(row)).map_err(|e| Error::sink("csv", e))?;
                write_str(out, scratch);
            }
        }
        Ok(())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn write_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted() {
        let mut v = Vec::new();
        write_str(&mut v, "a,\"b\"");
        assert_eq!(String::from_utf8(v).unwrap(), "\"a,\"\"b\"\"\"");
    }
}

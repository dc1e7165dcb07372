//! PostgreSQL types → Arrow, and the binary `COPY` decoder.
//!
//! Binary COPY format: an 11-byte signature, flags (i32), header extension
//! (i32 length + bytes); then per tuple an i16 field count (-1 ends the
//! data) and per field an i32 length (-1 is NULL) and the value in the
//! type's binary send format. Types without a decoder here are selected as
//! `::text`.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, ListArray};
use arrow_buffer::{NullBuffer, OffsetBuffer, i256};
use arrow_schema::{DataType, Field, TimeUnit};
use tokio_postgres::types::{Kind, Type};

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;

/// How a column is read and decoded (the mapping is documented in
/// docs/types.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Text,
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// `numeric(p, s)` with `1 <= p <= 76` and `0 <= s <= p`: Decimal128
    /// up to 38 digits, Decimal256 above.
    Numeric {
        precision: u8,
        scale: i8,
    },
    /// `money`: an int8 count of minor units; `scale` is the fraction
    /// digits of the database's `lc_monetary` (read at describe time).
    Money {
        scale: i8,
    },
    Uuid,
    /// A one-dimensional array: an Arrow list of the element kind.
    List(Box<PgKind>),
    /// Selected as `::text`, decoded as text.
    AsText,
}

impl PgKind {
    pub fn from_type(t: &Type, typmod: i32) -> PgKind {
        if let Kind::Array(elem) = t.kind() {
            return PgKind::List(Box::new(PgKind::from_type(elem, typmod)));
        }
        if let Kind::Domain(base) = t.kind() {
            return PgKind::from_type(base, typmod);
        }
        match *t {
            Type::BOOL => PgKind::Bool,
            Type::INT2 => PgKind::Int2,
            Type::INT4 => PgKind::Int4,
            Type::INT8 => PgKind::Int8,
            Type::OID => PgKind::Oid,
            Type::FLOAT4 => PgKind::Float4,
            Type::FLOAT8 => PgKind::Float8,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::XML => {
                PgKind::Text
            }
            Type::JSONB => PgKind::Jsonb,
            Type::BYTEA => PgKind::Bytea,
            Type::DATE => PgKind::Date,
            Type::TIME => PgKind::Time,
            Type::TIMESTAMP => PgKind::Timestamp,
            Type::TIMESTAMPTZ => PgKind::TimestampTz,
            Type::UUID => PgKind::Uuid,
            Type::MONEY => PgKind::Money { scale: 2 },
            Type::NUMERIC if typmod >= 4 => {
                let precision = ((typmod - 4) >> 16) & 0xffff;
                // The scale is an 11-bit signed field (PostgreSQL 15 allows
                // negative scales and scales above the precision).
                let scale = ((typmod - 4) & 0x7ff) as i16;
                let scale = if scale >= 0x400 { scale - 0x800 } else { scale };
                if (1..=76).contains(&precision) && (0..=precision as i16).contains(&scale) {
                    PgKind::Numeric {
                        precision: precision as u8,
                        scale: scale as i8,
                    }
                } else {
                    PgKind::AsText
                }
            }
            // Unconstrained numeric has no fixed scale: exact text (NaN and
            // ±Infinity as PostgreSQL spells them).
            _ => PgKind::AsText,
        }
    }

    /// The select-list expression reading this column (binary COPY needs
    /// a decoder for every type; the rest is read as text).
    pub fn select_expr(&self, quoted: &str) -> String {
        match self {
            PgKind::AsText => format!("{quoted}::text"),
            PgKind::List(e) if **e == PgKind::AsText => format!("{quoted}::text[]"),
            _ => quoted.to_string(),
        }
    }

    /// Whether the kind (or its element) is `money`.
    pub fn has_money(&self) -> bool {
        match self {
            PgKind::Money { .. } => true,
            PgKind::List(e) => e.has_money(),
            _ => false,
        }
    }

    /// The same kind with `money` at `scale` fraction digits.
    pub fn with_money_scale(self, scale: i8) -> PgKind {
        match self {
            PgKind::Money { .. } => PgKind::Money { scale },
            PgKind::List(e) => PgKind::List(Box::new(e.with_money_scale(scale))),
            k => k,
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            PgKind::Bool => DataType::Boolean,
            PgKind::Int2 => DataType::Int16,
            PgKind::Int4 => DataType::Int32,
            PgKind::Int8 | PgKind::Oid => DataType::Int64,
            PgKind::Float4 => DataType::Float32,
            PgKind::Float8 => DataType::Float64,
            PgKind::Text | PgKind::Jsonb | PgKind::Uuid | PgKind::AsText => DataType::Utf8,
            PgKind::Bytea => DataType::Binary,
            PgKind::Date => DataType::Date32,
            PgKind::Time => DataType::Time64(TimeUnit::Microsecond),
            PgKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgKind::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            PgKind::Numeric { precision, scale } if *precision <= 38 => {
                DataType::Decimal128(*precision, *scale)
            }
            PgKind::Numeric { precision, scale } => DataType::Decimal256(*precision, *scale),
            PgKind::Money { scale } => DataType::Decimal128(19, *scale),
            PgKind::List(e) => DataType::List(Arc::new(Field::new("item", e.data_type(), true))),
        }
    }
}

/// One column's builder.
pub enum Col {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder, PgKind),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Dec(Decimal128Builder, u8, i8),
    Dec256(Decimal256Builder, u8, i8),
    Money(Decimal128Builder, i8),
    List {
        kind: PgKind,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        items: Box<Col>,
    },
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

/// Advice for a value that has no Arrow counterpart.
const MAP_IT: &str = "map it in a `query:` (e.g. CASE WHEN isfinite(col) THEN col END)";
const MAP_NAN: &str = "map it in a `query:` (e.g. NULLIF(col, 'NaN'))";

impl Col {
    pub fn new(kind: PgKind, cap: usize) -> Col {
        match kind {
            PgKind::Bool => Col::Bool(BooleanBuilder::with_capacity(cap)),
            PgKind::Int2 => Col::I16(Int16Builder::with_capacity(cap)),
            PgKind::Int4 => Col::I32(Int32Builder::with_capacity(cap)),
            PgKind::Int8 | PgKind::Oid => Col::I64(Int64Builder::with_capacity(cap)),
            PgKind::Float4 => Col::F32(Float32Builder::with_capacity(cap)),
            PgKind::Float8 => Col::F64(Float64Builder::with_capacity(cap)),
            PgKind::Text | PgKind::Jsonb | PgKind::Uuid | PgKind::AsText => {
                Col::Str(StringBuilder::with_capacity(cap, cap * 24), kind)
            }
            PgKind::Bytea => Col::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            PgKind::Date => Col::Date(Date32Builder::with_capacity(cap)),
            PgKind::Time => Col::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            PgKind::Timestamp => Col::Ts(TimestampMicrosecondBuilder::with_capacity(cap), None),
            PgKind::TimestampTz => Col::Ts(
                TimestampMicrosecondBuilder::with_capacity(cap),
                Some("+00:00".into()),
            ),
            PgKind::Numeric { precision, scale } if precision <= 38 => {
                Col::Dec(Decimal128Builder::with_capacity(cap), precision, scale)
            }
            PgKind::Numeric { precision, scale } => {
                Col::Dec256(Decimal256Builder::with_capacity(cap), precision, scale)
            }
            PgKind::Money { scale } => Col::Money(Decimal128Builder::with_capacity(cap), scale),
            PgKind::List(e) => Col::List {
                items: Box::new(Col::new((*e).clone(), cap * 4)),
                kind: PgKind::List(e),
                offsets: {
                    let mut o = Vec::with_capacity(cap + 1);
                    o.push(0);
                    o
                },
                valid: Vec::with_capacity(cap),
            },
        }
    }

    pub fn push_null(&mut self) {
        match self {
            Col::Bool(b) => b.append_null(),
            Col::I16(b) => b.append_null(),
            Col::I32(b) => b.append_null(),
            Col::I64(b) => b.append_null(),
            Col::F32(b) => b.append_null(),
            Col::F64(b) => b.append_null(),
            Col::Str(b, _) => b.append_null(),
            Col::Bin(b) => b.append_null(),
            Col::Date(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::Ts(b, _) => b.append_null(),
            Col::Dec(b, ..) | Col::Money(b, _) => b.append_null(),
            Col::Dec256(b, ..) => b.append_null(),
            Col::List { offsets, valid, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                valid.push(false);
            }
        }
    }

    /// Decode one non-NULL binary value.
    pub fn push(&mut self, v: &[u8]) -> Result<(), String> {
        match self {
            Col::Bool(b) => b.append_value(v.first().copied().unwrap_or(0) != 0),
            Col::I16(b) => b.append_value(i16::from_be_bytes(be(v)?)),
            Col::I32(b) => b.append_value(i32::from_be_bytes(be(v)?)),
            Col::I64(b) => match v.len() {
                4 => b.append_value(u32::from_be_bytes(be(v)?) as i64),
                _ => b.append_value(i64::from_be_bytes(be(v)?)),
            },
            Col::F32(b) => b.append_value(f32::from_be_bytes(be(v)?)),
            Col::F64(b) => b.append_value(f64::from_be_bytes(be(v)?)),
            Col::Str(b, PgKind::Jsonb) => {
                let text = v.get(1..).ok_or("empty jsonb")?;
                b.append_value(std::str::from_utf8(text).map_err(|e| e.to_string())?)
            }
            Col::Str(b, PgKind::Uuid) => b.append_value(format_uuid(&be::<16>(v)?)),
            Col::Str(b, _) => b.append_value(std::str::from_utf8(v).map_err(|e| e.to_string())?),
            Col::Bin(b) => b.append_value(v),
            Col::Date(b) => match i32::from_be_bytes(be(v)?) {
                i32::MAX => return Err(format!("date 'infinity' has no Arrow value; {MAP_IT}")),
                i32::MIN => return Err(format!("date '-infinity' has no Arrow value; {MAP_IT}")),
                d => b.append_value(d.saturating_add(PG_EPOCH_DAYS)),
            },
            Col::Time(b) => b.append_value(i64::from_be_bytes(be(v)?)),
            Col::Ts(b, _) => match i64::from_be_bytes(be(v)?) {
                i64::MAX => {
                    return Err(format!("timestamp 'infinity' has no Arrow value; {MAP_IT}"));
                }
                i64::MIN => {
                    return Err(format!(
                        "timestamp '-infinity' has no Arrow value; {MAP_IT}"
                    ));
                }
                us => b.append_value(
                    us.checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                ),
            },
            Col::Dec(b, p, scale) => {
                let d = decode_numeric(v, *p, *scale)?;
                b.append_value(d.to_i128().ok_or("numeric out of range")?)
            }
            Col::Dec256(b, p, scale) => b.append_value(decode_numeric(v, *p, *scale)?),
            Col::Money(b, _) => b.append_value(i64::from_be_bytes(be(v)?) as i128),
            Col::List {
                offsets,
                valid,
                items,
                ..
            } => {
                let n = decode_array(v, items)?;
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + n);
                valid.push(true);
            }
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Bool(b) => Arc::new(b.finish()),
            Col::I16(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F32(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Str(b, _) => Arc::new(b.finish()),
            Col::Bin(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish()),
            Col::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Col::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated"),
            ),
            Col::Dec256(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated"),
            ),
            Col::Money(b, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(19, *s)
                    .expect("money scale is small"),
            ),
            Col::List {
                kind,
                offsets,
                valid,
                items,
            } => {
                let PgKind::List(e) = kind else {
                    unreachable!("a list column has a list kind")
                };
                let field = Arc::new(Field::new("item", e.data_type(), true));
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::new(field, offsets, items.finish(), Some(nulls)))
            }
        }
    }
}

/// Array binary format: ndim, has-null flag, element oid, per dimension
/// (size, lower bound), then per element an i32 length (-1 = NULL) and
/// the element's binary value. Pushes the elements; returns how many.
fn decode_array(v: &[u8], items: &mut Col) -> Result<i32, String> {
    let i32_at = |p: usize| -> Result<i32, String> {
        v.get(p..p + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "short array".to_string())
    };
    let ndim = i32_at(0)?;
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(format!(
            "{ndim}-dimensional array: only one-dimensional arrays map to lists; \
             select it through a `query:` (e.g. col::text)"
        ));
    }
    let n = i32_at(12)?;
    let mut p = 20usize;
    for _ in 0..n {
        let len = i32_at(p)?;
        p += 4;
        if len < 0 {
            items.push_null();
        } else {
            let e = v.get(p..p + len as usize).ok_or("short array")?;
            items.push(e)?;
            p += len as usize;
        }
    }
    Ok(n)
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// NUMERIC binary (ndigits, weight, sign, dscale, base-10000 digits) → the
/// unscaled integer at `scale`, checked against `precision` digits.
///
/// Each base-10000 digit is placed at its own power of ten, so no
/// intermediate holds more digits than the result (a value with 38
/// significant digits fits although its digit groups span 40).
pub fn decode_numeric(v: &[u8], precision: u8, scale: i8) -> Result<i256, String> {
    if v.len() < 8 {
        return Err("short numeric".into());
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]) as i64;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i64;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    match sign {
        0xC000 => return Err(format!("numeric NaN has no decimal value; {MAP_NAN}")),
        0xD000 | 0xF000 => {
            return Err(format!("numeric infinity has no decimal value; {MAP_NAN}"));
        }
        _ => {}
    }
    if ndigits < 0 || v.len() < 8 + 2 * ndigits as usize {
        return Err("short numeric".into());
    }
    let overflow = || format!("numeric value does not fit numeric({precision},{scale})");
    let ten = i256::from_i128(10);
    let mut acc = i256::ZERO;
    for i in 0..ndigits {
        let d = i16::from_be_bytes([v[8 + 2 * i as usize], v[9 + 2 * i as usize]]) as i128;
        // This digit is d * 10000^(weight - i); at `scale` that is
        // d * 10^(4 * (weight - i) + scale).
        let e = 4 * (weight - i) + scale as i64;
        if e >= 0 {
            let f = ten.checked_pow(e as u32).ok_or_else(overflow)?;
            let t = i256::from_i128(d).checked_mul(f).ok_or_else(overflow)?;
            acc = acc.checked_add(t).ok_or_else(overflow)?;
        } else {
            let f = 10i128.checked_pow((-e) as u32).unwrap_or(i128::MAX);
            if d % f != 0 {
                return Err(format!(
                    "numeric value has more than {scale} fraction digits"
                ));
            }
            acc = acc
                .checked_add(i256::from_i128(d / f))
                .ok_or_else(overflow)?;
        }
    }
    let limit = ten.checked_pow(precision as u32).ok_or_else(overflow)?;
    if acc >= limit {
        return Err(overflow());
    }
    Ok(if sign == 0x4000 {
        acc.wrapping_neg()
    } else {
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(ndigits.to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_decodes() {
        // 12345.67 = digits [1, 2345, 6700], weight 1
        let dec = |v: Vec<u8>, p, s| decode_numeric(&v, p, s).map(|d| d.to_i128().unwrap());
        assert_eq!(
            dec(numeric(3, 1, 0, 2, &[1, 2345, 6700]), 12, 2).unwrap(),
            1_234_567
        );
        // -0.05
        assert_eq!(dec(numeric(1, -1, 0x4000, 2, &[500]), 12, 2).unwrap(), -5);
        // 0
        assert_eq!(dec(numeric(0, 0, 0, 0, &[]), 12, 2).unwrap(), 0);
        // 10000 = [1], weight 1
        assert_eq!(dec(numeric(1, 1, 0, 0, &[1]), 12, 2).unwrap(), 1_000_000);
        // 38 significant digits at scale 10 (digit groups span 40 digits).
        let max = numeric(
            10,
            6,
            0,
            10,
            &[9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9900],
        );
        assert_eq!(dec(max.clone(), 38, 10).unwrap(), 10i128.pow(38) - 1);
        assert!(dec(max, 37, 10).is_err());
        // 5 fraction digits do not fit scale 2.
        assert!(dec(numeric(2, 0, 0, 5, &[1, 2345]), 12, 2).is_err());
    }
}

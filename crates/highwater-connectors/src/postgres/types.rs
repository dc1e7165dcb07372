//! PostgreSQL types → Arrow, and the binary `COPY` decoder.
//!
//! Binary COPY format: an 11-byte signature, flags (i32), header extension
//! (i32 length + bytes); then per tuple an i16 field count (-1 ends the
//! data) and per field an i32 length (-1 is NULL) and the value in the
//! type's binary send format. Types without a decoder here are selected as
//! `::text`.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::*;
use arrow_schema::{DataType, TimeUnit};
use tokio_postgres::types::Type;

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;

/// How a column is read and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    Numeric {
        precision: u8,
        scale: i8,
    },
    Uuid,
    /// Selected as `::text`, decoded as text.
    AsText,
}

impl PgKind {
    pub fn from_type(t: &Type, typmod: i32) -> PgKind {
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
            Type::NUMERIC if typmod >= 4 => {
                let precision = (((typmod - 4) >> 16) & 0xffff) as u8;
                let scale = ((typmod - 4) & 0xffff) as i16;
                if (1..=38).contains(&precision) && (0..=precision as i16).contains(&scale) {
                    PgKind::Numeric {
                        precision,
                        scale: scale as i8,
                    }
                } else {
                    PgKind::AsText
                }
            }
            _ => PgKind::AsText,
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
            PgKind::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
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
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

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
            PgKind::Numeric { precision, scale } => {
                Col::Dec(Decimal128Builder::with_capacity(cap), precision, scale)
            }
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
            Col::Dec(b, ..) => b.append_null(),
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
            Col::Date(b) => {
                let d = i32::from_be_bytes(be(v)?);
                b.append_value(d.saturating_add(PG_EPOCH_DAYS))
            }
            Col::Time(b) => b.append_value(i64::from_be_bytes(be(v)?)),
            Col::Ts(b, _) => {
                let us = i64::from_be_bytes(be(v)?);
                match us {
                    i64::MAX | i64::MIN => {
                        return Err("infinite timestamps cannot be copied".into());
                    }
                    _ => b.append_value(us.saturating_add(PG_EPOCH_MICROS)),
                }
            }
            Col::Dec(b, _, scale) => b.append_value(decode_numeric(v, *scale)?),
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
        }
    }
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
/// unscaled i128 at `scale`.
pub fn decode_numeric(v: &[u8], scale: i8) -> Result<i128, String> {
    if v.len() < 8 {
        return Err("short numeric".into());
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]) as i64;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i64;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return Err("NaN or infinite numeric cannot be copied as a decimal".into());
    }
    if v.len() < 8 + 2 * ndigits as usize {
        return Err("short numeric".into());
    }
    let overflow = || "numeric value out of range for its declared precision".to_string();
    let mut acc: i128 = 0;
    for i in 0..ndigits as usize {
        let d = i16::from_be_bytes([v[8 + 2 * i], v[9 + 2 * i]]) as i128;
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d))
            .ok_or_else(overflow)?;
    }
    // acc holds value * 10000^(ndigits - 1 - weight); bring it to 10^scale.
    let exp10 = scale as i64 - 4 * (ndigits - 1 - weight);
    if exp10 >= 0 {
        let f = 10i128.checked_pow(exp10 as u32).ok_or_else(overflow)?;
        acc = acc.checked_mul(f).ok_or_else(overflow)?;
    } else {
        let f = 10i128.checked_pow((-exp10) as u32).ok_or_else(overflow)?;
        acc /= f;
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
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
        assert_eq!(
            decode_numeric(&numeric(3, 1, 0, 2, &[1, 2345, 6700]), 2).unwrap(),
            1_234_567
        );
        // -0.05
        assert_eq!(
            decode_numeric(&numeric(1, -1, 0x4000, 2, &[500]), 2).unwrap(),
            -5
        );
        // 0
        assert_eq!(decode_numeric(&numeric(0, 0, 0, 0, &[]), 2).unwrap(), 0);
        // 10000 = [1], weight 1
        assert_eq!(
            decode_numeric(&numeric(1, 1, 0, 0, &[1]), 2).unwrap(),
            1_000_000
        );
    }
}

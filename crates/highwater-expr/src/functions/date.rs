//! Date and time functions, on top of [`crate::datetime`].
//!
//! Every function that returns a timestamp takes an optional last `format`
//! argument (a .NET standard or custom format string); without it the result
//! is `yyyy-MM-ddTHH:mm:ss.fffffffK`, e.g. `2024-01-15T10:20:30.0000000Z`.
//! Amounts (`addDays(ts, 1)`) must be integers, as in Data Factory.
//! `convertFromUtc` requires a timestamp ending in `Z`; `convertToUtc`
//! requires one without a zone (or in UTC when converting from UTC).
//! Results in a zone other than UTC carry no zone suffix, like Data Factory's.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value;

use super::Args;
use crate::datetime::{self, DEFAULT_FORMAT, Kind, Timestamp};
use crate::error::{EvalError, EvalErrorKind};

fn timestamp(a: &Args<'_>, i: usize) -> Result<Timestamp, EvalError> {
    let s = a.str(i)?;
    datetime::parse_timestamp(s).ok_or_else(|| {
        a.value_error(
            i,
            format!("must be an ISO 8601 timestamp such as '2024-01-15T10:20:30Z', got '{s}'"),
        )
    })
}

/// Formats with the optional format argument at `i`.
fn render(a: &Args<'_>, ts: Timestamp, i: usize) -> Result<Value, EvalError> {
    let fmt = a.opt_str(i)?.unwrap_or(DEFAULT_FORMAT);
    datetime::format(ts, fmt).map(Value::String).map_err(|_| {
        a.value_error(
            i,
            format!(
                "is not a valid .NET date format: '{fmt}' (use one standard letter such as 'o', 'd', 's', or a custom pattern such as 'yyyy-MM-dd HH:mm:ss')"
            ),
        )
    })
}

fn out_of_range(a: &Args<'_>) -> EvalError {
    a.error(
        EvalErrorKind::Overflow,
        "produced a date outside the years 1 to 9999",
    )
}

fn add_seconds_by(a: &Args<'_>, per_unit: i64) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let n = a.int(1)?;
    let dt = n
        .checked_mul(per_unit)
        .and_then(Duration::try_seconds)
        .and_then(|d| ts.dt.checked_add_signed(d))
        .filter(|d| (1..=9999).contains(&d.year()))
        .ok_or_else(|| out_of_range(a))?;
    render(a, ts.with(dt), 2)
}

pub fn add_days(a: &Args<'_>) -> Result<Value, EvalError> {
    add_seconds_by(a, 86_400)
}

pub fn add_hours(a: &Args<'_>) -> Result<Value, EvalError> {
    add_seconds_by(a, 3_600)
}

pub fn add_minutes(a: &Args<'_>) -> Result<Value, EvalError> {
    add_seconds_by(a, 60)
}

pub fn add_seconds(a: &Args<'_>) -> Result<Value, EvalError> {
    add_seconds_by(a, 1)
}

fn unit_arg<'a>(a: &'a Args<'_>, i: usize) -> Result<&'a str, EvalError> {
    let unit = a.str(i)?;
    if !datetime::valid_unit(unit) {
        return Err(a.value_error(
            i,
            format!(
                "must be a time unit (Second, Minute, Hour, Day, Week, Month or Year), got '{unit}'"
            ),
        ));
    }
    Ok(unit)
}

fn shift(a: &Args<'_>, ts: Timestamp, amount: i64, unit: &str) -> Result<Timestamp, EvalError> {
    datetime::add_unit(ts.dt, amount, unit)
        .map(|dt| ts.with(dt))
        .ok_or_else(|| out_of_range(a))
}

pub fn add_to_time(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let n = a.int(1)?;
    let unit = unit_arg(a, 2)?;
    let r = shift(a, ts, n, unit)?;
    render(a, r, 3)
}

pub fn subtract_from_time(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let n = a.int(1)?.checked_neg().ok_or_else(|| out_of_range(a))?;
    let unit = unit_arg(a, 2)?;
    let r = shift(a, ts, n, unit)?;
    render(a, r, 3)
}

fn now(a: &Args<'_>) -> Timestamp {
    Timestamp::utc(a.scope.now().naive_utc())
}

pub fn utc_now(a: &Args<'_>) -> Result<Value, EvalError> {
    render(a, now(a), 0)
}

pub fn get_future_time(a: &Args<'_>) -> Result<Value, EvalError> {
    let n = a.int(0)?;
    let unit = unit_arg(a, 1)?;
    let r = shift(a, now(a), n, unit)?;
    render(a, r, 2)
}

pub fn get_past_time(a: &Args<'_>) -> Result<Value, EvalError> {
    let n = a.int(0)?.checked_neg().ok_or_else(|| out_of_range(a))?;
    let unit = unit_arg(a, 1)?;
    let r = shift(a, now(a), n, unit)?;
    render(a, r, 2)
}

pub fn format_date_time(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    // A third argument (locale) is accepted; formatting is always invariant.
    if a.len() > 2 {
        a.str(2)?;
    }
    render(a, ts, 1)
}

fn start_of(
    a: &Args<'_>,
    cut: fn(NaiveDateTime) -> Option<NaiveDateTime>,
) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let dt = cut(ts.dt).ok_or_else(|| out_of_range(a))?;
    render(a, ts.with(dt), 1)
}

pub fn start_of_day(a: &Args<'_>) -> Result<Value, EvalError> {
    start_of(a, |d| d.date().and_hms_opt(0, 0, 0))
}

pub fn start_of_hour(a: &Args<'_>) -> Result<Value, EvalError> {
    start_of(a, |d| d.date().and_hms_opt(d.hour(), 0, 0))
}

pub fn start_of_month(a: &Args<'_>) -> Result<Value, EvalError> {
    start_of(a, |d| {
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1)?.and_hms_opt(0, 0, 0)
    })
}

pub fn day_of_month(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::from(i64::from(timestamp(a, 0)?.dt.day())))
}

pub fn day_of_week(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::from(i64::from(
        timestamp(a, 0)?.dt.weekday().num_days_from_sunday(),
    )))
}

pub fn day_of_year(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::from(i64::from(timestamp(a, 0)?.dt.ordinal())))
}

pub fn ticks(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    datetime::ticks(ts.dt)
        .map(Value::from)
        .ok_or_else(|| out_of_range(a))
}

fn zone(a: &Args<'_>, i: usize) -> Result<chrono_tz::Tz, EvalError> {
    let name = a.str(i)?;
    datetime::find_zone(name).ok_or_else(|| {
        a.value_error(
            i,
            format!(
                "is not a known time zone: '{name}' (use a Windows name such as 'Pacific Standard Time' or 'W. Europe Standard Time', or an IANA name such as 'Europe/Paris')"
            ),
        )
    })
}

/// A timestamp in `tz`: UTC-kind when the zone is UTC, unspecified otherwise.
fn in_zone(dt: NaiveDateTime, tz: chrono_tz::Tz) -> Timestamp {
    Timestamp {
        dt,
        kind: if datetime::is_utc_zone(tz) {
            Kind::Utc
        } else {
            Kind::Unspecified
        },
    }
}

pub fn convert_from_utc(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let tz = zone(a, 1)?;
    if ts.kind != Kind::Utc {
        return Err(a.value_error(
            0,
            format!("must be a UTC timestamp ending in 'Z', got '{}'", a.str(0)?),
        ));
    }
    render(a, in_zone(datetime::from_utc(ts.dt, tz), tz), 2)
}

fn local_to_utc(
    a: &Args<'_>,
    dt: NaiveDateTime,
    tz: chrono_tz::Tz,
) -> Result<NaiveDateTime, EvalError> {
    datetime::to_utc(dt, tz).ok_or_else(|| {
        a.value_error(
            0,
            format!(
                "is a time that is invalid or ambiguous in {} (skipped or repeated by a clock change)",
                tz.name()
            ),
        )
    })
}

pub fn convert_to_utc(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let tz = zone(a, 1)?;
    let dt = match ts.kind {
        Kind::Unspecified => local_to_utc(a, ts.dt, tz)?,
        _ if datetime::is_utc_zone(tz) => ts.dt,
        _ => {
            return Err(a.value_error(
                0,
                format!(
                    "already carries a zone ('{}'); convertToUtc expects a timestamp without 'Z' or offset, in the source time zone",
                    a.str(0)?
                ),
            ));
        }
    };
    render(
        a,
        Timestamp {
            dt,
            kind: Kind::Utc,
        },
        2,
    )
}

pub fn convert_time_zone(a: &Args<'_>) -> Result<Value, EvalError> {
    let ts = timestamp(a, 0)?;
    let src = zone(a, 1)?;
    let dst = zone(a, 2)?;
    // A timestamp with a zone is an instant; only a bare one is in `src`.
    let utc = match ts.kind {
        Kind::Unspecified => local_to_utc(a, ts.dt, src)?,
        Kind::Utc | Kind::Local => ts.dt,
    };
    render(a, in_zone(datetime::from_utc(utc, dst), dst), 3)
}

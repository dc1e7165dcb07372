//! Timestamps as Data Factory's .NET runtime sees them: parsing, .NET
//! format strings, arithmetic and Windows time zones.
//!
//! A timestamp remembers how it was written, because that decides how it
//! prints (the `K` specifier, part of the default format
//! `yyyy-MM-ddTHH:mm:ss.fffffffK`):
//!
//! | input                         | kind          | prints as                          |
//! |-------------------------------|---------------|------------------------------------|
//! | `2024-01-15T10:20:30Z`        | UTC           | `2024-01-15T10:20:30.0000000Z`     |
//! | `2024-01-15T10:20:30`         | unspecified   | `2024-01-15T10:20:30.0000000`      |
//! | `2024-01-15T10:20:30+02:00`   | local         | `2024-01-15T08:20:30.0000000+00:00` (shifted to UTC) |
//!
//! Precision is one tick (100 ns); more fraction digits round. Formatting is
//! the invariant culture (English month and day names). Years are 1–9999;
//! arithmetic leaving that range is an error.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};

/// How the timestamp was written; decides `K`/`o` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ended in `Z`.
    Utc,
    /// No zone.
    Unspecified,
    /// Had an offset; stored shifted to UTC (the reference runs in UTC).
    Local,
}

/// A date and time with its [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Wall-clock value (UTC for `Utc` and `Local`).
    pub dt: NaiveDateTime,
    /// How it prints.
    pub kind: Kind,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The default format of every date function: round-trip `o`.
pub const DEFAULT_FORMAT: &str = "o";

impl Timestamp {
    /// A UTC timestamp.
    pub fn utc(dt: NaiveDateTime) -> Self {
        Timestamp {
            dt: round_to_tick(dt),
            kind: Kind::Utc,
        }
    }

    /// As a UTC instant (unspecified times are taken as UTC).
    pub fn to_utc(self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.from_utc_datetime(&self.dt)
    }

    /// The default rendering, `yyyy-MM-ddTHH:mm:ss.fffffffK`.
    pub fn to_iso(self) -> String {
        // The default format is always valid.
        format(self, DEFAULT_FORMAT).unwrap_or_default()
    }

    /// The same kind with another wall-clock value.
    pub fn with(self, dt: NaiveDateTime) -> Self {
        Timestamp {
            dt,
            kind: self.kind,
        }
    }
}

fn round_to_tick(dt: NaiveDateTime) -> NaiveDateTime {
    let ns = dt.nanosecond() % 1_000_000_000;
    let rem = ns % 100;
    let base = dt - Duration::nanoseconds(i64::from(rem));
    if rem >= 50 {
        base.checked_add_signed(Duration::nanoseconds(100))
            .unwrap_or(base)
    } else {
        base
    }
}

/// Ticks (100 ns) since 0001-01-01T00:00:00.
pub fn ticks(dt: NaiveDateTime) -> Option<i64> {
    let epoch = NaiveDate::from_ymd_opt(1, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let d = dt.signed_duration_since(epoch);
    let secs = d.num_seconds();
    let sub = (d - Duration::seconds(secs)).num_nanoseconds()? / 100;
    secs.checked_mul(10_000_000)?.checked_add(sub)
}

/// Parses the timestamp forms Data Factory accepts: ISO 8601
/// (`2024-01-15`, `2024-01-15T10:20`, `…:30`, `….1234567`, with `Z`,
/// `±HH:mm`, `±HHmm` or `±HH`), a space instead of `T`, and the invariant
/// culture's `M/d/yyyy[ H:mm[:ss]]`.
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let s = text.trim();
    let (date, rest, iso) = parse_date(s)?;
    let mut rest = rest;
    let mut time = NaiveTime::from_hms_opt(0, 0, 0)?;
    let mut nanos: u32 = 0;
    let mut round_up = false;
    if let Some(r) = rest.strip_prefix(['T', ' ']) {
        let (t, ns, up, r2) = parse_time(r, if iso { 2 } else { 1 })?;
        time = t;
        nanos = ns;
        round_up = up;
        rest = r2;
    }
    let mut dt = date.and_time(time) + Duration::nanoseconds(i64::from(nanos));
    if round_up {
        dt = dt.checked_add_signed(Duration::nanoseconds(100))?;
    }
    let rest = rest.trim_start();
    let (kind, dt) = if rest.is_empty() {
        (Kind::Unspecified, dt)
    } else if rest == "Z" || rest == "z" {
        (Kind::Utc, dt)
    } else {
        let offset = parse_offset(rest)?;
        (
            Kind::Local,
            dt.checked_sub_signed(Duration::seconds(offset))?,
        )
    };
    if !(1..=9999).contains(&dt.year()) {
        return None;
    }
    Some(Timestamp { dt, kind })
}

fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// The date, the rest, and whether it was the ISO form.
fn parse_date(s: &str) -> Option<(NaiveDate, &str, bool)> {
    if s.as_bytes().get(4) == Some(&b'-') {
        let (y, r) = take_digits(s, 4, 4)?;
        let r = r.strip_prefix('-')?;
        let (m, r) = take_digits(r, 1, 2)?;
        let r = r.strip_prefix('-')?;
        let (d, r) = take_digits(r, 1, 2)?;
        return Some((NaiveDate::from_ymd_opt(y as i32, m, d)?, r, true));
    }
    // Invariant culture short date: M/d/yyyy.
    let (m, r) = take_digits(s, 1, 2)?;
    let r = r.strip_prefix('/')?;
    let (d, r) = take_digits(r, 1, 2)?;
    let r = r.strip_prefix('/')?;
    let (y, r) = take_digits(r, 4, 4)?;
    Some((NaiveDate::from_ymd_opt(y as i32, m, d)?, r, false))
}

/// Returns time, sub-second nanoseconds (tick-truncated), whether to round up
/// one tick, and the rest.
fn parse_time(s: &str, hour_digits: usize) -> Option<(NaiveTime, u32, bool, &str)> {
    let (h, r) = take_digits(s, hour_digits, 2)?;
    let r = r.strip_prefix(':')?;
    let (m, mut r) = take_digits(r, 2, 2)?;
    let mut sec = 0;
    let mut nanos = 0u32;
    let mut up = false;
    if let Some(r2) = r.strip_prefix(':') {
        let (sv, r3) = take_digits(r2, 2, 2)?;
        sec = sv;
        r = r3;
        if let Some(r4) = r.strip_prefix('.') {
            let n = r4.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            let digits = &r4[..n];
            let mut ticks: u32 = 0;
            for (i, b) in digits.bytes().enumerate() {
                let d = u32::from(b - b'0');
                if i < 7 {
                    ticks = ticks * 10 + d;
                } else if i == 7 {
                    up = d >= 5;
                }
            }
            for _ in n..7 {
                ticks *= 10;
            }
            nanos = ticks * 100;
            r = &r4[n..];
        }
    }
    Some((NaiveTime::from_hms_opt(h, m, sec)?, nanos, up, r))
}

fn parse_offset(s: &str) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let r = &s[1..];
    let (h, r) = take_digits(r, 2, 2)?;
    let (m, r) = if let Some(r2) = r.strip_prefix(':') {
        take_digits(r2, 2, 2)?
    } else if r.is_empty() {
        (0, r)
    } else {
        take_digits(r, 2, 2)?
    };
    if !r.is_empty() || h > 14 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 3600 + m * 60))
}

/// Why a format string was rejected.
#[derive(Debug)]
pub struct BadFormat;

/// The .NET standard format strings in the en-US culture, as Data Factory
/// formats them (`'D'` → `Thursday, March 15, 2018`, `'d'` → `3/15/2018`).
fn standard_pattern(c: char) -> Option<&'static str> {
    Some(match c {
        'o' | 'O' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
        's' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        'u' => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        'd' => "M/d/yyyy",
        'D' => "dddd, MMMM d, yyyy",
        'f' => "dddd, MMMM d, yyyy h:mm tt",
        'F' | 'U' => "dddd, MMMM d, yyyy h:mm:ss tt",
        'g' => "M/d/yyyy h:mm tt",
        'G' => "M/d/yyyy h:mm:ss tt",
        'M' | 'm' => "MMMM d",
        'R' | 'r' => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        't' => "h:mm tt",
        'T' => "h:mm:ss tt",
        'Y' | 'y' => "MMMM yyyy",
        _ => return None,
    })
}

/// Formats with a .NET standard (one letter) or custom format string.
pub fn format(ts: Timestamp, fmt: &str) -> Result<String, BadFormat> {
    let mut chars = fmt.chars();
    let pattern = match (chars.next(), chars.next()) {
        (None, _) => standard_pattern('G').ok_or(BadFormat)?,
        (Some(c), None) => standard_pattern(c).ok_or(BadFormat)?,
        _ => fmt,
    };
    format_custom(ts, pattern)
}

fn format_custom(ts: Timestamp, pattern: &str) -> Result<String, BadFormat> {
    let dt = ts.dt;
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let frac_ticks = dt.nanosecond() % 1_000_000_000 / 100;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        match c {
            'd' => match n {
                1 => out.push_str(&dt.day().to_string()),
                2 => out.push_str(&format!("{:02}", dt.day())),
                3 => out.push_str(&DAYS[dt.weekday().num_days_from_sunday() as usize][..3]),
                _ => out.push_str(DAYS[dt.weekday().num_days_from_sunday() as usize]),
            },
            'f' | 'F' => {
                if n > 7 {
                    return Err(BadFormat);
                }
                let s = format!("{frac_ticks:07}");
                let mut digits = s[..n].to_string();
                if c == 'F' {
                    digits = digits.trim_end_matches('0').to_string();
                    if digits.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                }
                out.push_str(&digits);
            }
            'g' => out.push_str("A.D."),
            'h' => {
                let h = match dt.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                out.push_str(&pad(h, n.min(2)));
            }
            'H' => out.push_str(&pad(dt.hour(), n.min(2))),
            'm' => out.push_str(&pad(dt.minute(), n.min(2))),
            's' => out.push_str(&pad(dt.second(), n.min(2))),
            'M' => match n {
                1 | 2 => out.push_str(&pad(dt.month(), n)),
                3 => out.push_str(&MONTHS[dt.month0() as usize][..3]),
                _ => out.push_str(MONTHS[dt.month0() as usize]),
            },
            't' => {
                let ampm = if dt.hour() < 12 { "AM" } else { "PM" };
                out.push_str(if n == 1 { &ampm[..1] } else { ampm });
            }
            'y' => {
                let y = dt.year().unsigned_abs();
                match n {
                    1 => out.push_str(&(y % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", y % 100)),
                    _ => out.push_str(&pad(y, n)),
                }
            }
            'z' => out.push_str(match n {
                1 => "+0",
                2 => "+00",
                _ => "+00:00",
            }),
            'K' => {
                for _ in 0..n {
                    out.push_str(match ts.kind {
                        Kind::Utc => "Z",
                        Kind::Local => "+00:00",
                        Kind::Unspecified => "",
                    });
                }
            }
            '\'' | '"' => {
                // Quoted literal: one char at a time, n is irrelevant.
                let quote = c;
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(BadFormat),
                        Some(&q) if q == quote => break,
                        Some('\\') => {
                            out.push(*chars.get(j + 1).ok_or(BadFormat)?);
                            j += 2;
                        }
                        Some(&ch) => {
                            out.push(ch);
                            j += 1;
                        }
                    }
                }
                i = j + 1;
                continue;
            }
            '\\' => {
                out.push(*chars.get(i + 1).ok_or(BadFormat)?);
                i += 2;
                continue;
            }
            '%' => {
                // `%d`: a lone custom specifier.
                let next = *chars.get(i + 1).ok_or(BadFormat)?;
                if next == '%' {
                    return Err(BadFormat);
                }
                out.push_str(&format_custom(ts, &next.to_string())?);
                i += 2;
                continue;
            }
            other => {
                for _ in 0..n {
                    out.push(other);
                }
            }
        }
        i += n;
    }
    Ok(out)
}

fn pad(v: u32, width: usize) -> String {
    format!("{v:0width$}")
}

/// Adds whole months, clamping the day to the end of the target month.
pub fn add_months(dt: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let total = i64::from(dt.year())
        .checked_mul(12)?
        .checked_add(i64::from(dt.month0()))?
        .checked_add(months)?;
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month0 = total.rem_euclid(12) as u32;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let mut day = dt.day();
    loop {
        if let Some(d) = NaiveDate::from_ymd_opt(year, month0 + 1, day) {
            return Some(d.and_time(dt.time()));
        }
        day = day.checked_sub(1)?;
    }
}

/// Adds `amount` of `unit` (`Second`, `Minute`, `Hour`, `Day`, `Week`,
/// `Month`, `Year`; any case). `None` for an unknown unit is told apart from
/// overflow by [`valid_unit`].
pub fn add_unit(dt: NaiveDateTime, amount: i64, unit: &str) -> Option<NaiveDateTime> {
    let secs = |mult: i64| -> Option<NaiveDateTime> {
        let d = Duration::try_seconds(amount.checked_mul(mult)?)?;
        dt.checked_add_signed(d)
    };
    let r = match unit.to_ascii_lowercase().as_str() {
        "second" => secs(1),
        "minute" => secs(60),
        "hour" => secs(3600),
        "day" => secs(86_400),
        "week" => secs(7 * 86_400),
        "month" => add_months(dt, amount),
        "year" => add_months(dt, amount.checked_mul(12)?),
        _ => None,
    }?;
    (1..=9999).contains(&r.year()).then_some(r)
}

/// True for a unit [`add_unit`] knows.
pub fn valid_unit(unit: &str) -> bool {
    matches!(
        unit.to_ascii_lowercase().as_str(),
        "second" | "minute" | "hour" | "day" | "week" | "month" | "year"
    )
}

/// A time zone by Windows name (as Data Factory documents them) or IANA
/// name, ignoring case.
pub fn find_zone(name: &str) -> Option<chrono_tz::Tz> {
    let lower = name.trim().to_lowercase();
    if let Some((_, iana)) = crate::timezones::WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.to_lowercase() == lower)
    {
        return iana.parse().ok();
    }
    if let Ok(tz) = name.trim().parse::<chrono_tz::Tz>() {
        return Some(tz);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().to_lowercase() == lower)
        .copied()
}

/// True when the zone is UTC itself (conversions to it print `Z`).
pub fn is_utc_zone(tz: chrono_tz::Tz) -> bool {
    matches!(
        tz.name(),
        "Etc/UTC" | "UTC" | "Etc/Universal" | "Etc/Zulu" | "Universal" | "Zulu" | "Etc/UCT" | "UCT"
    )
}

/// Wall-clock time in `tz` of a UTC instant.
pub fn from_utc(dt: NaiveDateTime, tz: chrono_tz::Tz) -> NaiveDateTime {
    tz.from_utc_datetime(&dt).naive_local()
}

/// UTC instant of a wall-clock time in `tz`; `None` for a time that is
/// ambiguous (the repeated hour when clocks go back) or skipped by a clock
/// change, both errors in Data Factory.
pub fn to_utc(dt: NaiveDateTime, tz: chrono_tz::Tz) -> Option<NaiveDateTime> {
    match tz.from_local_datetime(&dt) {
        chrono::LocalResult::Single(t) => Some(t.naive_utc()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ts: &str, f: &str) -> String {
        format(parse_timestamp(ts).expect("valid timestamp"), f).expect("valid format")
    }

    #[test]
    fn kinds_print_like_the_reference() {
        assert_eq!(
            fmt("2024-01-15T10:20:30Z", "o"),
            "2024-01-15T10:20:30.0000000Z"
        );
        assert_eq!(
            fmt("2024-01-15T10:20:30", "o"),
            "2024-01-15T10:20:30.0000000"
        );
        assert_eq!(
            fmt("2024-01-15T10:20:30+02:00", "o"),
            "2024-01-15T08:20:30.0000000+00:00"
        );
        assert_eq!(
            fmt("2024-01-15T10:20:30.123456789Z", "o"),
            "2024-01-15T10:20:30.1234568Z"
        );
        assert_eq!(fmt("1/15/2024", "o"), "2024-01-15T00:00:00.0000000");
        assert!(parse_timestamp("20240115").is_none());
        assert!(parse_timestamp("2024-02-30").is_none());
    }

    #[test]
    fn dotnet_formats() {
        let t = "2024-01-15T10:20:30Z";
        assert_eq!(fmt(t, "D"), "Monday, January 15, 2024");
        assert_eq!(
            fmt(t, "dddd, MMMM d, yyyy h:mm tt"),
            "Monday, January 15, 2024 10:20 AM"
        );
        assert_eq!(fmt(t, "R"), "Mon, 15 Jan 2024 10:20:30 GMT");
        assert_eq!(fmt(t, "u"), "2024-01-15 10:20:30Z");
        assert_eq!(
            fmt(t, r#"yyyy/MM/dd hh:mm:ss tt z zz g %d \y "lit" ddd MMM"#),
            "2024/01/15 10:20:30 AM +0 +00 A.D. 15 y lit Mon Jan"
        );
        assert_eq!(fmt("2024-01-15T10:20:30.5Z", "FFF fff ff f"), "5 500 50 5");
        assert_eq!(fmt(t, "HH:mm:ss.FFF"), "10:20:30");
        assert!(format(parse_timestamp(t).unwrap(), "x").is_err());
    }
}

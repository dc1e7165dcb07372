//! Numbers, dates and timestamps written as text straight into a byte
//! buffer, for the encoders that turn Arrow batches into text at bulk
//! speed: the CSV files (`files/csv.rs`) and the database loads
//! (`load_text.rs`). chrono's `format` and `Display` cost more than the
//! rest of the encoding together (see docs/decisions.md).

#[inline]
pub(crate) fn write_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

#[inline]
fn write_padded(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = v;
    for i in (10 - width..10).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[10 - width..]);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        write_padded(out, y as u32, 4);
    } else {
        write_int(out, y);
    }
    out.push(b'-');
    write_padded(out, m, 2);
    out.push(b'-');
    write_padded(out, d, 2);
}

pub(crate) fn write_timestamp(out: &mut Vec<u8>, us: i64, tz: bool) {
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    write_date(out, days);
    let secs = (rem / 1_000_000) as u32;
    let frac = (rem % 1_000_000) as u32;
    out.push(b'T');
    write_padded(out, secs / 3600, 2);
    out.push(b':');
    write_padded(out, secs / 60 % 60, 2);
    out.push(b':');
    write_padded(out, secs % 60, 2);
    if frac != 0 {
        out.push(b'.');
        if frac.is_multiple_of(1000) {
            write_padded(out, frac / 1000, 3);
        } else {
            write_padded(out, frac, 6);
        }
    }
    if tz {
        out.extend_from_slice(b"+00:00");
    }
}

pub(crate) fn write_decimal(out: &mut Vec<u8>, v: i128, scale: i8) {
    if scale <= 0 {
        let mut s = v.to_string();
        for _ in 0..(-scale) {
            s.push('0');
        }
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let neg = v < 0;
    let abs = v.unsigned_abs();
    let p = 10u128.pow(scale as u32);
    if neg {
        out.push(b'-');
    }
    let int = abs / p;
    if int <= i64::MAX as u128 {
        write_int(out, int as i64);
    } else {
        out.extend_from_slice(int.to_string().as_bytes());
    }
    out.push(b'.');
    let frac = abs % p;
    let digits = frac.to_string();
    for _ in digits.len()..scale as usize {
        out.push(b'0');
    }
    out.extend_from_slice(digits.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(us: i64, tz: bool) -> String {
        let mut v = Vec::new();
        write_timestamp(&mut v, us, tz);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn formats_match_iso_8601() {
        assert_eq!(ts(0, true), "1970-01-01T00:00:00+00:00");
        assert_eq!(ts(1_504_227_360_000_000, false), "2017-09-01T00:56:00");
        assert_eq!(ts(1_504_227_360_500_000, false), "2017-09-01T00:56:00.500");
        assert_eq!(
            ts(1_504_227_360_000_001, true),
            "2017-09-01T00:56:00.000001+00:00"
        );
        assert_eq!(ts(-1, false), "1969-12-31T23:59:59.999999");
        let mut v = Vec::new();
        write_date(&mut v, 19_723);
        assert_eq!(v, b"2024-01-01");
        // Check every day of four centuries against chrono.
        for d in -200_000..200_000i64 {
            let (y, m, dd) = civil_from_days(d);
            let c =
                chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(d);
            use chrono::Datelike;
            assert_eq!((y, m, dd), (c.year() as i64, c.month(), c.day()));
        }
    }

    #[test]
    fn decimals_and_integers() {
        let mut v = Vec::new();
        write_decimal(&mut v, -5, 2);
        v.push(b' ');
        write_decimal(&mut v, 123_456, 2);
        v.push(b' ');
        write_decimal(&mut v, 7, 0);
        assert_eq!(String::from_utf8(v).unwrap(), "-0.05 1234.56 7");
        let mut v = Vec::new();
        write_int(&mut v, i64::MIN);
        assert_eq!(v, b"-9223372036854775808");
    }
}

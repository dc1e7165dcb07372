//! A factory's triggers (`trigger/*.json`), as `highwater serve` runs them.
//!
//! - **ScheduleTrigger**: `recurrence` with `frequency` (Minute, Hour, Day,
//!   Week, Month), `interval`, `startTime`, `endTime`, `timeZone` (Windows
//!   or IANA ids) and `schedule` (`hours`, `minutes`, `weekDays`,
//!   `monthDays`, `monthlyOccurrences`). Firings are computed in the
//!   trigger's zone, so "every day at 02:00 W. Europe Standard Time" stays
//!   at 02:00 local across daylight saving. A schedule trigger does not
//!   backfill (as in Data Factory): it fires from now on.
//! - **TumblingWindowTrigger**: fixed-size, contiguous windows from
//!   `startTime` (`frequency` Minute, Hour or Month; `interval`), each due
//!   `delay` after its end, until `endTime`; every window runs, without
//!   gaps, each to success once (`retryPolicy` retries), at most
//!   `maxConcurrency` at once; a self-dependency (`dependsOn` with
//!   `SelfDependencyTumblingWindowTriggerReference`) makes a window wait
//!   for the window `offset` before it; a dependency on another tumbling
//!   window trigger (`TumblingWindowTriggerDependencyReference`) makes it
//!   wait for every window of that trigger overlapping
//!   `[start + offset, start + offset + size)` (`size` defaults to the
//!   window's own length) — see [`TriggerDependency`]. References between
//!   triggers are checked when the factory's triggers are [`load`]ed.
//!
//! The pipeline's parameters are evaluated with `trigger()`:
//! `trigger().outputs.windowStartTime` / `windowEndTime` (tumbling),
//! `trigger().scheduledTime`, `trigger().startTime`, `trigger().name`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use highwater_core::{Error, Result};
use highwater_expr::{EvalError, Expr, Scope};
use serde_json::{Map, Value, json};

/// One trigger of the factory.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub file: String,
    /// `runtimeState: Started` (triggers in git are often `Stopped`).
    pub started: bool,
    pub kind: TriggerKind,
    /// The pipelines it starts, with their parameters (unevaluated).
    pub pipelines: Vec<(String, Map<String, Value>)>,
}

#[derive(Debug, Clone)]
pub enum TriggerKind {
    Schedule(Recurrence),
    Tumbling(Tumbling),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// A schedule trigger's `recurrence`.
#[derive(Debug, Clone)]
pub struct Recurrence {
    pub frequency: Frequency,
    pub interval: u32,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub zone: chrono_tz::Tz,
    pub hours: Vec<u32>,
    pub minutes: Vec<u32>,
    pub week_days: Vec<chrono::Weekday>,
    /// 1..=31, or -1 for the month's last day.
    pub month_days: Vec<i32>,
    /// (weekday, occurrence): occurrence 1..=5 or -1 (the last).
    pub monthly_occurrences: Vec<(chrono::Weekday, i32)>,
}

/// A tumbling window trigger's windows.
#[derive(Debug, Clone)]
pub struct Tumbling {
    pub frequency: Frequency,
    pub interval: u32,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub delay: Duration,
    pub max_concurrency: usize,
    pub retry_count: u32,
    pub retry_interval: Duration,
    /// A window waits for the window `offset` windows before it (negative
    /// offsets, in windows) to succeed.
    pub self_dependency: Option<i64>,
    /// Windows of other tumbling window triggers each window waits for.
    pub depends_on: Vec<TriggerDependency>,
}

/// `{"type": "TumblingWindowTriggerDependencyReference", "referenceTrigger":
/// {"referenceName": "A"}, "offset": "-01:00:00", "size": "02:00:00"}`: a
/// window `[s, e)` waits until every window of trigger `A` that overlaps
/// `[s + offset, s + offset + size)` has succeeded. Without `size` the
/// range is the window's own length (`[s + offset, e + offset)`); without
/// `offset` it starts at `s`. The part of the range before `A`'s
/// `startTime` needs nothing; a part after `A`'s last window (its
/// `endTime`) is never covered, so the window waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerDependency {
    /// The referenced trigger's name.
    pub trigger: String,
    /// Added to the window's start (negative: earlier).
    pub offset: chrono::Duration,
    /// The range's length; `None` = the dependent window's length.
    pub size: Option<chrono::Duration>,
}

impl TriggerDependency {
    /// The range of the referenced trigger that window `w` waits for.
    pub fn range(&self, w: Window) -> (DateTime<Utc>, DateTime<Utc>) {
        let from = w.start + self.offset;
        let to = match self.size {
            Some(size) => from + size,
            None => w.end + self.offset,
        };
        (from, to)
    }
}

/// One window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Tumbling {
    /// The start of window `n` (0 = the first).
    fn nth_start(&self, n: i64) -> Option<DateTime<Utc>> {
        let step = i64::from(self.interval) * n;
        match self.frequency {
            Frequency::Minute => self
                .start
                .checked_add_signed(chrono::Duration::minutes(step)),
            Frequency::Hour => self.start.checked_add_signed(chrono::Duration::hours(step)),
            Frequency::Day => self.start.checked_add_signed(chrono::Duration::days(step)),
            Frequency::Week => self.start.checked_add_signed(chrono::Duration::weeks(step)),
            Frequency::Month => {
                let months = u32::try_from(step).ok()?;
                self.start.checked_add_months(chrono::Months::new(months))
            }
        }
    }

    /// Window `n`.
    pub fn window(&self, n: i64) -> Option<Window> {
        let start = self.nth_start(n)?;
        let end = self.nth_start(n + 1)?;
        if self.end.is_some_and(|e| end > e) {
            return None;
        }
        Some(Window { start, end })
    }

    /// The index of the window starting at `start`, if one does.
    pub fn index_of(&self, start: DateTime<Utc>) -> Option<i64> {
        let mut lo = 0i64;
        // Windows are at least a minute: a bound on the index.
        let mut hi = ((start - self.start).num_minutes() / i64::from(self.interval.max(1))) + 1;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let s = self.nth_start(mid)?;
            match s.cmp(&start) {
                std::cmp::Ordering::Equal => return Some(mid),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid - 1,
            }
        }
        None
    }

    /// The index of the last window starting at or before `t` (0 when `t`
    /// is before the first).
    fn index_at(&self, t: DateTime<Utc>) -> i64 {
        let mut lo = 0i64;
        // Windows are at least a minute: a bound on the index.
        let mut hi = ((t - self.start).num_minutes() / i64::from(self.interval.max(1))).max(0) + 1;
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            match self.nth_start(mid) {
                Some(s) if s <= t => lo = mid,
                _ => hi = mid - 1,
            }
        }
        lo
    }

    /// The windows overlapping `[from, to)`, in order; `None` when part of
    /// the range from `startTime` on lies past the last window (`endTime`):
    /// that part has no window that could succeed.
    pub fn overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Vec<Window>> {
        let mut out = Vec::new();
        if to <= self.start || to <= from {
            return Some(out);
        }
        let mut n = self.index_at(from.max(self.start));
        loop {
            if self.nth_start(n)? >= to {
                return Some(out);
            }
            out.push(self.window(n)?);
            n += 1;
        }
    }

    /// Every window due at `now` (its end plus the delay has passed), in
    /// order, at most `limit`.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<Window> {
        let mut out = Vec::new();
        let mut n = 0;
        while out.len() < limit {
            let Some(w) = self.window(n) else { break };
            let delay = chrono::Duration::from_std(self.delay).unwrap_or_default();
            if w.end + delay > now {
                break;
            }
            out.push(w);
            n += 1;
        }
        out
    }

    /// When the next window after those due at `now` becomes due.
    pub fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(self.delay).unwrap_or_default();
        let mut n = 0;
        loop {
            let w = self.window(n)?;
            if w.end + delay > now {
                return Some(w.end + delay);
            }
            n += 1;
        }
    }
}

impl Recurrence {
    /// The first firing strictly after `after` (and not before the start,
    /// not after the end).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.max(self.start - chrono::Duration::seconds(1));
        let found = match self.frequency {
            Frequency::Minute | Frequency::Hour if self.minutes.is_empty() => {
                let step = match self.frequency {
                    Frequency::Minute => chrono::Duration::minutes(i64::from(self.interval)),
                    _ => chrono::Duration::hours(i64::from(self.interval)),
                };
                let passed = (after - self.start).num_seconds().max(0);
                let k = passed / step.num_seconds().max(1);
                let mut t = self.start + step * (k as i32);
                while t <= after {
                    t += step;
                }
                Some(t)
            }
            _ => self.next_on_calendar(after),
        }?;
        match self.end {
            Some(e) if found > e => None,
            _ => Some(found),
        }
    }

    fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        highwater_expr::datetime::from_utc(t.naive_utc(), self.zone)
    }

    /// Firings by calendar, in the trigger's zone: walk the days from the
    /// one holding `after`, keep those the schedule allows, and take the
    /// first time of day on them past `after`.
    fn next_on_calendar(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start_local = self.local(self.start);
        let hours: Vec<u32> = if self.hours.is_empty() {
            match self.frequency {
                Frequency::Hour => (0..24).collect(),
                _ => vec![start_local.hour()],
            }
        } else {
            self.hours.clone()
        };
        let minutes: Vec<u32> = if self.minutes.is_empty() {
            vec![start_local.minute()]
        } else {
            self.minutes.clone()
        };
        let mut day = self.local(after).date();
        for _ in 0..(3 * 366 * self.interval.max(1)) {
            if self.day_allowed(day, start_local.date()) {
                let mut times: Vec<(u32, u32)> = hours
                    .iter()
                    .flat_map(|h| minutes.iter().map(move |m| (*h, *m)))
                    .filter(|(h, m)| *h < 24 && *m < 60)
                    .collect();
                times.sort();
                for (h, m) in times {
                    if self.frequency == Frequency::Hour && self.hours.is_empty() {
                        // Every `interval` hours from the start's hour.
                        let hours_since = (day.and_hms_opt(h, 0, 0)? - start_local).num_hours();
                        if hours_since.rem_euclid(i64::from(self.interval)) != 0 {
                            continue;
                        }
                    }
                    let local = day.and_time(NaiveTime::from_hms_opt(h, m, 0)?);
                    let Some(utc) = zoned(local, self.zone) else {
                        continue;
                    };
                    if utc > after && utc >= self.start {
                        return Some(utc);
                    }
                }
            }
            day = day.checked_add_days(Days::new(1))?;
        }
        None
    }

    fn day_allowed(&self, day: NaiveDate, start: NaiveDate) -> bool {
        if day < start {
            return false;
        }
        let interval = i64::from(self.interval.max(1));
        match self.frequency {
            Frequency::Minute | Frequency::Hour => true,
            Frequency::Day => (day - start).num_days() % interval == 0,
            Frequency::Week => {
                let week_of = |d: NaiveDate| {
                    d.num_days_from_ce() as i64 - d.weekday().num_days_from_sunday() as i64
                };
                let weeks = (week_of(day) - week_of(start)) / 7;
                let days = if self.week_days.is_empty() {
                    vec![start.weekday()]
                } else {
                    self.week_days.clone()
                };
                weeks % interval == 0 && days.contains(&day.weekday())
            }
            Frequency::Month => {
                let months = (day.year() - start.year()) as i64 * 12 + day.month() as i64
                    - start.month() as i64;
                if months % interval != 0 {
                    return false;
                }
                let last = last_day_of_month(day);
                if !self.monthly_occurrences.is_empty() {
                    return self.monthly_occurrences.iter().any(|(wd, occ)| {
                        day.weekday() == *wd
                            && if *occ > 0 {
                                (day.day() as i32 - 1) / 7 + 1 == *occ
                            } else {
                                day.day() + 7 > last
                            }
                    });
                }
                if self.month_days.is_empty() {
                    return day.day() == start.day();
                }
                self.month_days.iter().any(|d| {
                    (*d > 0 && day.day() as i32 == *d)
                        || (*d < 0 && day.day() as i32 == last as i32 + 1 + d)
                })
            }
        }
    }
}

/// The UTC instant of a wall-clock time in `zone`: the earlier of a
/// repeated hour; a time skipped by a clock change fires an hour later
/// (03:30 for 02:30 on the night clocks go forward), never not at all.
fn zoned(local: NaiveDateTime, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        chrono::LocalResult::None => zone
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

fn last_day_of_month(d: NaiveDate) -> u32 {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|f| f.pred_opt())
        .map_or(28, |l| l.day())
}

fn frequency(v: Option<&Value>, place: &str) -> Result<Frequency> {
    let text = v.and_then(Value::as_str).unwrap_or("");
    Ok(match text.to_ascii_lowercase().as_str() {
        "minute" => Frequency::Minute,
        "hour" => Frequency::Hour,
        "day" => Frequency::Day,
        "week" => Frequency::Week,
        "month" => Frequency::Month,
        _ => {
            return Err(Error::config(
                place,
                format!("frequency `{text}` is not one of Minute, Hour, Day, Week, Month"),
            ));
        }
    })
}

fn time(v: Option<&Value>, place: &str, required: bool) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = v.and_then(Value::as_str).filter(|s| !s.trim().is_empty()) else {
        if required {
            return Err(Error::config(place, "is required (an ISO 8601 time)"));
        }
        return Ok(None);
    };
    highwater_expr::datetime::parse_timestamp(text)
        .map(|t| Some(t.to_utc()))
        .ok_or_else(|| Error::config(place, format!("`{text}` is not an ISO 8601 time")))
}

/// `hh:mm:ss` or `d.hh:mm:ss` (a .NET TimeSpan), as `delay` and `size`.
fn timespan(text: &str) -> Option<(bool, Duration)> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (days, rest) = match t.split_once('.') {
        Some((d, r)) if r.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    if m >= 60 || !(0.0..60.0).contains(&s) {
        return None;
    }
    let secs = days * 86_400 + h * 3600 + m * 60;
    Some((neg, Duration::from_secs(secs) + Duration::from_secs_f64(s)))
}

fn weekday(v: &Value) -> Option<chrono::Weekday> {
    v.as_str()?.trim().parse::<chrono::Weekday>().ok()
}

fn u32_list(v: Option<&Value>, max: u32, place: &str) -> Result<Vec<u32>> {
    let Some(l) = v.and_then(Value::as_array) else {
        return Ok(vec![]);
    };
    l.iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= max)
                .ok_or_else(|| Error::config(place, format!("{x} is not a number from 0 to {max}")))
        })
        .collect()
}

fn pipeline_ref(v: &Value) -> Option<(String, Map<String, Value>)> {
    let name = v
        .get("pipelineReference")?
        .get("referenceName")?
        .as_str()?
        .trim()
        .to_string();
    let params = v
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some((name, params))
}

/// Parse one trigger file.
pub fn parse(v: &Value, file: &str) -> Result<Option<Trigger>> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .ok_or_else(|| Error::config(file, "a trigger needs a `name`"))?;
    let p = v.get("properties").unwrap_or(v);
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    let tp = p.get("typeProperties").cloned().unwrap_or(json!({}));
    let place = |k: &str| format!("{file}: trigger {name}: {k}");
    let started = p
        .get("runtimeState")
        .and_then(Value::as_str)
        .is_none_or(|s| s.eq_ignore_ascii_case("Started"));
    let kind = match kind {
        "ScheduleTrigger" => {
            let r = tp.get("recurrence").cloned().unwrap_or(json!({}));
            let zone_name = r.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
            let zone = highwater_expr::datetime::find_zone(zone_name).ok_or_else(|| {
                Error::config(
                    place("recurrence.timeZone"),
                    format!("`{zone_name}` is not a Windows or IANA time zone id"),
                )
            })?;
            // startTime without an offset is local to timeZone.
            let start = match r.get("startTime").and_then(Value::as_str) {
                Some(s) => local_or_utc(s, zone).ok_or_else(|| {
                    Error::config(
                        place("recurrence.startTime"),
                        format!("`{s}` is not an ISO 8601 time"),
                    )
                })?,
                None => return Err(Error::config(place("recurrence.startTime"), "is required")),
            };
            let end = match r.get("endTime").and_then(Value::as_str) {
                Some(s) if !s.trim().is_empty() => {
                    Some(local_or_utc(s, zone).ok_or_else(|| {
                        Error::config(
                            place("recurrence.endTime"),
                            format!("`{s}` is not an ISO 8601 time"),
                        )
                    })?)
                }
                _ => None,
            };
            let s = r.get("schedule").cloned().unwrap_or(json!({}));
            let week_days = s
                .get("weekDays")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|d| {
                            weekday(d).ok_or_else(|| {
                                Error::config(
                                    place("recurrence.schedule.weekDays"),
                                    format!("{d} is not a day of the week"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            let month_days = s
                .get("monthDays")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|d| {
                            d.as_i64()
                                .filter(|n| (1..=31).contains(n) || (-31..=-1).contains(n))
                                .map(|n| n as i32)
                                .ok_or_else(|| Error::config(place("recurrence.schedule.monthDays"), format!("{d} is not a day of the month (1 to 31, or -1 for the last)")))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            let monthly_occurrences = s
                .get("monthlyOccurrences")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|o| {
                            let d = o.get("day").and_then(weekday);
                            let n = o.get("occurrence").and_then(Value::as_i64).unwrap_or(1);
                            match d {
                                Some(d) if (1..=5).contains(&n) || n == -1 => Ok((d, n as i32)),
                                _ => Err(Error::config(
                                    place("recurrence.schedule.monthlyOccurrences"),
                                    format!(
                                        "{o} needs a day of the week and an occurrence 1 to 5 or -1"
                                    ),
                                )),
                            }
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            TriggerKind::Schedule(Recurrence {
                frequency: frequency(r.get("frequency"), &place("recurrence.frequency"))?,
                interval: interval(r.get("interval"), &place("recurrence.interval"))?,
                start,
                end,
                zone,
                hours: u32_list(s.get("hours"), 23, &place("recurrence.schedule.hours"))?,
                minutes: u32_list(s.get("minutes"), 59, &place("recurrence.schedule.minutes"))?,
                week_days,
                month_days,
                monthly_occurrences,
            })
        }
        "TumblingWindowTrigger" => {
            let frequency = frequency(tp.get("frequency"), &place("typeProperties.frequency"))?;
            if !matches!(
                frequency,
                Frequency::Minute | Frequency::Hour | Frequency::Month
            ) {
                return Err(Error::config(
                    place("typeProperties.frequency"),
                    "a tumbling window's frequency is Minute, Hour or Month",
                ));
            }
            let interval = interval(tp.get("interval"), &place("typeProperties.interval"))?;
            let delay = match tp.get("delay").and_then(Value::as_str) {
                Some(d) => match timespan(d) {
                    Some((false, d)) => d,
                    _ => {
                        return Err(Error::config(
                            place("typeProperties.delay"),
                            format!("`{d}` is not a time span hh:mm:ss"),
                        ));
                    }
                },
                None => Duration::ZERO,
            };
            let retry = tp.get("retryPolicy").cloned().unwrap_or(json!({}));
            let mut t = Tumbling {
                frequency,
                interval,
                start: time(
                    tp.get("startTime"),
                    &place("typeProperties.startTime"),
                    true,
                )?
                .expect("required"),
                end: time(tp.get("endTime"), &place("typeProperties.endTime"), false)?,
                delay,
                max_concurrency: tp
                    .get("maxConcurrency")
                    .and_then(Value::as_u64)
                    .unwrap_or(50)
                    .clamp(1, 50) as usize,
                retry_count: retry
                    .get("count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .min(100) as u32,
                retry_interval: Duration::from_secs(
                    retry
                        .get("intervalInSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(30)
                        .clamp(1, 86_400),
                ),
                self_dependency: None,
                depends_on: Vec::new(),
            };
            for (i, d) in tp
                .get("dependsOn")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let here = place(&format!("typeProperties.dependsOn[{i}]"));
                match d.get("type").and_then(Value::as_str) {
                    Some("TumblingWindowTriggerDependencyReference") => {
                        t.depends_on.push(trigger_dependency(d, &here)?);
                    }
                    Some("SelfDependencyTumblingWindowTriggerReference") => {
                        let offset = d.get("offset").and_then(Value::as_str).and_then(timespan);
                        let window = window_length(&t);
                        match (offset, window) {
                            (Some((true, o)), Some(w))
                                if !o.is_zero() && o.as_secs() % w.as_secs().max(1) == 0 =>
                            {
                                t.self_dependency =
                                    Some(-((o.as_secs() / w.as_secs().max(1)) as i64));
                            }
                            _ => {
                                return Err(Error::config(
                                    place("typeProperties.dependsOn"),
                                    "a self-dependency needs a negative offset of whole windows (e.g. -01:00:00 for hourly windows)",
                                ));
                            }
                        }
                    }
                    other => {
                        return Err(Error::config(
                            here,
                            format!(
                                "a dependency of type `{}` is not one of TumblingWindowTriggerDependencyReference, SelfDependencyTumblingWindowTriggerReference",
                                other.unwrap_or("")
                            ),
                        ));
                    }
                }
            }
            TriggerKind::Tumbling(t)
        }
        "BlobEventsTrigger" | "CustomEventsTrigger" => {
            return Err(Error::config(
                place("type"),
                format!("{kind} triggers are not supported (they need Azure Event Grid)"),
            ));
        }
        other => {
            return Err(Error::config(
                place("type"),
                format!(
                    "trigger type `{other}` is not one of ScheduleTrigger, TumblingWindowTrigger"
                ),
            ));
        }
    };
    let mut pipelines = Vec::new();
    if let Some(l) = p.get("pipelines").and_then(Value::as_array) {
        pipelines.extend(l.iter().filter_map(pipeline_ref));
    }
    if let Some(one) = p.get("pipeline").and_then(pipeline_ref) {
        pipelines.push(one);
    }
    if pipelines.is_empty() {
        return Err(Error::config(
            place("pipelines"),
            "the trigger starts no pipeline (no pipelineReference)",
        ));
    }
    if matches!(kind, TriggerKind::Tumbling(_)) && pipelines.len() > 1 {
        return Err(Error::config(
            place("pipeline"),
            "a tumbling window trigger starts exactly one pipeline",
        ));
    }
    Ok(Some(Trigger {
        name,
        file: file.to_string(),
        started,
        kind,
        pipelines,
    }))
}

/// One `TumblingWindowTriggerDependencyReference` (the referenced trigger
/// is checked by [`check_references`], once every trigger is known).
fn trigger_dependency(d: &Value, place: &str) -> Result<TriggerDependency> {
    let trigger = d
        .get("referenceTrigger")
        .and_then(|r| r.get("referenceName"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::config(
                place,
                "a TumblingWindowTriggerDependencyReference needs referenceTrigger.referenceName (the trigger it waits for)",
            )
        })?
        .to_string();
    let span = |key: &str| -> Result<Option<(bool, Duration)>> {
        match d.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_str().and_then(timespan).map(Some).ok_or_else(|| {
                Error::config(
                    format!("{place}.{key}"),
                    format!("{v} is not a time span [-][d.]hh:mm:ss (e.g. -01:00:00)"),
                )
            }),
        }
    };
    let signed = |(neg, d): (bool, Duration)| {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        if neg { -d } else { d }
    };
    let offset = span("offset")?.map(signed).unwrap_or_default();
    let size = match span("size")? {
        None => None,
        Some((false, s)) if !s.is_zero() => Some(signed((false, s))),
        Some(_) => {
            return Err(Error::config(
                format!("{place}.size"),
                "a dependency's size is a positive time span (e.g. 01:00:00)",
            ));
        }
    };
    Ok(TriggerDependency {
        trigger,
        offset,
        size,
    })
}

/// Every trigger dependency names another tumbling window trigger of the
/// factory. All problems at once, one a line.
pub fn check_references(triggers: &[Trigger]) -> Result<()> {
    let mut problems: Vec<(String, String)> = Vec::new();
    for t in triggers {
        let TriggerKind::Tumbling(tw) = &t.kind else {
            continue;
        };
        for d in &tw.depends_on {
            let problem = match triggers.iter().find(|o| o.name == d.trigger) {
                None => format!(
                    "trigger `{}` is not in the factory's trigger/ folder",
                    d.trigger
                ),
                Some(o) if o.name == t.name => "a trigger depends on itself with SelfDependencyTumblingWindowTriggerReference, not TumblingWindowTriggerDependencyReference".to_string(),
                Some(o) if !matches!(o.kind, TriggerKind::Tumbling(_)) => format!(
                    "trigger `{}` is a ScheduleTrigger; a tumbling window trigger depends only on tumbling window triggers",
                    d.trigger
                ),
                Some(_) => continue,
            };
            let place = format!("{}: trigger {}: typeProperties.dependsOn", t.file, t.name);
            problems.push((place, problem));
        }
    }
    let mut rest = problems.iter();
    let Some((place, first)) = rest.next() else {
        return Ok(());
    };
    let mut message = first.clone();
    for (p, m) in rest {
        message.push_str(&format!("\n{p}: {m}"));
    }
    Err(Error::config(place, message))
}

/// A window's fixed length (Minute and Hour windows); `None` for months.
fn window_length(t: &Tumbling) -> Option<Duration> {
    match t.frequency {
        Frequency::Minute => Some(Duration::from_secs(60 * u64::from(t.interval))),
        Frequency::Hour => Some(Duration::from_secs(3600 * u64::from(t.interval))),
        _ => None,
    }
}

fn interval(v: Option<&Value>, place: &str) -> Result<u32> {
    match v {
        None => Ok(1),
        Some(x) => x
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::config(place, format!("{x} is not a positive whole number"))),
    }
}

/// A time with an offset as written; without one, local to `zone`.
fn local_or_utc(text: &str, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let ts = highwater_expr::datetime::parse_timestamp(text)?;
    let t = text.trim();
    let has_offset = t.ends_with('Z')
        || t.ends_with('z')
        || t.rfind(['+', '-'])
            .is_some_and(|i| i > 10 && t[i..].contains(':'));
    if has_offset {
        Some(ts.to_utc())
    } else {
        zoned(ts.to_utc().naive_utc(), zone)
    }
}

/// The triggers in `<root>/trigger/*.json` (or `triggers/`).
pub fn load(root: &Path) -> Result<Vec<Trigger>> {
    let mut out = Vec::new();
    for dir in ["trigger", "triggers"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            let file = f.display().to_string();
            let text = std::fs::read_to_string(&f)
                .map_err(|e| Error::config(&file, format!("cannot read: {e}")))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Error::config(
                    format!("{file}:{}:{}", e.line(), e.column()),
                    format!("not valid JSON: {e}"),
                )
            })?;
            if let Some(t) = parse(&v, &file)? {
                out.push(t);
            }
        }
    }
    check_references(&out)?;
    Ok(out)
}

/// The pipeline file of the pipeline called `name` under `root`.
pub fn pipeline_file(root: &Path, name: &str) -> Option<PathBuf> {
    super::model::find_pipeline(root, name)
}

/// What `trigger()` returns for one firing.
pub fn trigger_value(t: &Trigger, scheduled: DateTime<Utc>, window: Option<Window>) -> Value {
    let iso = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut v = json!({
        "name": t.name,
        "type": match t.kind {
            TriggerKind::Schedule(_) => "ScheduleTrigger",
            TriggerKind::Tumbling(_) => "TumblingWindowTrigger",
        },
        "scheduledTime": iso(scheduled),
        "startTime": iso(Utc::now()),
        "outputs": {},
    });
    if let Some(w) = window {
        v["outputs"] = json!({
            "windowStartTime": iso(w.start),
            "windowEndTime": iso(w.end),
        });
    }
    v
}

struct TriggerScope<'a> {
    trigger: &'a Value,
}

impl Scope for TriggerScope<'_> {
    fn trigger(&self) -> std::result::Result<Value, EvalError> {
        Ok(self.trigger.clone())
    }
}

/// The pipeline parameters a firing passes: each value evaluated with
/// `trigger()` (strings and `{"value", "type": "Expression"}` objects).
pub fn evaluate_parameters(
    t: &Trigger,
    params: &Map<String, Value>,
    trigger: &Value,
) -> Result<Map<String, Value>> {
    let scope = TriggerScope { trigger };
    let mut out = Map::new();
    for (k, v) in params {
        let text = match v {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Expression") => {
                o.get("value").and_then(Value::as_str)
            }
            _ => None,
        };
        let value = match text {
            Some(text) => {
                let place = format!("{}: trigger {}: parameter {k}", t.file, t.name);
                let expr = Expr::parse(text).map_err(|e| Error::config(&place, e))?;
                expr.eval(&scope)
                    .map_err(|e| Error::config(&place, e.to_string()))?
            }
            None => v.clone(),
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn trigger(v: Value) -> Trigger {
        parse(&v, "t.json").unwrap().unwrap()
    }

    fn tumbling(tp: Value) -> Tumbling {
        match trigger(
            json!({"name": "T", "properties": {"type": "TumblingWindowTrigger",
            "typeProperties": tp,
            "pipeline": {"pipelineReference": {"referenceName": "P"}}}}),
        )
        .kind
        {
            TriggerKind::Tumbling(t) => t,
            _ => unreachable!(),
        }
    }

    fn schedule(r: Value) -> Recurrence {
        match trigger(
            json!({"name": "S", "properties": {"type": "ScheduleTrigger",
            "typeProperties": {"recurrence": r},
            "pipelines": [{"pipelineReference": {"referenceName": "P"}}]}}),
        )
        .kind
        {
            TriggerKind::Schedule(r) => r,
            _ => unreachable!(),
        }
    }

    fn firings(r: &Recurrence, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(next) = r.next_after(t) else { break };
            out.push(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            t = next;
        }
        out
    }

    #[test]
    fn tumbling_windows_are_contiguous_and_due_after_the_delay() {
        let t = tumbling(json!({"frequency": "Hour", "interval": 1,
            "startTime": "2024-01-01T00:00:00Z", "endTime": "2024-01-01T05:00:00Z",
            "delay": "00:10:00", "maxConcurrency": 2}));
        let due = t.due(at("2024-01-01T03:09:00Z"), 100);
        assert_eq!(due.len(), 2, "the third window is due at 03:10");
        assert_eq!(due[0].start, at("2024-01-01T00:00:00Z"));
        assert_eq!(due[0].end, due[1].start);
        assert_eq!(t.due(at("2024-01-01T03:10:00Z"), 100).len(), 3);
        assert_eq!(
            t.due(at("2030-01-01T00:00:00Z"), 100).len(),
            5,
            "until endTime"
        );
        assert_eq!(
            t.next_due(at("2024-01-01T03:09:00Z")),
            Some(at("2024-01-01T03:10:00Z"))
        );
        assert_eq!(t.index_of(at("2024-01-01T02:00:00Z")), Some(2));
        assert_eq!(t.index_of(at("2024-01-01T02:30:00Z")), None);
        assert_eq!(t.max_concurrency, 2);
        let m = tumbling(
            json!({"frequency": "Month", "interval": 1, "startTime": "2024-01-31T00:00:00Z"}),
        );
        assert_eq!(m.window(1).unwrap().start, at("2024-02-29T00:00:00Z"));
    }

    #[test]
    fn self_dependency_and_bad_definitions() {
        let t = tumbling(json!({"frequency": "Minute", "interval": 15,
            "startTime": "2024-01-01T00:00:00Z",
            "dependsOn": [{"type": "SelfDependencyTumblingWindowTriggerReference", "offset": "-00:15:00", "size": "00:15:00"}]}));
        assert_eq!(t.self_dependency, Some(-1));
        for (tp, says) in [
            (
                json!({"frequency": "Day", "interval": 1, "startTime": "2024-01-01T00:00:00Z"}),
                "Minute, Hour or Month",
            ),
            (
                json!({"frequency": "Hour", "interval": 0, "startTime": "2024-01-01T00:00:00Z"}),
                "positive",
            ),
            (json!({"frequency": "Hour", "interval": 1}), "startTime"),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "x"}),
                "ISO 8601",
            ),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z", "delay": "soon"}),
                "time span",
            ),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
                "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference"}]}),
                "dependsOn[0]: a TumblingWindowTriggerDependencyReference needs referenceTrigger.referenceName",
            ),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
                "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference",
                  "referenceTrigger": {"referenceName": "A"}, "offset": "an hour ago"}]}),
                "dependsOn[0].offset: \"an hour ago\" is not a time span",
            ),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
                "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference",
                  "referenceTrigger": {"referenceName": "A"}, "size": "-01:00:00"}]}),
                "dependsOn[0].size: a dependency's size is a positive time span",
            ),
            (
                json!({"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
                "dependsOn": [{"type": "PipelineDependency"}]}),
                "`PipelineDependency` is not one of",
            ),
        ] {
            let v = json!({"name": "T", "properties": {"type": "TumblingWindowTrigger", "typeProperties": tp,
                "pipeline": {"pipelineReference": {"referenceName": "P"}}}});
            let e = parse(&v, "t.json").unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("trigger T"), "{e}");
        }
    }

    #[test]
    fn a_trigger_dependency_covers_the_overlapping_windows_of_the_other_trigger() {
        let b = tumbling(json!({"frequency": "Hour", "interval": 1,
            "startTime": "2024-01-01T00:00:00Z",
            "dependsOn": [
                {"type": "TumblingWindowTriggerDependencyReference",
                 "referenceTrigger": {"referenceName": "A", "type": "TriggerReference"}},
                {"type": "TumblingWindowTriggerDependencyReference",
                 "referenceTrigger": {"referenceName": "Q"}, "offset": "-01:00:00", "size": "1.00:00:00"}]}));
        assert_eq!(b.depends_on.len(), 2);
        let w = b.window(3).unwrap();
        let plain = &b.depends_on[0];
        assert_eq!(plain.trigger, "A");
        assert_eq!(
            plain.range(w),
            (at("2024-01-01T03:00:00Z"), at("2024-01-01T04:00:00Z")),
            "no offset or size: the window itself"
        );
        assert_eq!(
            b.depends_on[1].range(w),
            (at("2024-01-01T02:00:00Z"), at("2024-01-02T02:00:00Z"))
        );
        // A: 15-minute windows from 01:00 to 05:00.
        let a = tumbling(json!({"frequency": "Minute", "interval": 15,
            "startTime": "2024-01-01T01:00:00Z", "endTime": "2024-01-01T05:00:00Z"}));
        let starts = |from: &str, to: &str| {
            a.overlapping(at(from), at(to)).map(|l| {
                l.iter()
                    .map(|w| w.start.format("%H:%M").to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            starts("2024-01-01T03:00:00Z", "2024-01-01T04:00:00Z").unwrap(),
            ["03:00", "03:15", "03:30", "03:45"]
        );
        assert_eq!(
            starts("2024-01-01T03:10:00Z", "2024-01-01T03:20:00Z").unwrap(),
            ["03:00", "03:15"],
            "windows that only partly overlap count"
        );
        assert_eq!(
            starts("2024-01-01T00:00:00Z", "2024-01-01T01:30:00Z").unwrap(),
            ["01:00", "01:15"],
            "before A's start nothing is needed"
        );
        assert_eq!(
            starts("2023-12-31T00:00:00Z", "2024-01-01T01:00:00Z").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            starts("2024-01-01T04:30:00Z", "2024-01-01T05:30:00Z"),
            None,
            "past A's endTime no window can succeed"
        );
        // A monthly trigger: the window holding a time.
        let m = tumbling(
            json!({"frequency": "Month", "interval": 1, "startTime": "2024-01-01T00:00:00Z"}),
        );
        let l = m
            .overlapping(at("2024-02-10T00:00:00Z"), at("2024-03-01T00:00:01Z"))
            .unwrap();
        assert_eq!(
            l.iter().map(|w| w.start).collect::<Vec<_>>(),
            [at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z")]
        );
    }

    #[test]
    fn references_to_other_triggers_are_checked_across_files() {
        let tw = |name: &str, depends: &str| {
            trigger(
                json!({"name": name, "properties": {"type": "TumblingWindowTrigger",
                "typeProperties": {"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
                  "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference",
                                 "referenceTrigger": {"referenceName": depends}}]},
                "pipeline": {"pipelineReference": {"referenceName": "P"}}}}),
            )
        };
        let s = schedule_trigger("S");
        assert!(check_references(&[tw("B", "A"), tw("A", "B")]).is_ok());
        let e = check_references(&[tw("B", "Nope"), tw("C", "S"), tw("D", "D"), s])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trigger B: typeProperties.dependsOn: trigger `Nope` is not in the factory's trigger/ folder"),
            "{e}"
        );
        assert!(
            e.contains("trigger C: typeProperties.dependsOn: trigger `S` is a ScheduleTrigger"),
            "{e}"
        );
        assert!(
            e.contains("trigger D: typeProperties.dependsOn: a trigger depends on itself with SelfDependency"),
            "{e}"
        );
    }

    fn schedule_trigger(name: &str) -> Trigger {
        trigger(
            json!({"name": name, "properties": {"type": "ScheduleTrigger",
            "typeProperties": {"recurrence": {"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z"}},
            "pipelines": [{"pipelineReference": {"referenceName": "P"}}]}}),
        )
    }

    #[test]
    fn schedule_every_15_minutes_and_hourly_at_minutes() {
        let r = schedule(
            json!({"frequency": "Minute", "interval": 15, "startTime": "2024-01-01T00:05:00Z"}),
        );
        assert_eq!(
            firings(&r, "2024-01-01T00:20:00Z", 3),
            [
                "2024-01-01T00:35:00Z",
                "2024-01-01T00:50:00Z",
                "2024-01-01T01:05:00Z"
            ]
        );
        assert_eq!(
            firings(&r, "2023-12-31T00:00:00Z", 1),
            ["2024-01-01T00:05:00Z"]
        );
        let h = schedule(
            json!({"frequency": "Hour", "interval": 2, "startTime": "2024-01-01T00:00:00Z",
            "schedule": {"minutes": [0, 30]}}),
        );
        assert_eq!(
            firings(&h, "2024-01-01T00:10:00Z", 3),
            [
                "2024-01-01T00:30:00Z",
                "2024-01-01T02:00:00Z",
                "2024-01-01T02:30:00Z"
            ]
        );
    }

    #[test]
    fn schedule_daily_in_a_windows_zone_keeps_local_time_across_dst() {
        let r = schedule(
            json!({"frequency": "Day", "interval": 1, "startTime": "2024-03-29T00:00:00",
            "timeZone": "W. Europe Standard Time", "schedule": {"hours": [2], "minutes": [30]}}),
        );
        // 31 March 2024: 02:30 does not exist in Berlin (clocks go 02:00 →
        // 03:00); that day fires at 03:30 CEST.
        assert_eq!(
            firings(&r, "2024-03-29T00:00:00Z", 4),
            [
                "2024-03-29T01:30:00Z",
                "2024-03-30T01:30:00Z",
                "2024-03-31T01:30:00Z",
                "2024-04-01T00:30:00Z"
            ]
        );
    }

    #[test]
    fn schedule_weekly_monthly_and_end() {
        let w = schedule(
            json!({"frequency": "Week", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
            "schedule": {"weekDays": ["Monday", "Friday"], "hours": [6], "minutes": [0]}}),
        );
        assert_eq!(
            firings(&w, "2024-01-01T07:00:00Z", 3),
            [
                "2024-01-05T06:00:00Z",
                "2024-01-08T06:00:00Z",
                "2024-01-12T06:00:00Z"
            ]
        );
        let m = schedule(
            json!({"frequency": "Month", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
            "endTime": "2024-04-15T00:00:00Z",
            "schedule": {"monthDays": [1, -1], "hours": [0], "minutes": [0]}}),
        );
        assert_eq!(
            firings(&m, "2024-01-15T00:00:00Z", 10),
            [
                "2024-01-31T00:00:00Z",
                "2024-02-01T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-01T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-04-01T00:00:00Z"
            ]
        );
        let last_friday = schedule(
            json!({"frequency": "Month", "interval": 1, "startTime": "2024-01-01T00:00:00Z",
            "schedule": {"monthlyOccurrences": [{"day": "Friday", "occurrence": -1}], "hours": [9], "minutes": [0]}}),
        );
        assert_eq!(
            firings(&last_friday, "2024-01-01T00:00:00Z", 2),
            ["2024-01-26T09:00:00Z", "2024-02-23T09:00:00Z"]
        );
    }

    #[test]
    fn trigger_parameters_see_the_window() {
        let t = trigger(
            json!({"name": "T", "properties": {"type": "TumblingWindowTrigger",
            "typeProperties": {"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:00:00Z"},
            "pipeline": {"pipelineReference": {"referenceName": "P"},
              "parameters": {"from": "@trigger().outputs.windowStartTime",
                             "folder": {"value": "@formatDateTime(trigger().outputs.windowStartTime, 'yyyy/MM/dd/HH')", "type": "Expression"},
                             "fixed": 3}}}}),
        );
        let w = match &t.kind {
            TriggerKind::Tumbling(tw) => tw.window(5).unwrap(),
            _ => unreachable!(),
        };
        let v = trigger_value(&t, w.end, Some(w));
        let p = evaluate_parameters(&t, &t.pipelines[0].1, &v).unwrap();
        assert_eq!(p["from"], "2024-01-01T05:00:00Z");
        assert_eq!(p["folder"], "2024/01/01/05");
        assert_eq!(p["fixed"], 3);
    }
}

//! Days in a tenant's time zone: contact centers count "today" from their own midnight, not
//! UTC's. The zone is an IANA name in the tenant's settings; the database is bundled, so a
//! node needs no tzdata installed.

use jiff::Timestamp as Instant;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use switchboard_core::Timestamp;
use switchboard_core::hours::{DAY_MINUTES, Hours, MAX_EXCEPTIONS, MAX_SPANS, Offsets, Span};
use switchboard_proto::v1 as pb;

use crate::error::{Error, Result};

/// How far ahead the offset table a router gets reaches (two years); past it the last
/// offset holds until the tenant's settings are next updated.
const OFFSETS_AHEAD: i64 = 2 * 366 * DAY_SECONDS;

const DAY_SECONDS: i64 = 86_400;

/// Refuses a name the time zone database does not know.
pub fn check_zone(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Ok(());
    }
    TimeZone::get(name).map(drop).map_err(|_| {
        Error::field(
            field,
            format!("{name:?} is not an IANA time zone; use a name like \"Asia/Shanghai\" or \"Europe/Berlin\", or leave it empty for UTC"),
        )
    })
}

/// The local day `now` falls on in `zone` (days since 1970-01-01 there). An empty or unknown
/// zone counts in UTC.
pub fn day(zone: &str, now: Timestamp) -> u64 {
    let secs = i64::try_from(now.as_millis() / 1000).unwrap_or(i64::MAX);
    let offset = if zone.is_empty() {
        0
    } else {
        match (TimeZone::get(zone), Instant::from_second(secs)) {
            (Ok(tz), Ok(at)) => i64::from(tz.to_offset(at).seconds()),
            _ => 0,
        }
    };
    u64::try_from((secs + offset).div_euclid(DAY_SECONDS)).unwrap_or(0)
}

/// The zone's UTC offsets from `now` for two years (business hours, `switchboard_core::
/// hours`): the offset at `now`, then every transition. An empty or unknown zone is UTC.
pub fn offsets(zone: &str, now: Timestamp) -> Offsets {
    let secs = i64::try_from(now.as_millis() / 1000).unwrap_or(i64::MAX);
    let (Ok(tz), Ok(start)) = (TimeZone::get(zone), Instant::from_second(secs)) else {
        return Offsets::default();
    };
    let mut changes = vec![(Timestamp::ZERO, tz.to_offset(start).seconds())];
    for t in tz.following(start) {
        let at = t.timestamp().as_second();
        if at > secs.saturating_add(OFFSETS_AHEAD) {
            break;
        }
        let at = Timestamp(u64::try_from(at).unwrap_or(0) * 1000);
        changes.push((at, t.offset().seconds()));
    }
    Offsets { changes }
}

/// "HH:MM" (00:00-23:59; "24:00" where `end`) as minutes of the day.
fn minute(field: &str, text: &str, end: bool) -> Result<u16> {
    let bad = || {
        Error::field(
            field,
            format!(
                "{text:?} is not a time of day; use 24-hour \"HH:MM\" such as \"09:00\" or \"17:30\"{}",
                if end { " (\"24:00\" for midnight)" } else { "" }
            ),
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let total = h * 60 + m;
    if m > 59 || total > DAY_MINUTES || (total == DAY_MINUTES && !end) {
        return Err(bad());
    }
    Ok(total)
}

fn spans(field: &str, spans: &[pb::OpenSpan]) -> Result<Vec<Span>> {
    if spans.len() > MAX_SPANS {
        return Err(Error::field(
            field,
            format!("at most {MAX_SPANS} spans a day, got {}", spans.len()),
        ));
    }
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let start = minute(&format!("{field}.start"), &s.start, false)?;
        let end = minute(&format!("{field}.end"), &s.end, true)?;
        if end <= start {
            return Err(Error::field(
                &field,
                format!(
                    "closes at {} before it opens at {}; a span does not cross midnight: split it over two days",
                    s.end, s.start
                ),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.start < end && start < o.end) {
            return Err(Error::field(
                &field,
                format!("{}-{} overlaps spans[{j}]; merge them into one", s.start, s.end),
            ));
        }
        out.push(Span { start, end });
    }
    Ok(out)
}

/// Local day number (days since 1970-01-01) of a date.
fn day_number(d: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    epoch.until(d).map_or(0, |s| s.get_days())
}

/// Business hours from the request, every time and date checked at its path under `field`.
pub fn hours(field: &str, h: &pb::BusinessHours) -> Result<Hours> {
    let mut out = Hours::default();
    let mut seen = [false; 7];
    for (i, w) in h.weekly.iter().enumerate() {
        let f = format!("{field}.weekly[{i}]");
        let day = match pb::Weekday::try_from(w.day) {
            Ok(pb::Weekday::Unspecified) | Err(_) => {
                return Err(Error::field(
                    &format!("{f}.day"),
                    "name the day: WEEKDAY_MONDAY to WEEKDAY_SUNDAY",
                ));
            }
            Ok(d) => d as usize - 1,
        };
        if std::mem::replace(&mut seen[day], true) {
            return Err(Error::field(
                &format!("{f}.day"),
                "this weekday is listed twice; put all its spans in one entry",
            ));
        }
        out.weekly[day] = spans(&format!("{f}.spans"), &w.spans)?;
    }
    if h.exceptions.len() > MAX_EXCEPTIONS {
        return Err(Error::field(
            &format!("{field}.exceptions"),
            format!(
                "at most {MAX_EXCEPTIONS} dated exceptions, got {}; drop past ones",
                h.exceptions.len()
            ),
        ));
    }
    for (i, x) in h.exceptions.iter().enumerate() {
        let f = format!("{field}.exceptions[{i}]");
        let date: Date = x.date.parse().map_err(|_| {
            Error::field(
                &format!("{f}.date"),
                format!("{:?} is not a date; use \"YYYY-MM-DD\" such as \"2026-12-25\"", x.date),
            )
        })?;
        if out
            .exceptions
            .insert(day_number(date), spans(&format!("{f}.spans"), &x.spans)?)
            .is_some()
        {
            return Err(Error::field(
                &format!("{f}.date"),
                format!("{} is listed twice; merge the two entries", x.date),
            ));
        }
    }
    Ok(out)
}

pub fn hours_to_pb(h: &Hours) -> pb::BusinessHours {
    let spans = |s: &[Span]| {
        s.iter()
            .map(|s| pb::OpenSpan {
                start: switchboard_core::hours::clock(s.start),
                end: switchboard_core::hours::clock(s.end),
            })
            .collect()
    };
    let epoch = Date::constant(1970, 1, 1);
    pb::BusinessHours {
        weekly: h
            .weekly
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(d, s)| pb::WeekdayHours { day: d as i32 + 1, spans: spans(s) })
            .collect(),
        exceptions: h
            .exceptions
            .iter()
            .map(|(day, s)| pb::DateHours {
                date: epoch
                    .checked_add(jiff::Span::new().days(i64::from(*day)))
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                spans: spans(s),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T11:00Z and 17:00Z: one UTC day, but 19:00 and 01:00 of two days in Shanghai.
    #[test]
    fn a_day_starts_at_the_tenants_midnight() {
        let (morning, evening) = (Timestamp(1_796_036_400_000), Timestamp(1_796_058_000_000));
        assert_eq!(day("", morning), day("", evening));
        assert_eq!(day("Asia/Shanghai", morning) + 1, day("Asia/Shanghai", evening));
        assert_eq!(day("America/Los_Angeles", evening), day("", morning), "09:00 the same day");
    }

    #[test]
    fn hours_round_trip_and_bad_input_names_the_field() {
        let span = |a: &str, b: &str| pb::OpenSpan { start: a.into(), end: b.into() };
        let pb_hours = pb::BusinessHours {
            weekly: vec![pb::WeekdayHours {
                day: pb::Weekday::Monday as i32,
                spans: vec![span("09:00", "12:00"), span("13:00", "24:00")],
            }],
            exceptions: vec![pb::DateHours { date: "2026-12-25".into(), spans: vec![] }],
        };
        let h = hours("settings.hours", &pb_hours).unwrap();
        assert_eq!(
            h.weekly[0],
            vec![Span { start: 540, end: 720 }, Span { start: 780, end: 1440 }]
        );
        assert_eq!(hours_to_pb(&h), pb_hours);
        let bad = |p: pb::BusinessHours| hours("policy.hours", &p).unwrap_err().to_string();
        let mut p = pb_hours.clone();
        p.weekly[0].spans[1] = span("11:30", "14:00");
        assert!(bad(p.clone()).starts_with("policy.hours.weekly[0].spans[1]:"), "{}", bad(p));
        p.weekly[0].spans[1] = span("9:00", "14:00");
        assert!(bad(p.clone()).contains("spans[1].start"), "{}", bad(p));
        p.weekly[0].spans[1] = span("22:00", "02:00");
        assert!(bad(p.clone()).contains("split it over two days"), "{}", bad(p));
        let mut p = pb_hours.clone();
        p.exceptions[0].date = "2026-02-30".into();
        assert!(bad(p.clone()).contains("exceptions[0].date"), "{}", bad(p));
    }

    /// Berlin's spring-forward on 2027-03-28 at 01:00 UTC is in the table.
    #[test]
    fn offsets_follow_the_zone() {
        let now = Timestamp(1_796_036_400_000);
        let o = offsets("Europe/Berlin", now);
        assert_eq!(o.offset(now), 3600);
        assert!(o.changes.contains(&(Timestamp(1_806_195_600_000), 7200)), "{:?}", o.changes);
        assert_eq!(offsets("", now), Offsets::default());
    }

    #[test]
    fn unknown_zones_are_refused_by_name() {
        assert!(check_zone("settings.time_zone", "Europe/Berlin").is_ok());
        let e = check_zone("settings.time_zone", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().starts_with("settings.time_zone:"), "{e}");
    }
}

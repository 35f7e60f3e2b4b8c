//! Business hours and holidays (issue 14 item 3): when a calendar says a group is open.
//!
//! A calendar ([`Hours`]) is weekly hours (spans of local minutes per weekday, several a day)
//! plus dated exceptions (a local date closed all day, or with its own spans). The core reads
//! no time-zone database: the shell hands it the tenant zone's UTC offsets as a table of
//! changes ([`Offsets`], built from the IANA name over the next two years), and the core
//! computes "open, or closed, until T" from it ([`Hours::state`]).
//!
//! Hours are read on the wall clock of the zone:
//! - A boundary inside a skipped hour (spring forward) takes effect at the jump: hours
//!   opening at 02:30 open at 03:00 that night.
//! - The repeated hour (fall back) counts once: the wall clock holds at the moment of the
//!   change for as long as the hour repeats, so a boundary inside it is crossed once, at its
//!   first occurrence, and an interval ending at 02:30 is not reopened by the repeat.
//! - Past the table's last change its offset holds; the shell rebuilds the table whenever
//!   the tenant's settings change or a node starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Minutes in a day; a span may end at 24:00.
pub const DAY_MINUTES: u16 = 1440;
/// Most spans one day may have.
pub const MAX_SPANS: usize = 8;
/// Most dated exceptions one calendar may hold.
pub const MAX_EXCEPTIONS: usize = 400;

const DAY_MS: i64 = 86_400_000;

/// Open from `start` to `end`, in minutes after local midnight (`end` up to 24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

/// A calendar: weekly hours and dated exceptions, in the tenant's local time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hours {
    /// Spans per weekday, Monday first; a day without spans is closed.
    pub weekly: [Vec<Span>; 7],
    /// Local dates (days since 1970-01-01) with hours of their own; none: closed all day.
    pub exceptions: BTreeMap<i32, Vec<Span>>,
}

/// The tenant zone's UTC offsets: each change as (from when, offset in seconds east of
/// UTC), in order. Before the first change its offset holds; empty is UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    pub changes: Vec<(Timestamp, i32)>,
}

/// Whether a calendar is open now, and until when that holds (`None`: for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenState {
    pub open: bool,
    pub until: Option<Timestamp>,
}

/// Weekday of a local day number, Monday 0 (1970-01-01 was a Thursday).
pub fn weekday(day: i32) -> usize {
    (day + 3).rem_euclid(7) as usize
}

fn check_spans(field: &str, spans: &[Span]) -> Result<()> {
    if spans.len() > MAX_SPANS {
        return Err(Error::InvalidArgument(format!(
            "{field}: at most {MAX_SPANS} spans a day, got {}",
            spans.len()
        )));
    }
    for (i, s) in spans.iter().enumerate() {
        if s.start >= s.end || s.end > DAY_MINUTES {
            return Err(Error::InvalidArgument(format!(
                "{field}[{i}]: opens at {} and closes at {}; a span must close after it opens, by 24:00 at the latest",
                clock(s.start),
                clock(s.end)
            )));
        }
        if let Some(j) = spans[..i].iter().position(|o| o.start < s.end && s.start < o.end) {
            return Err(Error::InvalidArgument(format!(
                "{field}[{i}]: {}-{} overlaps span {j} ({}-{}); merge them",
                clock(s.start),
                clock(s.end),
                clock(spans[j].start),
                clock(spans[j].end)
            )));
        }
    }
    Ok(())
}

/// `HH:MM` of a minute of the day.
pub fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

impl Hours {
    /// Every day open all day.
    pub fn always_open() -> Self {
        let day = vec![Span { start: 0, end: DAY_MINUTES }];
        Hours { weekly: std::array::from_fn(|_| day.clone()), exceptions: BTreeMap::new() }
    }

    /// Refuses bad spans (empty, past 24:00, overlapping) and too many exceptions, naming the
    /// field under `field`.
    pub fn validate(&self, field: &str) -> Result<()> {
        const DAYS: [&str; 7] =
            ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
        for (d, spans) in self.weekly.iter().enumerate() {
            check_spans(&format!("{field}.{}", DAYS[d]), spans)?;
        }
        if self.exceptions.len() > MAX_EXCEPTIONS {
            return Err(Error::InvalidArgument(format!(
                "{field}.exceptions: at most {MAX_EXCEPTIONS} dated exceptions, got {}; drop past ones",
                self.exceptions.len()
            )));
        }
        for (day, spans) in &self.exceptions {
            check_spans(&format!("{field}.exceptions[day {day}]"), spans)?;
        }
        Ok(())
    }

    fn spans(&self, day: i32) -> &[Span] {
        self.exceptions.get(&day).unwrap_or(&self.weekly[weekday(day)])
    }

    /// Whether the wall-clock instant `wall` (local milliseconds since 1970-01-01) is open.
    fn open_at_wall(&self, wall: i64) -> bool {
        let day = wall.div_euclid(DAY_MS) as i32;
        let minute = (wall.rem_euclid(DAY_MS) / 60_000) as u16;
        self.spans(day).iter().any(|s| s.start <= minute && minute < s.end)
    }

    /// Whether the calendar is open at `t`.
    pub fn open_at(&self, offsets: &Offsets, t: Timestamp) -> bool {
        self.open_at_wall(offsets.wall(t))
    }

    /// Open or closed at `now`, and the next instant that changes.
    pub fn state(&self, offsets: &Offsets, now: Timestamp) -> OpenState {
        let open = self.open_at(offsets, now);
        let today = offsets.wall(now).div_euclid(DAY_MS) as i32;
        let last = self.exceptions.keys().next_back().copied().unwrap_or(today).max(today);
        let end = last.saturating_add(8).max(today.saturating_add(8));
        let mut from = today - 1;
        while from <= end {
            let to = from.saturating_add(7).min(end);
            let mut candidates = offsets.changes_after(now);
            for day in from..=to {
                for s in self.spans(day) {
                    for minute in [s.start, s.end] {
                        let local = i64::from(day) * DAY_MS + i64::from(minute) * 60_000;
                        for o in offsets.distinct() {
                            let at = local - i64::from(o) * 1000;
                            if at > now.as_millis() as i64 {
                                candidates.push(Timestamp(at as u64));
                            }
                        }
                    }
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            if let Some(at) = candidates.into_iter().find(|at| self.open_at(offsets, *at) != open) {
                return OpenState { open, until: Some(at) };
            }
            from = to + 1;
        }
        OpenState { open, until: None }
    }
}

impl Offsets {
    /// One offset for good (a fixed zone; 0 is UTC).
    pub fn fixed(seconds: i32) -> Self {
        Offsets { changes: vec![(Timestamp::ZERO, seconds)] }
    }

    /// Index of the change in force at `t`, if any has started.
    fn index(&self, t: Timestamp) -> Option<usize> {
        self.changes.partition_point(|(at, _)| *at <= t).checked_sub(1)
    }

    /// The offset in force at `t`, in seconds.
    pub fn offset(&self, t: Timestamp) -> i32 {
        match self.index(t) {
            Some(i) => self.changes[i].1,
            None => self.changes.first().map_or(0, |c| c.1),
        }
    }

    /// The wall clock at `t` in local milliseconds since 1970-01-01; it holds during a
    /// repeated hour, so it never runs backwards.
    fn wall(&self, t: Timestamp) -> i64 {
        let ms = t.as_millis() as i64;
        if let Some(i) = self.index(t).filter(|i| *i > 0) {
            let (at, now) = self.changes[i];
            let before = self.changes[i - 1].1;
            let back = i64::from(before) - i64::from(now);
            if back > 0 && ms - (at.as_millis() as i64) < back * 1000 {
                return at.as_millis() as i64 + i64::from(before) * 1000;
            }
        }
        ms + i64::from(self.offset(t)) * 1000
    }

    /// Changes (and ends of repeated hours) after `now`: the wall clock may jump there.
    fn changes_after(&self, now: Timestamp) -> Vec<Timestamp> {
        let mut out = Vec::new();
        for (i, (at, o)) in self.changes.iter().enumerate() {
            if *at > now {
                out.push(*at);
            }
            if i > 0 && self.changes[i - 1].1 > *o {
                let held = *at + std::time::Duration::from_secs((self.changes[i - 1].1 - o) as u64);
                if held > now {
                    out.push(held);
                }
            }
        }
        out
    }

    fn distinct(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self.changes.iter().map(|c| c.1).collect();
        if all.is_empty() {
            all.push(0);
        }
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;
    /// 2026-11-30 00:00 UTC, a Monday.
    const MONDAY: u64 = 1_795_996_800_000;

    fn nine_to_five() -> Hours {
        let mut h = Hours::default();
        for d in 0..5 {
            h.weekly[d] = vec![Span { start: 9 * 60, end: 17 * 60 }];
        }
        h
    }

    #[test]
    fn monday_is_a_monday() {
        assert_eq!(weekday((MONDAY / DAY_MS as u64) as i32), 0);
    }

    #[test]
    fn weekly_hours_open_and_close_in_utc() {
        let h = nine_to_five();
        let utc = Offsets::default();
        let s = h.state(&utc, Timestamp(MONDAY + 8 * H));
        assert_eq!(s, OpenState { open: false, until: Some(Timestamp(MONDAY + 9 * H)) });
        let s = h.state(&utc, Timestamp(MONDAY + 9 * H));
        assert_eq!(s, OpenState { open: true, until: Some(Timestamp(MONDAY + 17 * H)) });
        // Friday 17:00 closes until Monday 09:00.
        let s = h.state(&utc, Timestamp(MONDAY + 4 * 24 * H + 17 * H));
        assert_eq!(s.until, Some(Timestamp(MONDAY + 7 * 24 * H + 9 * H)));
    }

    #[test]
    fn the_zone_shifts_the_hours() {
        let h = nine_to_five();
        let shanghai = Offsets::fixed(8 * 3600);
        // 09:00 in Shanghai is 01:00 UTC.
        assert!(h.open_at(&shanghai, Timestamp(MONDAY + H)));
        assert!(!h.open_at(&shanghai, Timestamp(MONDAY + 9 * H + 1)));
    }

    #[test]
    fn a_holiday_closes_all_day_and_special_hours_replace_the_week() {
        let mut h = nine_to_five();
        let monday = (MONDAY / DAY_MS as u64) as i32;
        h.exceptions.insert(monday, vec![]);
        h.exceptions.insert(monday + 1, vec![Span { start: 10 * 60, end: 12 * 60 }]);
        let utc = Offsets::default();
        let s = h.state(&utc, Timestamp(MONDAY + 10 * H));
        assert_eq!(s, OpenState { open: false, until: Some(Timestamp(MONDAY + 34 * H)) });
        assert_eq!(
            h.state(&utc, Timestamp(MONDAY + 34 * H)).until,
            Some(Timestamp(MONDAY + 36 * H))
        );
    }

    #[test]
    fn always_open_and_always_closed_never_change() {
        let utc = Offsets::default();
        assert_eq!(
            Hours::always_open().state(&utc, Timestamp(MONDAY)),
            OpenState { open: true, until: None }
        );
        assert_eq!(
            Hours::default().state(&utc, Timestamp(MONDAY)),
            OpenState { open: false, until: None }
        );
    }

    /// Spring forward at 02:00 (+1 → +2): hours from 02:30 open at the jump; fall back at
    /// 03:00 (+2 → +1): a span ending at 02:30 closes once, at its first 02:30.
    #[test]
    fn across_daylight_saving_time() {
        let jump = Timestamp(MONDAY + H); // 02:00 local at +1
        let dst = Offsets { changes: vec![(Timestamp::ZERO, 3600), (jump, 7200)] };
        let mut h = Hours::default();
        h.weekly[0] = vec![Span { start: 150, end: 600 }];
        let s = h.state(&dst, Timestamp(MONDAY));
        assert_eq!(s, OpenState { open: false, until: Some(jump) });

        let back = Timestamp(MONDAY + H); // 03:00 local at +2 becomes 02:00 at +1
        let fall = Offsets { changes: vec![(Timestamp::ZERO, 7200), (back, 3600)] };
        let mut h = Hours::default();
        h.weekly[0] = vec![Span { start: 0, end: 150 }];
        let s = h.state(&fall, Timestamp(MONDAY));
        // 02:30 at +2 is 00:30 UTC; the repeated 02:00-03:00 stays closed.
        assert_eq!(s, OpenState { open: true, until: Some(Timestamp(MONDAY + H / 2)) });
        let s = h.state(&fall, Timestamp(MONDAY + H / 2));
        assert_eq!(s, OpenState { open: false, until: Some(Timestamp(MONDAY + 7 * 24 * H - H)) });
    }

    #[test]
    fn bad_spans_are_refused_by_field() {
        let mut h = Hours::default();
        h.weekly[2] = vec![Span { start: 600, end: 540 }];
        let e = h.validate("hours").unwrap_err().to_string();
        assert!(e.contains("hours.wednesday[0]") && e.contains("10:00"), "{e}");
        h.weekly[2] = vec![Span { start: 540, end: 720 }, Span { start: 700, end: 800 }];
        let e = h.validate("hours").unwrap_err().to_string();
        assert!(e.contains("overlaps span 0"), "{e}");
        h.weekly[2] = vec![Span { start: 540, end: 1441 }];
        assert!(h.validate("hours").is_err());
        assert!(Hours::always_open().validate("hours").is_ok());
    }
}

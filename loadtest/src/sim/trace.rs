//! The `trace` scenario: replays a month of a real call center (the anonymous bank's August
//! 1999 CSV) through the engine with its real staffing, and computes the real figures from the
//! same rows for comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};

use super::driver::{Arrival, Shift};
use super::rng::Rng;

/// The skill groups (`type` column), in the data README's order.
pub const TYPES: [&str; 6] = ["PS", "NW", "IN", "NE", "TT", "PE"];

/// One call (PHANTOM rows are dropped on reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub day: u32,
    pub group: u32,
    pub priority: u8,
    /// Seconds since the start of the day.
    pub vru_entry: u64,
    pub vru_time: u64,
    pub q_time: u64,
    pub served: bool,
    /// ser_start..ser_exit, seconds since the start of the day, and the server's name.
    pub service: Option<(u64, u64, String)>,
    pub ser_time: u64,
}

impl Call {
    /// Reached the queue: served, or hung up after queueing.
    pub fn queued(&self) -> bool {
        self.served || self.q_time > 0
    }
}

fn clock(s: &str) -> anyhow::Result<u64> {
    let mut parts = s.split(':').map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(h)), Some(Ok(m)), Some(Ok(s))) => Ok(h * 3600 + m * 60 + s),
        _ => bail!("bad time {s:?}"),
    }
}

/// A count of seconds; a handful of rows have negative ones (clock skew between the VRU and
/// the switch), taken as 0.
fn seconds(s: &str) -> anyhow::Result<u64> {
    Ok(s.parse::<i64>()?.max(0).unsigned_abs())
}

/// Reads the CSV, keeping days in `days`.
pub fn read(path: &Path, days: std::ops::RangeInclusive<u32>) -> anyhow::Result<Vec<Call>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut calls = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let row = || format!("{}:{}", path.display(), n + 1);
        if f.len() < 16 {
            bail!("{}: expected 16 columns, got {}", row(), f.len());
        }
        if f[11] == "PHANTOM" {
            continue;
        }
        let day: u32 = f[4].rsplit('-').next().unwrap_or("").parse().with_context(row)?;
        if !days.contains(&day) {
            continue;
        }
        let group = TYPES
            .iter()
            .position(|t| *t == f[3])
            .with_context(|| format!("{}: unknown type {:?}", row(), f[3]))?
            as u32;
        let served = f[11] == "AGENT";
        let service = (served && f[15] != "NO_SERVER")
            .then(|| anyhow::Ok((clock(f[12])?, clock(f[13])?, f[15].to_owned())))
            .transpose()
            .with_context(row)?;
        calls.push(Call {
            day,
            group,
            priority: f[2].parse().with_context(row)?,
            vru_entry: clock(f[5]).with_context(row)?,
            vru_time: seconds(f[7]).with_context(row)?,
            q_time: seconds(f[10]).with_context(row)?,
            served,
            service,
            ser_time: seconds(f[14]).with_context(row)?,
        });
    }
    Ok(calls)
}

/// Arrivals, sorted by time. Served calls keep their handle time and wait as long as it
/// takes; calls that hung up after queueing leave after their `q_time` and, if the simulation
/// answers them first, get a handle time drawn from their group's served calls.
pub fn arrivals(calls: &[Call], first_day: u32, seed: u64) -> Vec<Arrival> {
    let mut handles: Vec<Vec<u64>> = vec![Vec::new(); TYPES.len()];
    for c in calls.iter().filter(|c| c.served) {
        handles[c.group as usize].push(c.ser_time * 1000);
    }
    let mut rng = Rng::new(seed);
    let mut out: Vec<Arrival> = calls
        .iter()
        .map(|c| {
            let pool = &handles[c.group as usize];
            let handle = if c.served {
                c.ser_time * 1000
            } else if pool.is_empty() {
                0
            } else {
                pool[rng.below(pool.len())]
            };
            Arrival {
                at: (u64::from(c.day - first_day) * 86_400 + c.vru_entry) * 1000,
                group: c.group,
                priority: c.priority,
                bot: Some(c.vru_time * 1000),
                leaves_in_bot: !c.queued(),
                handle,
                patience: (!c.served).then_some(c.q_time * 1000),
            }
        })
        .collect();
    out.sort_by_key(|a| a.at);
    out
}

/// The real staffing: every server seen serving during an hour is online for that hour, in
/// the groups it was seen serving over the whole trace.
#[derive(Debug, Clone, Default)]
pub struct Staffing {
    /// Skill groups per agent.
    pub agents: Vec<Vec<u32>>,
    pub shifts: Vec<Shift>,
    /// Distinct servers working in each hour (index: hour since the first day).
    pub per_hour: Vec<u32>,
}

pub fn staffing(calls: &[Call], first_day: u32) -> Staffing {
    let mut names: BTreeMap<&str, (BTreeSet<u32>, BTreeSet<u64>)> = BTreeMap::new();
    for c in calls {
        let Some((start, exit, name)) = &c.service else { continue };
        let e = names.entry(name.as_str()).or_default();
        e.0.insert(c.group);
        let day = u64::from(c.day - first_day) * 24;
        let last = (*exit).clamp(*start, 86_399);
        e.1.extend((start / 3600..=last / 3600).map(|h| day + h));
    }
    let mut s = Staffing::default();
    for (a, (groups, hours)) in names.values().enumerate() {
        let agent = a as u32;
        s.agents.push(groups.iter().copied().collect());
        let mut prev: Option<u64> = None;
        for &h in hours {
            if s.per_hour.len() <= h as usize {
                s.per_hour.resize(h as usize + 1, 0);
            }
            s.per_hour[h as usize] += 1;
            if prev.is_none_or(|p| p + 1 != h) {
                if let Some(p) = prev {
                    s.shifts.push(Shift { at: (p + 1) * 3_600_000, agent, online: false });
                }
                s.shifts.push(Shift { at: h * 3_600_000, agent, online: true });
            }
            prev = Some(h);
        }
        if let Some(p) = prev {
            s.shifts.push(Shift { at: (p + 1) * 3_600_000, agent, online: false });
        }
    }
    s.shifts.sort_by_key(|s| (s.at, !s.online, s.agent));
    s
}

/// The real figures of one group (all when `None`), straight from the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Real {
    pub offered: u64,
    pub served: u64,
    pub abandoned: u64,
    pub left_in_bot: u64,
    pub service_level: f64,
    pub mean_wait: f64,
    pub p_wait: f64,
}

pub fn real(calls: &[Call], group: Option<u32>, target_s: u64) -> Real {
    let mut r = Real::default();
    let (mut within, mut waited, mut wait) = (0u64, 0u64, 0u64);
    for c in calls.iter().filter(|c| group.is_none_or(|g| c.group == g)) {
        if !c.queued() {
            r.left_in_bot += 1;
            continue;
        }
        r.offered += 1;
        if c.served {
            r.served += 1;
            within += u64::from(c.q_time <= target_s);
            waited += u64::from(c.q_time > 0);
            wait += c.q_time;
        } else {
            r.abandoned += 1;
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    r.service_level = ratio(within, r.offered);
    r.mean_wait = ratio(wait, r.served);
    r.p_wait = ratio(waited, r.served);
    r
}

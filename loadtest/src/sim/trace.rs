//! The `trace` scenario: replays a month of a real call center (the anonymous bank's August
//! 1999 CSV) through the engine with staffing inferred from the trace, and computes the real
//! figures from the same rows, with the same statistics, for comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};

use switchboard_sim::driver::{Arrival, Shift};
use switchboard_sim::report::{Fate, Stats};
use switchboard_sim::rng::Rng;

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

/// The rows kept, and how many were dropped for want of service times.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub calls: Vec<Call>,
    /// Served (`AGENT`) rows whose `ser_start` and `ser_exit` are both `0:00:00` (57 in the
    /// month): no handle time, and they would put their server online at midnight.
    pub no_service_times: usize,
    /// Served rows with server `NO_SERVER` (391 in the month): answered at once (no queue
    /// time) and briefly (2.5 hours in all) by something other than the named agents; no
    /// agent's capacity served them, so neither the replay nor the real figures count them.
    pub no_server: usize,
}

/// Reads the CSV, keeping days in `days`; drops PHANTOM rows, served rows without service
/// times and served rows without a server.
pub fn read(path: &Path, days: std::ops::RangeInclusive<u32>) -> anyhow::Result<Rows> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut calls = Vec::new();
    let (mut no_service_times, mut no_server) = (0, 0);
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
        if served && f[12] == "0:00:00" && f[13] == "0:00:00" {
            no_service_times += 1;
            continue;
        }
        if served && f[15] == "NO_SERVER" {
            no_server += 1;
            continue;
        }
        let service = served
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
    Ok(Rows { calls, no_service_times, no_server })
}

/// How long a caller the real center served would have waited in the replay: the trace only
/// says its patience exceeded its real wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServedPatience {
    /// As long as it takes.
    Infinite,
    /// Its real wait plus an exponential residual with its group's mean patience (by
    /// memorylessness, the law of an exponential patience known to exceed the real wait).
    Exponential,
}

/// Mean patience per group, seconds, by the maximum-likelihood estimate for exponential
/// patience censored by service: total time queued (served and abandoned calls) over the
/// number that abandoned. `None` for a group where nobody abandoned.
pub fn mean_patience(calls: &[Call]) -> Vec<Option<f64>> {
    let mut queued_s = vec![0u64; TYPES.len()];
    let mut abandoned = vec![0u64; TYPES.len()];
    for c in calls.iter().filter(|c| c.queued()) {
        queued_s[c.group as usize] += c.q_time;
        abandoned[c.group as usize] += u64::from(!c.served);
    }
    queued_s.iter().zip(&abandoned).map(|(q, a)| (*a > 0).then(|| *q as f64 / *a as f64)).collect()
}

/// Arrivals, sorted by time. Calls that hung up after queueing leave after their `q_time`
/// and, if the simulation answers them first, get a handle time drawn from their group's served
/// calls; served calls keep their handle time and wait as `served` says.
pub fn arrivals(calls: &[Call], first_day: u32, served: ServedPatience, seed: u64) -> Vec<Arrival> {
    let mut handles: Vec<Vec<u64>> = vec![Vec::new(); TYPES.len()];
    for c in calls.iter().filter(|c| c.served) {
        handles[c.group as usize].push(c.ser_time * 1000);
    }
    let patience = mean_patience(calls);
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
            let patience = match (c.served, served, patience[c.group as usize]) {
                (false, ..) => Some(c.q_time * 1000),
                (true, ServedPatience::Exponential, Some(mean)) => {
                    Some(c.q_time * 1000 + rng.exp(mean * 1000.0).round() as u64)
                }
                (true, ..) => None,
            };
            Arrival {
                at: (u64::from(c.day - first_day) * 86_400 + c.vru_entry) * 1000,
                group: c.group,
                priority: c.priority,
                bot: Some(c.vru_time * 1000),
                leaves_in_bot: !c.queued(),
                handle,
                patience,
            }
        })
        .collect();
    out.sort_by_key(|a| a.at);
    out
}

/// How agents are put online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// A server seen serving in an hour is online all that hour (overstates capacity: such
    /// servers were busy a median 48% of those hours, the rest went to work the trace does
    /// not show).
    Hours,
    /// A server is online while the trace shows it serving, idle gaps up to `--idle-gap`
    /// seconds bridged: the capacity the center actually gave these queues, moment by moment.
    Busy,
}

/// The staffing of the replay: every agent in the groups it was seen serving over the trace.
#[derive(Debug, Clone, Default)]
pub struct Staffing {
    /// Skill groups per agent.
    pub agents: Vec<Vec<u32>>,
    pub shifts: Vec<Shift>,
    /// Agent-time online, ms.
    pub online_ms: u64,
}

/// Staffing by `method`; `gap_s`: the idle gap bridged by [`Method::Busy`].
pub fn staffing(calls: &[Call], first_day: u32, method: Method, gap_s: u64) -> Staffing {
    // Per server: its groups, and its service intervals (ms since the first day).
    /// A server's groups and service intervals.
    type Seen = (BTreeSet<u32>, Vec<(u64, u64)>);
    let mut names: BTreeMap<&str, Seen> = BTreeMap::new();
    for c in calls {
        let Some((start, exit, name)) = &c.service else { continue };
        let e = names.entry(name.as_str()).or_default();
        e.0.insert(c.group);
        let day = u64::from(c.day - first_day) * 86_400;
        let exit = (*exit).clamp(*start, 86_399);
        e.1.push(((day + start) * 1000, (day + exit) * 1000));
    }
    let mut s = Staffing::default();
    for (a, (groups, mut spans)) in names.into_values().enumerate() {
        let agent = a as u32;
        s.agents.push(groups.into_iter().collect());
        let (gap, hour) = match method {
            // Whole hours: widen each service to its clock hours, join touching ones.
            Method::Hours => (0, 3_600_000),
            Method::Busy => (gap_s * 1000, 1),
        };
        spans.sort_unstable();
        let mut online: Option<(u64, u64)> = None;
        for (from, to) in spans {
            let (from, to) = (from / hour * hour, (to / hour + u64::from(hour > 1)) * hour);
            online = match online {
                Some((f, t)) if from <= t + gap => Some((f, t.max(to))),
                Some(prev) => {
                    s.push(agent, prev);
                    Some((from, to))
                }
                None => Some((from, to)),
            };
        }
        if let Some(last) = online {
            s.push(agent, last);
        }
    }
    s.shifts.sort_by_key(|s| (s.at, !s.online, s.agent));
    s
}

impl Staffing {
    fn push(&mut self, agent: u32, (from, to): (u64, u64)) {
        self.shifts.push(Shift { at: from, agent, online: true });
        self.shifts.push(Shift { at: to, agent, online: false });
        self.online_ms += to - from;
    }
}

/// The real figures, counted like the simulation's (by queue-entry time over `window`, one
/// batch per day): a served call waited its `q_time`, a call that hung up after queueing
/// abandoned.
pub fn real(calls: &[Call], first_day: u32, window: (u64, u64), target_ms: u64) -> Stats {
    let days = ((window.1 - window.0) / 86_400_000).max(1) as u32;
    let mut stats = Stats::new(TYPES.len(), window, target_ms, days);
    for c in calls {
        if !c.queued() {
            stats.add_left_in_bot(c.group);
            continue;
        }
        let queued = (u64::from(c.day - first_day) * 86_400 + c.vru_entry + c.vru_time) * 1000;
        let fate = if c.served { Fate::Served { wait: c.q_time * 1000 } } else { Fate::Abandoned };
        stats.add(c.group, queued, fate);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(group: u32, q_time: u64, service: Option<(u64, u64, &str)>) -> Call {
        Call {
            day: 1,
            group,
            priority: 0,
            vru_entry: 36_000,
            vru_time: 10,
            q_time,
            served: service.is_some(),
            service: service.map(|(a, b, n)| (a, b, n.to_owned())),
            ser_time: service.map_or(0, |(a, b, _)| b - a),
        }
    }

    /// One agent serving 10:00:00–10:05:00 and 10:05:30–10:10:00, another 10:59:00–11:01:00.
    #[test]
    fn staffing_follows_the_method() {
        let calls = [
            call(0, 0, Some((36_000, 36_300, "A"))),
            call(1, 5, Some((36_330, 36_600, "A"))),
            call(0, 0, Some((39_540, 39_660, "B"))),
            call(0, 40, None),
        ];
        let busy = staffing(&calls, 1, Method::Busy, 0);
        assert_eq!(busy.agents, vec![vec![0, 1], vec![0]]);
        assert_eq!(busy.online_ms, (300 + 270 + 120) * 1000);
        assert_eq!(busy.shifts.len(), 6);
        let bridged = staffing(&calls, 1, Method::Busy, 30);
        assert_eq!(bridged.online_ms, (600 + 120) * 1000, "the 30 s gap is bridged");
        let hours = staffing(&calls, 1, Method::Hours, 0);
        // A: 10:00–11:00; B: 10:00–12:00.
        assert_eq!(hours.online_ms, 3 * 3_600_000);
        let first = hours.shifts.first().unwrap();
        assert_eq!((first.at, first.online), (36_000_000, true));
    }

    /// Censored exponential MLE: abandoned / total time queued; served callers wait at least
    /// their real wait.
    #[test]
    fn patience_estimate_and_served_residual() {
        let calls = [
            call(0, 30, Some((36_040, 36_100, "A"))),
            call(0, 50, None),
            call(0, 20, None),
            call(1, 10, Some((36_020, 36_100, "A"))),
        ];
        let p = mean_patience(&calls);
        assert_eq!(p[0], Some(50.0), "(30 + 50 + 20) s / 2 abandoned");
        assert_eq!(p[1], None, "nobody abandoned");
        let a = arrivals(&calls, 1, ServedPatience::Exponential, 3);
        assert_eq!(a[1].patience, Some(50_000), "abandoned: their real wait");
        assert!(a[0].patience.unwrap() >= 30_000, "served: more than their real wait");
        assert_eq!(a[3].patience, None, "no estimate for the group: waits as long as it takes");
        let inf = arrivals(&calls, 1, ServedPatience::Infinite, 3);
        assert_eq!(inf[0].patience, None);
    }

    #[test]
    fn reading_drops_served_rows_without_service_times() {
        let rows = read(&super::super::default_csv(), 1..=31).unwrap();
        assert_eq!((rows.no_service_times, rows.no_server), (57, 391));
        assert!(rows.calls.iter().all(|c| !c.served || c.service.is_some()));
    }
}

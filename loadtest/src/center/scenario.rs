//! The arrivals of a live run, computed up front so Switchboard and the baseline get exactly
//! the same ones: Poisson at a rate, or the bank's August 1999 calls, time-compressed.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::sim::trace as bank;
use switchboard_sim::rng::Rng;

/// One customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// From the start of the run.
    pub at: Duration,
    /// Index into [`Scenario::groups`].
    pub group: usize,
    pub priority: u32,
    /// Leaves if not assigned within this; `None` waits (until the run's drain bound).
    pub patience: Option<Duration>,
    /// From assignment to the agent ending the conversation.
    pub handle: Duration,
}

/// Everything a live run needs besides the target.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// Skill group ids; every agent is in all of them.
    pub groups: Vec<String>,
    pub arrivals: Vec<Arrival>,
    pub agents: u32,
    pub capacity: u32,
    /// Agent's delay before each reply.
    pub think: Duration,
    /// Between two customer messages while assigned.
    pub interval: Duration,
    /// Offers the agent accepts (true) or auto-accept (false).
    pub offer: bool,
    /// Arrivals are scheduled over this window.
    pub window: Duration,
    /// After the window, how long to wait for conversations to finish.
    pub drain: Duration,
    /// The verdict's bound on p99 customer message → agent and arrival → assignment.
    pub hold_p99: Duration,
}

/// The knobs shared by both arrival processes.
#[derive(Debug, Clone)]
pub struct Common {
    /// `None`: enough agents for the peak concurrency with 25% headroom.
    pub agents: Option<u32>,
    pub capacity: u32,
    pub think: Duration,
    pub interval: Duration,
    pub offer: bool,
    pub drain: Duration,
    pub max_arrivals: usize,
    pub hold_p99: Duration,
    /// Nobody leaves sooner: a patience below it is raised to it. Exponential patience gives
    /// some customers less time than a round trip takes (mean 30 s: 1 in 6,000 under 5 ms),
    /// who abandon however fast the system is.
    pub min_patience: Duration,
}

impl Common {
    fn finish(
        self,
        name: String,
        groups: Vec<String>,
        mut arrivals: Vec<Arrival>,
        window: Duration,
    ) -> Scenario {
        arrivals.truncate(self.max_arrivals);
        for a in &mut arrivals {
            a.patience = a.patience.map(|p| p.max(self.min_patience));
        }
        let agents = self.agents.unwrap_or_else(|| {
            let peak = peak_concurrency(&arrivals);
            ((peak as f64 * 1.25 / f64::from(self.capacity.max(1))).ceil() as u32).max(1)
        });
        Scenario {
            name,
            groups,
            arrivals,
            agents,
            capacity: self.capacity.max(1),
            think: self.think,
            interval: self.interval,
            offer: self.offer,
            window,
            drain: self.drain,
            hold_p99: self.hold_p99,
        }
    }
}

/// The most conversations held at once if every customer were assigned on arrival.
fn peak_concurrency(arrivals: &[Arrival]) -> usize {
    let mut edges: Vec<(Duration, i64)> =
        arrivals.iter().flat_map(|a| [(a.at, 1), (a.at + a.handle, -1)]).collect();
    edges.sort();
    let mut now = 0i64;
    let mut peak = 0i64;
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

/// Poisson arrivals at `rate` per second for `seconds`, one group, exponential patience
/// (mean `patience` s, 0: nobody leaves; at least [`Common::min_patience`]) and exponential
/// handle times (mean `handle` s).
pub fn poisson(
    c: Common,
    rate: f64,
    seconds: f64,
    handle: f64,
    patience: f64,
    seed: u64,
) -> anyhow::Result<Scenario> {
    if !(rate > 0.0 && seconds > 0.0 && handle > 0.0) {
        bail!("--rate, --seconds and --handle must be positive");
    }
    let mut rng = Rng::new(seed);
    let mut at = 0.0;
    let mut arrivals = Vec::new();
    loop {
        at += rng.exp(1.0 / rate);
        if at >= seconds || arrivals.len() >= c.max_arrivals {
            break;
        }
        arrivals.push(Arrival {
            at: Duration::from_secs_f64(at),
            group: 0,
            priority: 0,
            patience: (patience > 0.0).then(|| Duration::from_secs_f64(rng.exp(patience))),
            handle: Duration::from_secs_f64(rng.exp(handle)),
        });
    }
    let name = format!(
        "poisson {rate}/s for {seconds} s, handle {handle} s, patience {patience} s, message every {:.1} s, think {} ms, {}",
        c.interval.as_secs_f64(),
        c.think.as_millis(),
        if c.offer { "offer + accept" } else { "auto-accept" }
    );
    let window = Duration::from_secs_f64(seconds);
    Ok(c.finish(name, vec!["load".into()], arrivals, window))
}

/// The bank's calls of `day` from `from_hour`, `speedup` times faster than real time, for at
/// most `seconds` of run time: each call that reached the queue arrives when it did (the bot
/// stage is skipped), in its group with its priority; handle time and patience (callers who
/// hung up in the queue) are the real ones, compressed alike.
pub fn trace(
    c: Common,
    csv: &Path,
    day: u32,
    from_hour: u32,
    speedup: f64,
    seconds: f64,
    seed: u64,
) -> anyhow::Result<Scenario> {
    if !(speedup > 0.0 && seconds > 0.0) {
        bail!("--speedup and --seconds must be positive");
    }
    let calls = bank::read(csv, day..=day)?.calls;
    let from = Duration::from_secs(u64::from(from_hour) * 3600);
    let squeeze = |ms: u64| Duration::from_secs_f64(ms as f64 / 1000.0 / speedup);
    let mut arrivals: Vec<Arrival> =
        bank::arrivals(&calls, day, bank::ServedPatience::Infinite, seed)
            .into_iter()
            .filter(|a| !a.leaves_in_bot)
            .filter_map(|a| {
                let queued = Duration::from_millis(a.at + a.bot.unwrap_or(0));
                let at = queued.checked_sub(from)?;
                Some(Arrival {
                    at: Duration::from_secs_f64(at.as_secs_f64() / speedup),
                    group: a.group as usize,
                    priority: u32::from(a.priority),
                    patience: a.patience.map(squeeze),
                    handle: squeeze(a.handle.max(1000)),
                })
            })
            .filter(|a| a.at.as_secs_f64() < seconds)
            .collect();
    arrivals.sort_by_key(|a| a.at);
    let real = seconds * speedup;
    let name = format!(
        "trace 1999-08-{day:02} from {from_hour:02}:00, {speedup}× ({:.0} min of real traffic), message every {:.1} s, think {} ms, {}",
        real / 60.0,
        c.interval.as_secs_f64(),
        c.think.as_millis(),
        if c.offer { "offer + accept" } else { "auto-accept" }
    );
    let groups = bank::TYPES.iter().map(|t| t.to_lowercase()).collect();
    Ok(c.finish(name, groups, arrivals, Duration::from_secs_f64(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> Common {
        Common {
            agents: None,
            capacity: 4,
            think: Duration::from_millis(100),
            interval: Duration::from_secs(1),
            offer: true,
            drain: Duration::from_secs(5),
            max_arrivals: usize::MAX,
            hold_p99: Duration::from_millis(50),
            min_patience: Duration::from_secs(1),
        }
    }

    #[test]
    fn nobody_leaves_before_the_minimum_patience() {
        let raw =
            poisson(Common { min_patience: Duration::ZERO, ..common() }, 50.0, 60.0, 5.0, 3.0, 1)
                .unwrap();
        let floor = Duration::from_secs(1);
        assert!(
            raw.arrivals.iter().any(|a| a.patience.unwrap() < floor),
            "exponential: some short"
        );
        let s = poisson(common(), 50.0, 60.0, 5.0, 3.0, 1).unwrap();
        assert_eq!(s.arrivals.len(), raw.arrivals.len());
        for (a, r) in s.arrivals.iter().zip(&raw.arrivals) {
            assert_eq!(a.patience.unwrap(), r.patience.unwrap().max(floor));
        }
    }

    #[test]
    fn poisson_is_seeded_and_bounded() {
        let a = poisson(common(), 50.0, 10.0, 5.0, 20.0, 1).unwrap();
        let b = poisson(common(), 50.0, 10.0, 5.0, 20.0, 1).unwrap();
        assert_eq!(a.arrivals, b.arrivals);
        assert!(a.arrivals.len() > 300 && a.arrivals.len() < 700, "{}", a.arrivals.len());
        assert!(a.arrivals.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.agents >= 50 * 5 / 4, "about rate × handle / capacity agents: {}", a.agents);
        let capped =
            poisson(Common { max_arrivals: 7, ..common() }, 50.0, 10.0, 5.0, 0.0, 1).unwrap();
        assert_eq!(capped.arrivals.len(), 7);
        assert!(capped.arrivals.iter().all(|a| a.patience.is_none()));
    }

    #[test]
    fn trace_compresses_the_real_day() {
        let s = trace(common(), &crate::sim::default_csv(), 2, 8, 60.0, 60.0, 1).unwrap();
        assert!(!s.arrivals.is_empty());
        assert!(s.arrivals.iter().all(|a| a.at < Duration::from_secs(60) && a.group < 6));
        assert_eq!(s.groups.len(), 6);
    }
}

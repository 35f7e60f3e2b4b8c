//! Time as the core sees it: a millisecond timestamp handed in by the caller.
//!
//! The core never reads a clock. Every function that depends on time takes `now`, so the same code
//! runs in production, in property tests and in a simulation with virtual time.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The earliest representable instant.
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Shorthands for writing durations in configuration and tests.
pub const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

pub const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

pub const fn days(d: u64) -> Duration {
    Duration::from_secs(d * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp(5) - secs(1), Timestamp(0));
        assert_eq!(Timestamp(u64::MAX) + secs(1), Timestamp(u64::MAX));
        assert_eq!(Timestamp(1_000) + secs(2), Timestamp(3_000));
        assert_eq!(Timestamp(3_000).since(Timestamp(1_000)), secs(2));
        assert_eq!(Timestamp(1_000).since(Timestamp(3_000)), Duration::ZERO);
    }
}

//! The node's one read of the wall clock; everything below takes `now` from here.

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_core::Timestamp;

#[allow(clippy::disallowed_methods)] // the shell owns the clock; the core never reads it
pub fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

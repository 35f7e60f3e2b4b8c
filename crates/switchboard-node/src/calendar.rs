//! Days in a tenant's time zone: contact centers count "today" from their own midnight, not
//! UTC's. The zone is an IANA name in the tenant's settings; the database is bundled, so a
//! node needs no tzdata installed.

use jiff::Timestamp as Instant;
use jiff::tz::TimeZone;
use switchboard_core::Timestamp;

use crate::error::{Error, Result};

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
    fn unknown_zones_are_refused_by_name() {
        assert!(check_zone("settings.time_zone", "Europe/Berlin").is_ok());
        let e = check_zone("settings.time_zone", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().starts_with("settings.time_zone:"), "{e}");
    }
}

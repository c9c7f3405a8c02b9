//! When a removal is due: now, at an instant (`not_before`), or at the end of a person's last day
//! in their own time zone (`last_day`, `time_zone`), shifted by the schedule's offset.
//!
//! Time zones come from the IANA database compiled into the binary (jiff's bundled copy), so a
//! machine with stale or missing zone files computes the same instants as any other.

use std::str::FromStr;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};

use super::Invalid;
use super::invalid::bad;

/// `[schedule]` as validation needs it: the time zone of rows that give none, and the offset every
/// due time is shifted by (as Entra's lifecycle workflows' `offsetInDays`).
#[derive(Debug, Clone, Default)]
pub struct SchedulePolicy {
    time_zone: Option<(Box<str>, TimeZone)>,
    offset: Option<Span>,
}

impl SchedulePolicy {
    /// A policy from the config's strings; the error names what is wrong with which.
    pub fn new(time_zone: Option<&str>, offset: Option<&str>) -> Result<SchedulePolicy, String> {
        let time_zone = time_zone
            .map(|name| zone(name).map(|tz| (Box::from(name), tz)))
            .transpose()
            .map_err(|e| format!("time_zone: {e}"))?;
        let offset = offset
            .map(parse_offset)
            .transpose()
            .map_err(|e| format!("offset: {e}"))?;
        Ok(SchedulePolicy { time_zone, offset })
    }
}

/// An IANA time zone by name, from the bundled database.
fn zone(name: &str) -> Result<TimeZone, String> {
    jiff::tz::db().get(name).map_err(|_| {
        format!("`{name}` is not an IANA time zone name (e.g. `Australia/Melbourne`, `UTC`)")
    })
}

/// An offset such as `-2h`, `+7d`, `30m`: a sign, then a friendly duration.
fn parse_offset(text: &str) -> Result<Span, String> {
    let t = text.trim();
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let span = Span::from_str(rest.trim())
        .map_err(|e| format!("`{text}` is not an offset like \"-2h\" or \"+7d\": {e}"))?;
    if span.get_years() != 0 || span.get_months() != 0 || span.get_weeks() != 0 {
        return Err(format!(
            "`{text}`: give the offset in days, hours, minutes or seconds"
        ));
    }
    Ok(if negative { span.negate() } else { span })
}

/// The due instant a row's `not_before`, `last_day` and `time_zone` ask for, shifted by the
/// policy's offset; `None` for a row that is due now. Each error names its field.
pub fn due(
    not_before: Option<&str>,
    last_day: Option<&str>,
    time_zone: Option<&str>,
    policy: &SchedulePolicy,
) -> Result<Option<Timestamp>, Invalid> {
    let at: ZonedDateTime = match (not_before, last_day) {
        (None, None) => {
            if let Some(name) = time_zone {
                zone(name).map_err(|e| bad("time_zone", e))?;
            }
            return Ok(None);
        }
        (Some(_), Some(_)) => {
            return Err(bad("not_before", "and `last_day` are both given: give one"));
        }
        (Some(instant), None) => {
            let ts = Timestamp::from_str(instant).map_err(|_| {
                bad(
                    "not_before",
                    format!(
                        "`{instant}` is not an RFC 3339 instant with an offset (e.g. `2026-12-31T18:00:00+11:00` or `2026-12-31T07:00:00Z`)"
                    ),
                )
            })?;
            let tz = match time_zone {
                Some(name) => zone(name).map_err(|e| bad("time_zone", e))?,
                None => TimeZone::UTC,
            };
            ts.to_zoned_datetime(tz)
        }
        (None, Some(day)) => {
            let date = Date::from_str(day).map_err(|_| {
                bad(
                    "last_day",
                    format!("`{day}` is not a date like `2026-12-31`"),
                )
            })?;
            let tz = match (time_zone, &policy.time_zone) {
                (Some(name), _) => zone(name).map_err(|e| bad("time_zone", e))?,
                (None, Some((_, tz))) => tz.clone(),
                (None, None) => {
                    return Err(bad(
                        "time_zone",
                        "`last_day` needs a time zone: a `time_zone` column (an IANA name such as `Europe/Berlin`) or `[schedule] time_zone` in the config",
                    ));
                }
            };
            // The end of the last day: midnight after it, in the person's zone (where midnight
            // does not exist that night, the first instant after the gap).
            date.checked_add(Span::new().days(1))
                .map_err(|e| bad("last_day", e.to_string()))?
                .to_zoned_datetime(tz)
                .map_err(|e| bad("last_day", e.to_string()))?
        }
    };
    let at = match policy.offset {
        Some(offset) => at.checked_add(offset).map_err(|e| {
            let field = if not_before.is_some() {
                "not_before"
            } else {
                "last_day"
            };
            bad(field, format!("with [schedule] offset: {e}"))
        })?,
        None => at,
    };
    Ok(Some(at.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn none() -> SchedulePolicy {
        SchedulePolicy::default()
    }

    #[test]
    fn no_schedule_is_due_now() {
        assert_eq!(due(None, None, None, &none()), Ok(None));
        let e = due(None, None, Some("Mars/Olympus"), &none()).unwrap_err();
        assert!(e.to_string().contains("`time_zone`"), "{e}");
    }

    #[test]
    fn not_before_needs_an_offset() {
        assert_eq!(
            due(Some("2026-12-31T18:00:00+11:00"), None, None, &none()),
            Ok(Some(at("2026-12-31T07:00:00Z")))
        );
        for bad in ["2026-12-31T18:00:00", "2026-12-31", "tomorrow"] {
            let e = due(Some(bad), None, None, &none()).unwrap_err();
            assert!(e.to_string().starts_with("field `not_before`"), "{e}");
        }
    }

    #[test]
    fn both_or_a_date_without_a_zone_or_an_unknown_zone_is_invalid_naming_the_field() {
        let e = due(
            Some("2026-12-31T18:00:00Z"),
            Some("2026-12-31"),
            None,
            &none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`not_before`"), "{e}");
        let e = due(None, Some("2026-12-31"), None, &none()).unwrap_err();
        assert!(e.to_string().starts_with("field `time_zone`"), "{e}");
        let e = due(None, Some("2026-12-31"), Some("Europe/Atlantis"), &none()).unwrap_err();
        assert!(e.to_string().contains("Europe/Atlantis"), "{e}");
        let e = due(None, Some("2026-02-30"), Some("UTC"), &none()).unwrap_err();
        assert!(e.to_string().starts_with("field `last_day`"), "{e}");
    }

    /// Pinned against known UTC values, on both sides of each zone's daylight-saving change.
    #[test]
    fn last_day_ends_at_midnight_in_the_persons_zone_across_daylight_saving() {
        let d = |day, tz| due(None, Some(day), Some(tz), &none()).unwrap().unwrap();
        // Melbourne: AEDT (+11) until 2026-04-05 03:00, then AEST (+10).
        assert_eq!(
            d("2026-04-04", "Australia/Melbourne"),
            at("2026-04-04T13:00:00Z")
        );
        assert_eq!(
            d("2026-04-05", "Australia/Melbourne"),
            at("2026-04-05T14:00:00Z")
        );
        // AEST until 2026-10-04 02:00, then AEDT.
        assert_eq!(
            d("2026-10-03", "Australia/Melbourne"),
            at("2026-10-03T14:00:00Z")
        );
        assert_eq!(
            d("2026-10-04", "Australia/Melbourne"),
            at("2026-10-04T13:00:00Z")
        );
        // Los Angeles: PST (-8) until 2026-03-08 02:00, then PDT (-7); back on 2026-11-01.
        assert_eq!(
            d("2026-03-07", "America/Los_Angeles"),
            at("2026-03-08T08:00:00Z")
        );
        assert_eq!(
            d("2026-03-08", "America/Los_Angeles"),
            at("2026-03-09T07:00:00Z")
        );
        assert_eq!(
            d("2026-10-31", "America/Los_Angeles"),
            at("2026-11-01T07:00:00Z")
        );
        assert_eq!(
            d("2026-11-01", "America/Los_Angeles"),
            at("2026-11-02T08:00:00Z")
        );
    }

    #[test]
    fn the_policy_gives_the_default_zone_and_shifts_every_due_time() {
        let p = SchedulePolicy::new(Some("Europe/Berlin"), Some("-2h")).unwrap();
        // Berlin is +1 in December: midnight after 2026-12-31 is 23:00 UTC; two hours before.
        assert_eq!(
            due(None, Some("2026-12-31"), None, &p),
            Ok(Some(at("2026-12-31T21:00:00Z")))
        );
        // A row's own zone wins over the default.
        assert_eq!(
            due(None, Some("2026-12-31"), Some("UTC"), &p),
            Ok(Some(at("2026-12-31T22:00:00Z")))
        );
        // Days are calendar days in the person's zone: +7d across Melbourne's change is 167 h.
        let week = SchedulePolicy::new(None, Some("+7d")).unwrap();
        assert_eq!(
            due(None, Some("2026-10-01"), Some("Australia/Melbourne"), &week),
            Ok(Some(at("2026-10-08T13:00:00Z")))
        );
        assert!(
            SchedulePolicy::new(Some("Nowhere/City"), None)
                .unwrap_err()
                .starts_with("time_zone")
        );
        assert!(
            SchedulePolicy::new(None, Some("soon"))
                .unwrap_err()
                .starts_with("offset")
        );
        assert!(SchedulePolicy::new(None, Some("+1mo")).is_err());
    }
}

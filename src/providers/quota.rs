//! What a provider says of its rate limit in an answer's headers, in the families in use, read in
//! this order (the first family present wins; fields that do not parse are ignored):
//!
//! 1. the IETF structured fields (draft-ietf-httpapi-ratelimit-headers):
//!    `RateLimit: "default";r=50;t=30` and `RateLimit-Policy: "default";q=100;w=60`;
//! 2. the earlier draft's `RateLimit-Limit` / `-Remaining` / `-Reset` (a limit may carry `;w=`);
//! 3. `X-RateLimit-Limit` / `-Remaining` / `-Reset` (Telnyx, Aitronos, GitHub-style);
//! 4. `X-Rate-Limit-Limit` / `-Remaining` / `-Reset` (Okta-style).
//!
//! A reset above 10^9 is a Unix time, otherwise seconds from now. `Retry-After` is read apart
//! (`http::retry_after`), since it answers a different question: when to try this request again.

use std::time::{Duration, SystemTime};

use http::header::HeaderMap;

/// One answer's account of the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quota {
    /// Requests allowed per window.
    pub limit: Option<f64>,
    /// Requests left in the current window.
    pub remaining: Option<f64>,
    /// Until the window resets (the remaining requests are renewed).
    pub reset: Option<Duration>,
    /// The window's length, when the policy names it.
    pub window: Option<Duration>,
}

/// Resets above this are Unix times (2001-09-09), below it seconds.
const UNIX_TIME_ABOVE: f64 = 1e9;

impl Quota {
    /// The pace that spends what is left evenly until the reset, counting `in_flight` requests
    /// as spent already: the pace that draws no 429. None when remaining or reset is unknown.
    pub fn even_pace(&self, in_flight: u32) -> Option<f64> {
        let remaining = self.remaining?;
        let reset = self.reset?.as_secs_f64();
        let left = (remaining - f64::from(in_flight)).max(0.0);
        if reset <= 0.0 {
            // The window renews now: its limit over its length, if known.
            return self.policy_rate();
        }
        Some(left / reset)
    }

    /// The long-run rate the policy allows (limit per window), if both are known.
    pub fn policy_rate(&self) -> Option<f64> {
        let w = self.window?.as_secs_f64();
        let limit = self.limit?;
        (w > 0.0).then(|| limit / w)
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)?.to_str().ok().map(str::trim)
}

/// A non-negative number, or the first item of a list (`100, 100;w=60`), or None.
fn number(s: &str) -> Option<f64> {
    let first = s.split([',', ';']).next()?.trim();
    first
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// A `;w=` parameter anywhere in a field.
fn window_param(s: &str) -> Option<Duration> {
    s.split([',', ';'])
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(number)
        .map(Duration::from_secs_f64)
}

/// A reset as rate-limit headers give it: seconds from now, or a Unix time (above 10^9).
pub fn reset_in(s: &str, now: SystemTime) -> Option<Duration> {
    let n = number(s)?;
    if n > UNIX_TIME_ABOVE {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(n);
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        // A day at most: a larger count of seconds is a misreading, not a wait.
        Some(Duration::from_secs_f64(n.min(86_400.0)))
    }
}

/// The parameters of the first item of a structured field: `"default";r=50;t=30` -> r, t.
fn params(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(',')
        .next()
        .unwrap_or("")
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
}

fn structured(h: &HeaderMap, now: SystemTime) -> Option<Quota> {
    let field = header(h, "ratelimit")?;
    let mut q = Quota::default();
    for (k, v) in params(field) {
        match k {
            "r" => q.remaining = number(v),
            "t" => q.reset = reset_in(v, now),
            _ => {}
        }
    }
    if let Some(policy) = header(h, "ratelimit-policy") {
        for (k, v) in params(policy) {
            match k {
                "q" => q.limit = number(v),
                "w" => q.window = number(v).map(Duration::from_secs_f64),
                _ => {}
            }
        }
    }
    (q != Quota::default()).then_some(q)
}

/// The three fields of a family: limit, remaining, reset.
type Family = [&'static str; 3];

const DRAFT: Family = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];
const X_RATELIMIT: Family = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];
const X_RATE_LIMIT: Family = [
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
];

fn family(h: &HeaderMap, [limit, remaining, reset]: Family, now: SystemTime) -> Option<Quota> {
    let limit = header(h, limit);
    let q = Quota {
        limit: limit.and_then(number),
        remaining: header(h, remaining).and_then(number),
        reset: header(h, reset).and_then(|r| reset_in(r, now)),
        window: limit.and_then(window_param),
    };
    (q != Quota::default()).then_some(q)
}

/// The rate-limit account in `headers`, if any family is present.
pub fn read(headers: &HeaderMap, now: SystemTime) -> Option<Quota> {
    structured(headers, now)
        .or_else(|| family(headers, DRAFT, now))
        .or_else(|| family(headers, X_RATELIMIT, now))
        .or_else(|| family(headers, X_RATE_LIMIT, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    fn secs(s: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(s))
    }

    const NOW: u64 = 1_800_000_000;

    fn read_at(pairs: &[(&'static str, &str)]) -> Option<Quota> {
        read(&h(pairs), SystemTime::UNIX_EPOCH + Duration::from_secs(NOW))
    }

    #[test]
    fn the_ietf_structured_fields() {
        let q = read_at(&[
            ("ratelimit", "\"default\";r=50;t=30"),
            ("ratelimit-policy", "\"default\";q=100;w=60"),
        ])
        .unwrap();
        assert_eq!(q.remaining, Some(50.0));
        assert_eq!(q.reset, secs(30.0));
        assert_eq!(q.limit, Some(100.0));
        assert_eq!(q.window, secs(60.0));
        assert_eq!(q.even_pace(0), Some(50.0 / 30.0));
        assert_eq!(
            q.even_pace(20),
            Some(1.0),
            "in-flight requests count as spent"
        );
        assert!((q.policy_rate().unwrap() - 100.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn the_earlier_draft_and_the_x_families() {
        let q = read_at(&[
            ("ratelimit-limit", "100, 100;w=60"),
            ("ratelimit-remaining", "7"),
            ("ratelimit-reset", "3"),
        ])
        .unwrap();
        assert_eq!(
            (q.limit, q.remaining, q.reset, q.window),
            (Some(100.0), Some(7.0), secs(3.0), secs(60.0))
        );
        // Telnyx: seconds until reset.
        let q = read_at(&[
            ("x-ratelimit-limit", "600"),
            ("x-ratelimit-remaining", "599"),
            ("x-ratelimit-reset", "60"),
        ])
        .unwrap();
        assert_eq!(q.even_pace(0), Some(599.0 / 60.0));
        // Okta: a Unix time.
        let at = (NOW + 45).to_string();
        let q = read_at(&[
            ("x-rate-limit-limit", "1200"),
            ("x-rate-limit-remaining", "90"),
            ("x-rate-limit-reset", &at),
        ])
        .unwrap();
        assert_eq!(q.reset, secs(45.0));
        assert_eq!(q.even_pace(0), Some(2.0));
        // A reset already past is now.
        let past = (NOW - 5).to_string();
        let q = read_at(&[("x-rate-limit-reset", &past)]).unwrap();
        assert_eq!(q.reset, Some(Duration::ZERO));
        // The rule alone, as Aitronos's reset header uses it.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
        assert_eq!(reset_in(&(NOW + 12).to_string(), now), secs(12.0));
        assert_eq!(reset_in("7", now), secs(7.0));
    }

    #[test]
    fn the_first_family_present_wins() {
        let q = read_at(&[
            ("ratelimit", "\"d\";r=5;t=1"),
            ("x-ratelimit-remaining", "999"),
        ])
        .unwrap();
        assert_eq!(q.remaining, Some(5.0));
    }

    #[test]
    fn malformed_fields_are_ignored() {
        assert_eq!(read_at(&[]), None);
        assert_eq!(read_at(&[("x-ratelimit-remaining", "lots")]), None);
        let q = read_at(&[
            ("x-ratelimit-remaining", "-3"),
            ("x-ratelimit-reset", "10"),
            ("x-ratelimit-limit", "NaN"),
        ])
        .unwrap();
        assert_eq!((q.limit, q.remaining, q.reset), (None, None, secs(10.0)));
        assert_eq!(q.even_pace(0), None, "nothing to spend without remaining");
        let q = read_at(&[("ratelimit", "\"d\";r=x;t=;q")]);
        assert_eq!(q, None);
    }
}

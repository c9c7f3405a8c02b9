//! The sandbox's own rate limits: a GCRA per server and fixed windows, as the pages describe.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::lock;

/// A fixed window: `limit` requests per `length`, renewed at each window's end.
pub(super) struct Window {
    pub(super) limit: u32,
    pub(super) length: Duration,
    /// The current window's start, and the requests counted in it.
    pub(super) state: Mutex<(Instant, u32)>,
}

impl Window {
    pub(super) fn roll(&self, now: Instant) -> MutexGuard<'_, (Instant, u32)> {
        let mut st = lock(&self.state);
        while now.duration_since(st.0) >= self.length {
            st.0 += self.length;
            st.1 = 0;
        }
        st
    }

    /// `None` when allowed (and counted), `Some(wait)` until the window renews.
    pub(super) fn check(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut st = self.roll(now);
        if st.1 < self.limit {
            st.1 += 1;
            None
        } else {
            Some(st.0 + self.length - now)
        }
    }

    /// What is left of this window, and until when.
    pub(super) fn left(&self) -> (u32, Duration) {
        let now = Instant::now();
        let st = self.roll(now);
        (self.limit - st.1, st.0 + self.length - now)
    }
}

/// Generic cell rate algorithm: `rate` per second with bursts of `burst`; the limit may change
/// while it runs (a provider lowering it mid-run).
pub(super) struct Gcra {
    pub(super) rate: Mutex<f64>,
    /// (interval, tolerance, the theoretical arrival time).
    pub(super) state: Mutex<(Duration, Duration, Option<Instant>)>,
}

impl Gcra {
    pub(super) fn params(rate: f64, burst: u32) -> (Duration, Duration) {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        (interval, interval * burst.max(1).saturating_sub(1))
    }

    pub(super) fn new(rate: f64, burst: u32) -> Gcra {
        let (interval, tolerance) = Self::params(rate, burst);
        Gcra {
            rate: Mutex::new(rate),
            state: Mutex::new((interval, tolerance, None)),
        }
    }

    pub(super) fn set(&self, rate: f64, burst: u32) {
        let (interval, tolerance) = Self::params(rate, burst);
        *lock(&self.rate) = rate;
        let mut st = lock(&self.state);
        st.0 = interval;
        st.1 = tolerance;
    }

    pub(super) fn rate(&self) -> f64 {
        *lock(&self.rate)
    }

    /// `None` when allowed (and counted), `Some(wait)` when over the limit.
    pub(super) fn check(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let (interval, tolerance, tat) = *st;
        let current = tat.map_or(now, |t| t.max(now));
        let ahead = current - now;
        if ahead > tolerance {
            Some(ahead - tolerance)
        } else {
            st.2 = Some(current + interval);
            None
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1.
pub(super) fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

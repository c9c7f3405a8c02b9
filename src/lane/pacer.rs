//! The lane's pacer: governor's limiter behind a type of our own.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The rate limiter behind a type of our own, so that the rate can change while jobs flow (the
/// lane's pace adapts to the provider's answers, see `adapt`) without the lane knowing how.
///
/// It never runs at the provider's exact limit: a request's trip to the provider varies by some
/// milliseconds, and a limiter pacing at exactly the provider's rate and burst has no room left for
/// that, so a request delayed on its way (and the one after it, on time) reach the provider too
/// close together and draw a 429, which costs a whole `Retry-After` pause. So the pacer runs
/// [`HEADROOM`] under `rate_per_second` and keeps half of `burst` in reserve: what it sends stays
/// within the provider's limits even when requests arrive up to half a burst out of step.
pub struct Pacer {
    limiter: ArcSwap<DefaultDirectRateLimiter>,
    /// The rate the limiter was made for (f64 bits).
    rate: std::sync::atomic::AtomicU64,
    burst: u32,
    /// When the limiter was last re-made for a higher rate.
    raised: std::sync::Mutex<std::time::Instant>,
}

/// The shortest time between two raises of the rate: each re-made limiter starts its schedule
/// anew, so raising on every answer would cost more than the raise gives.
const RAISE_EVERY: Duration = Duration::from_millis(250);

/// The share of the configured rate left unused, to absorb jitter between requests.
const HEADROOM: f64 = 0.01;

impl Pacer {
    /// Paces under `rate` requests per second (fractions allowed) and `burst` (see [`Pacer`]).
    pub fn new(rate: f64, burst: u32) -> Pacer {
        Pacer {
            limiter: ArcSwap::from_pointee(Self::limiter(rate, burst)),
            rate: rate.to_bits().into(),
            burst,
            raised: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// The rate it paces at now.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves to `rate` when it differs from the current one by more than 2%: down at once, up at
    /// most every [`RAISE_EVERY`]. The new limiter starts with no burst allowance (a fresh one has
    /// a full one, which would send a burst at every move). True when it moved.
    pub fn follow(&self, rate: f64) -> bool {
        let current = self.rate();
        if (rate - current).abs() <= current * 0.02 {
            return false;
        }
        if rate > current {
            let mut raised = self.raised.lock().expect("raised lock");
            if raised.elapsed() < RAISE_EVERY {
                return false;
            }
            *raised = std::time::Instant::now();
        }
        self.set_rate(rate, self.burst);
        self.drain();
        true
    }

    /// The burst the pacer itself allows: half the provider's, at least one.
    fn own_burst(burst: u32) -> u32 {
        (burst / 2).max(1)
    }

    fn limiter(rate: f64, burst: u32) -> DefaultDirectRateLimiter {
        let period =
            Duration::from_secs_f64(1.0 / (rate * (1.0 - HEADROOM))).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("period is above zero")
            .allow_burst(NonZeroU32::new(Self::own_burst(burst)).expect("at least 1"));
        RateLimiter::direct(quota)
    }

    /// Uses up the burst allowance, so the next requests go at the steady rate. For a lane taking
    /// over from another process (a standby worker becoming active), whose last requests the
    /// provider may still be counting: starting with a full burst could exceed the limit.
    pub fn drain(&self) {
        let limiter = self.limiter.load();
        // Take cells one by one until none is free: exactly the burst that is left.
        while limiter.check().is_ok() {}
    }

    /// Changes the rate from now on.
    pub fn set_rate(&self, rate: f64, burst: u32) {
        self.limiter.store(Arc::new(Self::limiter(rate, burst)));
        self.rate
            .store(rate.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for the next request's turn. A wait that began on a limiter since replaced (the
    /// rate moved) waits again on the new one: one schedule at a time, never two side by side.
    pub async fn ready(&self) {
        loop {
            let limiter = self.limiter.load_full();
            limiter.until_ready().await;
            if Arc::ptr_eq(&limiter, &self.limiter.load()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn pacer_holds_rate_and_burst_and_can_change_rate() {
        let p = Pacer::new(20.0, 4);
        let t = Instant::now();
        for _ in 0..6 {
            p.ready().await;
        }
        // Half the burst (2) at once, then 4 more at 50.5 ms each (1% headroom): at least 202 ms
        // minus scheduling slack; the full burst would have taken 100 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(195),
            "{:?}",
            t.elapsed()
        );
        // A new rate applies at once: its own burst (half of 50) is free now, the next is not.
        // Counted, not timed, so a busy machine cannot fail it.
        p.set_rate(1000.0, 50);
        let limiter = p.limiter.load();
        let free = std::iter::from_fn(|| limiter.check().ok())
            .take(100)
            .count();
        assert_eq!(free, 25, "the new burst");
        p.set_rate(20.0, 4);
        let limiter = p.limiter.load();
        let free = std::iter::from_fn(|| limiter.check().ok())
            .take(100)
            .count();
        assert_eq!(free, 2, "and back");
    }
}

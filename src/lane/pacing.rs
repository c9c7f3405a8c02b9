//! The pace of one lane: the limiter, the controller that finds the rate from the provider's
//! answers, the pause a 429 or a spent window imposes, and the requests in flight. Knows nothing
//! of jobs, budgets or member lists.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::adapt::{self, Controller, Source};
use super::pacer::Pacer;
use crate::providers::http::Answer;

pub(super) struct Pacing {
    /// The entry's name, for the logs.
    name: std::sync::Arc<str>,
    pacer: Pacer,
    /// What the pacer's rate should be, from the provider's answers.
    pace: Mutex<Controller>,
    /// Requests sent and not yet answered.
    flying: AtomicU32,
    pub(super) max_in_flight: u32,
    paused_until: Mutex<Option<Instant>>,
}

impl Pacing {
    pub(super) fn new(
        name: std::sync::Arc<str>,
        start: adapt::Start,
        burst: u32,
        max_in_flight: u32,
    ) -> Pacing {
        Pacing {
            name,
            pacer: Pacer::new(
                match start {
                    adapt::Start::Fixed(r) => r,
                    adapt::Start::Auto { remembered } => remembered.unwrap_or(adapt::INITIAL),
                },
                burst,
            ),
            pace: Mutex::new(Controller::new(start, Instant::now())),
            flying: AtomicU32::new(0),
            max_in_flight,
            paused_until: Mutex::new(None),
        }
    }

    /// The pace now (requests per second) and where it comes from.
    pub(super) fn pace(&self) -> (f64, Source) {
        let mut c = self.pace.lock().expect("pace lock");
        (c.rate(Instant::now()), c.source())
    }

    pub(super) fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().expect("pause lock");
        until.filter(|u| *u > Instant::now())
    }

    /// Holds every request for `d` (a 429 speaks for the whole lane, not one request).
    pub(super) fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().expect("pause lock");
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Starts from an empty burst allowance: see [`Pacer::drain`].
    pub(super) fn drain(&self) {
        self.pacer.drain();
    }

    /// Waits out any pause, then for the limiter's next cell. `moved` is told the new pace when
    /// the limiter follows the controller.
    pub(super) async fn admit(&self, moved: &(dyn Fn(f64, Source) + Sync)) {
        loop {
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            let (rate, source) = self.pace();
            if self.pacer.follow(rate) {
                moved(rate, source);
            }
            self.pacer.ready().await;
            // A 429 may have paused the lane while we waited for the cell; the cell is forfeit.
            if self.paused_until().is_none() {
                return;
            }
        }
    }

    /// Tells the pace what a request sent at `sent` was answered: every answer counts, a 429
    /// cuts the pace, and rate-limit headers rule it while the provider gives them. A window
    /// spent to nothing pauses the lane until its reset.
    pub(super) fn observed(&self, sent: Instant, answer: Option<&Answer>) {
        let Some(answer) = answer else {
            return;
        };
        let now = Instant::now();
        let pause = {
            let mut c = self.pace.lock().expect("pace lock");
            if answer.status == http::StatusCode::TOO_MANY_REQUESTS {
                let cut = c.throttled(now, sent);
                tracing::debug!(provider = %self.name, cut, "429");
            } else {
                c.answered(now);
            }
            answer
                .quota
                .as_ref()
                .and_then(|q| c.quota(now, q, self.flying.load(Ordering::Relaxed)))
        };
        if let Some(d) = pause {
            self.pause_for(d);
        }
    }

    /// Counts a request in flight until the guard drops.
    pub(super) fn fly(&self) -> Flying<'_> {
        self.flying.fetch_add(1, Ordering::Relaxed);
        Flying(&self.flying)
    }
}

/// A request in flight, counted until dropped.
pub(super) struct Flying<'a>(&'a AtomicU32);

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

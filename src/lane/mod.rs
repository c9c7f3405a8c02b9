//! A lane per provider entry: its pacing (limiter and pause), its in-flight bound, its circuit,
//! its preflight and member lists, and the attempt loop that takes one job from first request to
//! final record.
//!
//! - [`pacer`]: the limiter behind a type of our own; [`adapt`]: the pace found from the
//!   provider's answers (its headers, else its 429s); `pacing`: the two, the pause and the
//!   requests in flight.
//! - `request`: the one request step, paced, classified and judged against its budgets, that
//!   removals and list pages alike go through.
//! - `circuit`: consecutive credential refusals halt the lane.
//! - `organizations`: what the lane knows of each organization (proofs, protected ids, lists,
//!   refusals); `members`: the reads that fill it (preflight, lookups, whole lists).
//! - `attempt`: one job from its preflight to its final record; `record`: the records it builds.
//! - [`registry`]: the lanes of a run or a worker, by provider entry.
//!
//! A lane takes a job and returns its record; it knows nothing of reports, audit files or
//! acknowledgements (it tells a [`RequestLog`] of each request it sends). Lanes share nothing, so
//! a provider that is slow, rate-limited or down never slows another.

pub mod adapt;
mod attempt;
mod circuit;
mod members;
mod organizations;
pub mod pace_file;
pub mod pacer;
mod pacing;
mod record;
pub mod registry;
mod request;

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::job::{Job, LaneId, ProviderKind};
use crate::metrics::LaneMetrics;
use crate::outcome::Reason;
use crate::providers::Provider;
use crate::retry::Policy;
use crate::safety::Protected;
use crate::safety::hold::Hold;

use circuit::Circuit;
use organizations::Organizations;
pub use organizations::{LIST_CACHE_TTL, PROOF_TTL};
pub use pacer::Pacer;
use pacing::Pacing;
pub use registry::Lanes;
pub use request::LANE_PAUSE_ABOVE;

/// Told of every removal request a lane sends, as it is answered (the audit log implements it).
pub trait RequestLog: Send + Sync {
    /// Attempt `attempt` of `job` was answered `http_status` (None: no answer), with the
    /// provider's request id.
    fn request<'a>(
        &'a self,
        job: &'a Job,
        attempt: u32,
        http_status: Option<u16>,
        provider_request_id: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// One provider entry's lane: what ties its pace, its circuit, its organizations and its
/// provider together.
pub struct Lane {
    pub id: LaneId,
    pub name: Arc<str>,
    provider: Provider,
    pacing: Pacing,
    circuit: Circuit,
    policy: Policy,
    metrics: LaneMetrics,
    /// Where each removal request is told as it is answered (the audit log).
    requests: OnceLock<Arc<dyn RequestLog>>,
    hold: OnceLock<Hold>,
    /// `safety.protected`, matched again against ids found by lookup.
    protected: Arc<Protected>,
    orgs: Organizations,
    /// Why the whole entry may not be used (its preflight failed, or an answer said every
    /// request will fail alike), if so: the report's reason and why.
    entry_failed: Mutex<Option<(Reason, String)>>,
}

/// What a lane needs besides its provider.
pub struct LaneSettings {
    /// The configured rate (a ceiling) or `"auto"` with what was learned before.
    pub pace: adapt::Start,
    pub burst: u32,
    pub max_in_flight: u32,
    pub circuit_after: u32,
    pub policy: Policy,
    /// `safety.protected`: checked again against every id a lookup finds, and resolved to ids at
    /// preflight so that a row naming a protected person by id is refused too.
    pub protected: Arc<Protected>,
}

impl Lane {
    pub fn new(
        id: LaneId,
        name: Arc<str>,
        provider: Provider,
        s: LaneSettings,
        metrics: LaneMetrics,
    ) -> Lane {
        Lane {
            id,
            pacing: Pacing::new(name.clone(), s.pace, s.burst, s.max_in_flight),
            name,
            provider,
            circuit: Circuit {
                threshold: s.circuit_after.max(1),
                consecutive: AtomicU32::new(0),
                open: OnceLock::new(),
            },
            policy: s.policy,
            metrics,
            requests: OnceLock::new(),
            hold: OnceLock::new(),
            protected: s.protected,
            orgs: Organizations::default(),
            entry_failed: Mutex::new(None),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// Requests this lane may have outstanding at once (the queue prefetch in worker mode).
    pub fn max_in_flight(&self) -> u32 {
        self.pacing.max_in_flight
    }

    /// Why the lane stopped sending, if it did: its circuit opened, or its preflight failed.
    pub fn halted(&self) -> Option<String> {
        self.halt().map(|(_, reason)| reason)
    }

    /// Marks the whole entry unusable (its own organization's preflight failed in the worker):
    /// nothing more is sent, and readiness says why.
    pub fn fail_entry(&self, reason: String) {
        self.halt_entry(Reason::PreflightFailed, reason);
    }

    /// Halts the whole entry with a report code and why: nothing more is sent.
    fn halt_entry(&self, code: Reason, reason: String) {
        let mut failed = self.entry_failed.lock().expect("entry_failed lock");
        if failed.is_none() {
            tracing::error!(provider = %self.name, reason = %reason, "lane halted");
            *failed = Some((code, reason));
        }
    }

    /// Forgets every preflight result, so the next job (or [`Lane::preflight`]) proves the entry
    /// again: for a worker that reconnected, perhaps after the provider or its config was fixed.
    /// An open circuit stays open.
    pub fn reprove(&self) {
        self.orgs.forget_proofs();
        *self.entry_failed.lock().expect("entry_failed lock") = None;
    }

    /// The report code and reason of a halt.
    fn halt(&self) -> Option<(Reason, String)> {
        if let Some(halt) = self.entry_failed.lock().expect("entry_failed lock").clone() {
            return Some(halt);
        }
        self.circuit
            .reason()
            .map(|r| (Reason::CircuitOpen, r.to_owned()))
    }

    /// From now on, every removal request this lane sends is told to `log` as it is answered.
    pub fn log_requests(&self, log: Arc<dyn RequestLog>) {
        let _ = self.requests.set(log);
    }

    /// From now on, removals count against a rolling window (worker mode).
    pub fn attach_hold(&self, hold: Hold) {
        let _ = self.hold.set(hold);
    }

    pub fn hold(&self) -> Option<&Hold> {
        self.hold.get()
    }

    /// Requests sent, retries scheduled and 429s answered, for the closing table: read from the
    /// lane's Prometheus counters, the one count of them.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.metrics.requests_sent(),
            self.metrics.retries_scheduled(),
            self.metrics.throttled(),
        )
    }

    /// The pace now (requests per second) and where it comes from.
    pub fn pace(&self) -> (f64, adapt::Source) {
        self.pacing.pace()
    }

    /// Brings the pause and circuit gauges up to date (called before each scrape).
    pub fn refresh_gauges(&self) {
        let (rate, source) = self.pace();
        self.metrics.rate.set(rate);
        for s in adapt::Source::ALL {
            self.metrics.set_rate_source(s.as_str(), s == source);
        }
        self.metrics
            .paused
            .set(self.pacing.paused_until().is_some() as i64);
        self.metrics
            .circuit_open
            .set(self.halted().is_some() as i64);
        self.metrics
            .held
            .set(self.hold().is_some_and(|h| h.is_held()) as i64);
    }

    /// Starts from an empty burst allowance: see [`Pacer::drain`].
    pub fn start_cold(&self) {
        self.pacing.drain();
    }

    /// Holds every request of this lane for `d` (a 429 speaks for the whole lane, not one job).
    pub fn pause_for(&self, d: Duration) {
        self.pacing.pause_for(d);
    }

    /// Waits for the pace to admit one request (see `Pacing::admit`), counting the wait.
    async fn admit(&self) {
        let start = Instant::now();
        let moved = |rate: f64, source: adapt::Source| {
            self.metrics.rate.set(rate);
            tracing::debug!(provider = %self.name, rate, source = source.as_str(), "pace");
        };
        self.pacing.admit(&moved).await;
        self.metrics.waited(start.elapsed());
    }
}

//! A lane per provider entry: its pacing (limiter and pause), its in-flight bound, its circuit,
//! its preflight and member lists, and the attempt loop that takes one job from first request to
//! final record.
//!
//! - [`pacer`]: the limiter behind a type of our own.
//! - [`adapt`]: the pace found from the provider's answers (its headers, else its 429s).
//! - `circuit`: consecutive credential refusals halt the lane.
//! - `members`: preflight, protected ids, email lookups, whole lists, refused organizations.
//! - `attempt`: the attempt loop, classification and budgets, the job's record.
//!
//! A lane takes a job and returns its record; it knows nothing of reports, audit files or
//! acknowledgements (it tells a [`RequestLog`] of each request it sends). Lanes share nothing, so
//! a provider that is slow, rate-limited or down never slows another.

pub mod adapt;
mod attempt;
mod circuit;
mod members;
pub mod pacer;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::hold::Hold;
use crate::job::{Job, LaneId, ProviderKind};
use crate::metrics::LaneMetrics;
use crate::outcome::Reason;
use crate::providers::Provider;
use crate::retry::Policy;
use crate::safety::Protected;

use circuit::Circuit;
use members::CachedList;
pub use members::LIST_CACHE_TTL;
pub use pacer::Pacer;

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

/// What the preflight of one organization (or of the entry, where the key picks it) found.
#[derive(Clone)]
enum Proof {
    /// The base URL, credential and permission work.
    Proven,
    /// Nothing may be sent there, and why.
    Failed(String),
}

/// A preflight and when it began.
type ProofSlot = (Instant, Arc<tokio::sync::OnceCell<Proof>>);

/// How long a proven preflight stands before the next job proves the organization again: its
/// whole list, read anew, finds who became protected (or the owner) since.
pub const PROOF_TTL: Duration = Duration::from_secs(3600);

/// One organization's whole-list reads: one at a time, and no removal there while one is read.
#[derive(Default)]
struct Reading {
    one: tokio::sync::Mutex<()>,
    /// Removals hold it shared while they are admitted and sent; a whole list read holds it
    /// alone, so no removal shifts its pages while it is read.
    quiet: tokio::sync::RwLock<()>,
}

pub struct Lane {
    pub id: LaneId,
    pub name: Arc<str>,
    provider: Provider,
    pacer: Pacer,
    /// What the pacer's rate should be, from the provider's answers.
    pace: Mutex<adapt::Controller>,
    /// Requests sent and not yet answered.
    flying: AtomicU32,
    max_in_flight: u32,
    paused_until: Mutex<Option<Instant>>,
    circuit: Circuit,
    policy: Policy,
    metrics: LaneMetrics,
    /// Where each removal request is told as it is answered (the audit log).
    requests: OnceLock<Arc<dyn RequestLog>>,
    hold: OnceLock<Hold>,
    /// `safety.protected`, matched again against ids found by lookup.
    protected: Arc<Protected>,
    /// The preflight of each organization ("" where the key picks it), and when it began: run
    /// by the first job (or caller) that needs it, again once a proof is older than
    /// [`PROOF_TTL`]; every other waits for its result.
    proofs: Mutex<HashMap<String, ProofSlot>>,
    /// Ids never to be removed, found in each organization's whole lists (lowercase id -> why):
    /// every read adds to them, none takes away.
    protected_ids: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Why the whole entry may not be used (its preflight failed, or an answer said every
    /// request will fail alike), if so: the report code and the reason.
    entry_failed: Mutex<Option<(Reason, String)>>,
    /// Organizations that refused us (a 403 scoped to them): their jobs are not sent.
    refused: Mutex<HashMap<String, String>>,
    /// Whole member lists by organization, for lookups and absence checks.
    lists: Mutex<HashMap<String, CachedList>>,
    /// Each organization's whole-list reads (see [`Reading`]).
    reading: Mutex<HashMap<String, Arc<Reading>>>,
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
            name,
            provider,
            pacer: Pacer::new(
                match s.pace {
                    adapt::Start::Fixed(r) => r,
                    adapt::Start::Auto { remembered } => remembered.unwrap_or(adapt::INITIAL),
                },
                s.burst,
            ),
            pace: Mutex::new(adapt::Controller::new(s.pace, Instant::now())),
            flying: AtomicU32::new(0),
            max_in_flight: s.max_in_flight,
            paused_until: Mutex::new(None),
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
            proofs: Default::default(),
            protected_ids: Default::default(),
            entry_failed: Mutex::new(None),
            refused: Default::default(),
            lists: Default::default(),
            reading: Default::default(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// Requests this lane may have outstanding at once (the queue prefetch in worker mode).
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
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
        self.proofs.lock().expect("proofs lock").clear();
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

    fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().expect("pause lock");
        until.filter(|u| *u > Instant::now())
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
        let mut c = self.pace.lock().expect("pace lock");
        (c.rate(Instant::now()), c.source())
    }

    /// Moves the pacer to the controller's pace (when it moved enough to matter).
    fn follow_pace(&self) {
        let (rate, source) = {
            let mut c = self.pace.lock().expect("pace lock");
            (c.rate(Instant::now()), c.source())
        };
        if self.pacer.follow(rate) {
            self.metrics.rate.set(rate);
            tracing::debug!(provider = %self.name, rate, source = source.as_str(), "pace");
        }
    }

    /// Tells the pace what a request sent at `sent` was answered: every answer counts, a 429
    /// cuts the pace, and rate-limit headers rule it while the provider gives them. A window
    /// spent to nothing pauses the lane until its reset.
    fn observed(&self, sent: Instant, answer: Option<&crate::providers::http::Answer>) {
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
            answer.quota.as_ref().and_then(|q| {
                c.quota(
                    now,
                    q,
                    self.flying.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
        };
        if let Some(d) = pause {
            self.pause_for(d);
        }
    }

    /// Counts a request in flight until the guard drops.
    fn fly(&self) -> Flying<'_> {
        self.flying
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Flying(&self.flying)
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
            .set(self.paused_until().is_some() as i64);
        self.metrics
            .circuit_open
            .set(self.halted().is_some() as i64);
        self.metrics
            .held
            .set(self.hold().is_some_and(|h| h.is_held()) as i64);
    }

    /// Starts from an empty burst allowance: see [`Pacer::drain`].
    pub fn start_cold(&self) {
        self.pacer.drain();
    }

    /// Holds every request of this lane for `d` (a 429 speaks for the whole lane, not one job).
    pub fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().expect("pause lock");
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Waits out any pause, then for the limiter's next cell.
    async fn admit(&self) {
        let start = Instant::now();
        self.admit_inner().await;
        self.metrics.waited(start.elapsed());
    }

    async fn admit_inner(&self) {
        loop {
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            self.follow_pace();
            self.pacer.ready().await;
            // A 429 may have paused the lane while we waited for the cell; the cell is forfeit.
            if self.paused_until().is_none() {
                return;
            }
        }
    }
}

/// A request in flight, counted until dropped.
struct Flying<'a>(&'a AtomicU32);

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

//! A lane per provider entry: its pacing (limiter and pause), its in-flight bound, its circuit,
//! and the attempt loop that takes one job from first request to final record.
//!
//! Lanes share nothing, so a provider that is slow, rate-limited or down never slows another.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::hold::Hold;
use crate::job::{Job, LaneId, Protected, ProviderKind, Subject, Target};
use crate::metrics::LaneMetrics;
use crate::providers::lookup::{Cursor, Member, Resolution, resolve};
use crate::providers::{Answer, Generation, Provider, Transport};
use crate::report::{Absence, ErrorField, Outcome, Record, Sink, Timestamp};
use crate::retry::{Decision, FailReason, OnConflict, Policy, RetryReason, classify};

/// The rate limiter behind a type of our own, so that the rate can change while jobs flow (pacing
/// will adapt to the provider's answers) without the lane knowing how.
///
/// It never runs at the provider's exact limit: a request's trip to the provider varies by some
/// milliseconds, and a limiter pacing at exactly the provider's rate and burst has no room left for
/// that, so a request delayed on its way (and the one after it, on time) reach the provider too
/// close together and draw a 429, which costs a whole `Retry-After` pause. So the pacer runs
/// [`HEADROOM`] under `rate_per_second` and keeps half of `burst` in reserve: what it sends stays
/// within the provider's limits even when requests arrive up to half a burst out of step.
pub struct Pacer {
    limiter: ArcSwap<DefaultDirectRateLimiter>,
}

/// The share of the configured rate left unused, to absorb jitter between requests.
const HEADROOM: f64 = 0.01;

impl Pacer {
    /// Paces under `rate` requests per second (fractions allowed) and `burst` (see [`Pacer`]).
    pub fn new(rate: f64, burst: u32) -> Pacer {
        Pacer {
            limiter: ArcSwap::from_pointee(Self::limiter(rate, burst)),
        }
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
    }

    /// Waits for the next request's turn.
    pub async fn ready(&self) {
        self.limiter.load_full().until_ready().await;
    }
}

/// Counts consecutive credential failures; at the threshold it opens, for good, with a reason.
struct Circuit {
    threshold: u32,
    consecutive: AtomicU32,
    open: OnceLock<String>,
}

impl Circuit {
    fn ok(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    fn credential_failure(&self, what: &str) {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let reason = format!(
                "circuit open after {n} credential refusals in a row (last: {what}): check the credential and its scope"
            );
            if self.open.set(reason.clone()).is_ok() {
                tracing::error!(reason = %reason, "lane halted");
            }
        }
    }

    fn reason(&self) -> Option<&str> {
        self.open.get().map(String::as_str)
    }
}

/// The retry budgets of one request sequence (a job's removal, one page of a list).
struct Budget {
    first: Instant,
    /// The backoff schedule, made at the first backoff: most jobs never need one.
    schedule: Option<Box<dyn Iterator<Item = Duration> + Send>>,
    transient: u32,
    conflicts: u32,
    rate_waited: Duration,
    /// New tokens fetched for this sequence after 401s.
    refreshes: u32,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            first: Instant::now(),
            schedule: None,
            transient: 0,
            conflicts: 0,
            rate_waited: Duration::ZERO,
            refreshes: 0,
        }
    }
}

/// How many new tokens one request sequence may fetch after 401s. A token that expires or is
/// revoked mid-run costs one; a fresh token refused again and again is a credential problem.
const MAX_TOKEN_REFRESHES: u32 = 4;

/// After one answer: wait and try again, or the final decision.
enum Verdict {
    Retry(Duration),
    Final(Decision),
}

/// A read (list, search, probe) that ended without a usable answer.
struct ReadFailure {
    reason: FailReason,
    /// What the provider last answered, or why nothing came.
    last: Option<Result<Answer, Transport>>,
    /// Set when the lane halted while the read waited: why.
    halted: Option<String>,
}

/// What the preflight of one organization (or of the entry, where the key picks it) found.
#[derive(Clone)]
enum Proof {
    /// The base URL, credential and permission work. `protected`: ids of protected accounts
    /// found there (lowercase id -> the pattern they matched).
    Proven {
        protected: Arc<HashMap<String, String>>,
    },
    /// Nothing may be sent there, and why.
    Failed(String),
}

/// What a failed preflight read says, for a person fixing the config: which key to check.
fn preflight_words(f: &ReadFailure) -> String {
    if let Some(reason) = &f.halted {
        return reason.clone();
    }
    let words = |a: &Answer| {
        a.error
            .as_ref()
            .map(|e| match &e.code {
                Some(c) => format!("{c}: {}", e.message),
                None => e.message.clone(),
            })
            .unwrap_or_default()
    };
    match &f.last {
        Some(Ok(a)) if a.status == StatusCode::NOT_FOUND => format!(
            "the base URL answers 404 to the member list: check base_url (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status == StatusCode::UNAUTHORIZED => format!(
            "the credential is refused (401): check it (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status == StatusCode::FORBIDDEN => format!(
            "the credential may not read the member list here (403): check its scope or role (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status.is_success() => format!(
            "the member list answer is not the documented one: check base_url ({})",
            words(a)
        ),
        Some(Ok(a)) => format!(
            "the member list answers {} ({}): {}",
            a.status.as_u16(),
            f.reason.as_str(),
            words(a)
        ),
        Some(Err(t @ Transport::TooLarge(_))) => t.to_string(),
        Some(Err(t)) => format!("cannot reach the provider ({}): {t}", f.reason.as_str()),
        None => f.reason.as_str().to_owned(),
    }
}

/// A whole member list, when its read began, and the list.
type CachedList = (Instant, Arc<Vec<Member>>);

/// How long a whole member list serves lookups before it is read again.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(60);

/// The status label of a request's metric: the HTTP code, or why none came.
fn status_label<'a>(result: &Result<&'a Answer, &Transport>) -> &'a str {
    match result {
        Ok(a) => a.status.as_str(),
        Err(Transport::Timeout(_)) => "timeout",
        Err(Transport::Connect(_)) => "connect",
        Err(Transport::Other(_)) => "error",
        Err(Transport::Tls(_)) => "tls",
        Err(Transport::TooLarge(_)) => "too_large",
    }
}

/// Counters a lane keeps for its summary.
#[derive(Debug, Default)]
pub struct LaneStats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
}

pub struct Lane {
    pub id: LaneId,
    pub name: Arc<str>,
    provider: Provider,
    pacer: Pacer,
    max_in_flight: u32,
    paused_until: Mutex<Option<Instant>>,
    circuit: Circuit,
    policy: Policy,
    pub stats: LaneStats,
    metrics: LaneMetrics,
    audit: OnceLock<Audit>,
    audit_failed: std::sync::atomic::AtomicBool,
    hold: OnceLock<Hold>,
    /// `safety.protected`, matched again against ids found by lookup.
    protected: Arc<Protected>,
    /// The preflight of each organization ("" where the key picks it): run once, by the first
    /// job (or caller) that needs it; every other waits for its result.
    proofs: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Proof>>>>,
    /// Why the whole entry may not be used (its preflight failed), if so.
    entry_failed: Mutex<Option<String>>,
    /// Organizations that refused us (a 403 scoped to them): their jobs are not sent.
    refused: Mutex<HashMap<String, String>>,
    /// Whole member lists by organization, for lookups and absence checks.
    lists: Mutex<HashMap<String, CachedList>>,
    /// Held while one job reads a whole list, so the others wait for it instead of each reading.
    list_read: tokio::sync::Mutex<()>,
}

/// What a lane needs besides its provider.
pub struct LaneSettings {
    pub rate_per_second: f64,
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
            pacer: Pacer::new(s.rate_per_second, s.burst),
            max_in_flight: s.max_in_flight,
            paused_until: Mutex::new(None),
            circuit: Circuit {
                threshold: s.circuit_after.max(1),
                consecutive: AtomicU32::new(0),
                open: OnceLock::new(),
            },
            policy: s.policy,
            stats: LaneStats::default(),
            metrics,
            audit: OnceLock::new(),
            audit_failed: Default::default(),
            hold: OnceLock::new(),
            protected: s.protected,
            proofs: Default::default(),
            entry_failed: Mutex::new(None),
            refused: Default::default(),
            lists: Default::default(),
            list_read: Default::default(),
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
        self.entry_failed
            .lock()
            .expect("entry_failed lock")
            .get_or_insert(reason);
    }

    /// Forgets every preflight result, so the next job (or [`Lane::preflight`]) proves the entry
    /// again: for a worker that reconnected, perhaps after the provider or its config was fixed.
    /// An open circuit stays open.
    pub fn reprove(&self) {
        self.proofs.lock().expect("proofs lock").clear();
        *self.entry_failed.lock().expect("entry_failed lock") = None;
    }

    /// The report code and reason of a halt.
    fn halt(&self) -> Option<(&'static str, String)> {
        if let Some(r) = self.entry_failed.lock().expect("entry_failed lock").clone() {
            return Some(("preflight_failed", r));
        }
        self.circuit
            .reason()
            .map(|r| ("circuit_open", r.to_owned()))
    }

    fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().expect("pause lock");
        until.filter(|u| *u > Instant::now())
    }

    /// From now on, every request and final outcome of this lane goes to the audit log.
    pub fn attach_audit(&self, audit: Audit) {
        let _ = self.audit.set(audit);
    }

    /// From now on, removals count against a rolling window (worker mode).
    pub fn attach_hold(&self, hold: Hold) {
        let _ = self.hold.set(hold);
    }

    pub fn hold(&self) -> Option<&Hold> {
        self.hold.get()
    }

    /// False once an outcome could not be made durable in the audit log: a door must not
    /// acknowledge, and no further removal should be sent.
    pub fn audit_ok(&self) -> bool {
        !self.audit_failed.load(Ordering::Relaxed)
    }

    /// Brings the pause and circuit gauges up to date (called before each scrape).
    pub fn refresh_gauges(&self) {
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
            self.pacer.ready().await;
            // A 429 may have paused the lane while we waited for the cell; the cell is forfeit.
            if self.paused_until().is_none() {
                return;
            }
        }
    }

    /// Runs one job to its final record: preflight, lookup, pacing, the request, classification,
    /// retries.
    pub async fn execute(&self, job: &Job) -> Record {
        self.metrics.in_flight.inc();
        let record = self.attempts(job).await;
        self.metrics.in_flight.dec();
        // The outcome is on disk in the audit log before anyone can acknowledge the job.
        if let Some(audit) = self.audit.get() {
            if let Err(e) = audit.outcome(&record, Some(job)).await {
                tracing::error!(error = %e, job_id = %job.id, "cannot write the audit log");
                self.audit_failed.store(true, Ordering::Relaxed);
            }
        }
        record
    }

    /// The key of an organization in the lane's maps: "" where the API key picks it.
    fn org_key(&self, organization: Option<&str>) -> String {
        organization.unwrap_or("").to_ascii_lowercase()
    }

    /// Proves the entry (where the key picks the organization) or one organization before any
    /// removal is sent there: one read-only request, then the protected accounts resolved to ids.
    /// Runs once per organization; `Err` says why nothing may be sent there.
    pub async fn preflight(&self, organization: Option<&str>) -> Result<(), String> {
        self.proof(organization).await.map(|_| ())
    }

    async fn proof(
        &self,
        organization: Option<&str>,
    ) -> Result<Arc<HashMap<String, String>>, String> {
        let cell = {
            let mut proofs = self.proofs.lock().expect("proofs lock");
            proofs
                .entry(self.org_key(organization))
                .or_default()
                .clone()
        };
        let proof = cell
            .get_or_init(|| async {
                let proof = self.prove(organization).await;
                if let Proof::Failed(reason) = &proof {
                    tracing::error!(provider = %self.name, organization = organization.unwrap_or(""), reason = %reason, "preflight failed: nothing is sent there");
                }
                proof
            })
            .await;
        match proof {
            Proof::Proven { protected } => Ok(protected.clone()),
            Proof::Failed(reason) => Err(reason.clone()),
        }
    }

    async fn prove(&self, organization: Option<&str>) -> Proof {
        let place = match organization {
            Some(o) => format!("provider entry `{}`, organization {o}", self.name),
            None => format!("provider entry `{}`", self.name),
        };
        let mut requests = 0;
        // Where the list comes whole anyway (Aerospike's paging is "currently disabled", a
        // Cognee tenant's list has none), the probe is the whole list, kept for the lookups.
        let probe = if self.provider.whole_list() && self.kind() != ProviderKind::Factory {
            self.whole_list(organization, None, &mut requests)
                .await
                .map(|_| ())
        } else {
            self.read_pages(organization, None, true, &mut requests)
                .await
                .map(|_| ())
        };
        if let Err(f) = probe {
            let reason = format!("{place}: {}", preflight_words(&f));
            // A refused credential, or an entry whose key picks the organization: the whole entry
            // is unusable. A 403 or 404 for one named organization concerns that one only.
            let entry_wide = organization.is_none()
                || matches!(&f.last, Some(Ok(a)) if a.status == StatusCode::UNAUTHORIZED)
                || f.halted.is_some();
            if entry_wide {
                self.fail_entry(reason.clone());
            }
            return Proof::Failed(reason);
        }
        match self.protected_ids(organization, &mut requests).await {
            Ok(protected) => Proof::Proven {
                protected: Arc::new(protected),
            },
            Err(e) => Proof::Failed(format!(
                "{place}: cannot resolve the protected accounts to ids, so none of its removals may be sent: {}",
                preflight_words(&e)
            )),
        }
    }

    /// The ids of `safety.protected` accounts in this organization: every member of a whole list
    /// whose email a pattern matches; for a searching API, each protected email that is a plain
    /// address, looked up (a glob cannot be searched for: rows naming ids are then checked
    /// against the patterns as written, and a warning says so).
    async fn protected_ids(
        &self,
        organization: Option<&str>,
        requests: &mut u32,
    ) -> Result<HashMap<String, String>, ReadFailure> {
        let mut out = HashMap::new();
        let emails: Vec<&str> = self
            .protected
            .patterns()
            .iter()
            .map(|p| p.trim())
            .filter(|p| p.contains('@'))
            .collect();
        if emails.is_empty() || self.kind() == ProviderKind::Factory {
            // Factory takes emails, matched against the patterns at validation.
            return Ok(out);
        }
        if self.provider.whole_list() {
            let members = self.whole_list(organization, None, requests).await?;
            for m in members.iter() {
                if let Some(pattern) = self.protected.matches(&m.email) {
                    out.insert(m.id.to_ascii_lowercase(), pattern.to_owned());
                }
            }
            return Ok(out);
        }
        for email in emails {
            if email.contains(['*', '?', '[']) {
                tracing::warn!(provider = %self.name, pattern = email, "a protected email pattern cannot be searched for at this provider: rows naming its members by id are checked against the patterns as written only");
                continue;
            }
            let members = self
                .read_pages(organization, Some(email), false, requests)
                .await?;
            // Every member with exactly this email: two of them would both be protected.
            for m in members
                .iter()
                .filter(|m| m.email.trim().eq_ignore_ascii_case(email))
            {
                out.insert(m.id.to_ascii_lowercase(), email.to_owned());
            }
        }
        Ok(out)
    }

    /// Whether `user` (an id in this provider's format, or an email when `by_email`) is still a
    /// member of `organization`, read through this lane's pacing and retries: for `offboard
    /// verify`. Answers how it was checked. Read-only: nothing is removed.
    pub async fn check_member(
        &self,
        organization: Option<&str>,
        user: &str,
        by_email: bool,
    ) -> Result<(bool, &'static str), String> {
        let mut requests = 0;
        let words = |f: ReadFailure| preflight_words(&f);
        if by_email && !self.provider.whole_list() {
            let members = self
                .read_pages(organization, Some(user), false, &mut requests)
                .await
                .map_err(words)?;
            let found = !matches!(resolve(user, members.iter()), Resolution::NoMember);
            return Ok((found, "search"));
        }
        let members = self
            .whole_list(organization, None, &mut requests)
            .await
            .map_err(words)?;
        let found = members.iter().any(|m| {
            if by_email {
                m.email.trim().eq_ignore_ascii_case(user.trim())
            } else {
                m.id.eq_ignore_ascii_case(user.trim())
            }
        });
        Ok((found, "member_list"))
    }

    /// The whole member list of an organization, read at or after `not_before` (a list read
    /// before an answer cannot confirm it), shared by concurrent jobs and kept a while.
    async fn whole_list(
        &self,
        organization: Option<&str>,
        not_before: Option<Instant>,
        requests: &mut u32,
    ) -> Result<Arc<Vec<Member>>, ReadFailure> {
        let key = self.org_key(organization);
        let _one_read = self.list_read.lock().await;
        let usable = |(at, _): &CachedList| {
            at.elapsed() < LIST_CACHE_TTL && not_before.is_none_or(|t| *at >= t)
        };
        if let Some((_, list)) = self
            .lists
            .lock()
            .expect("lists lock")
            .get(&key)
            .filter(|c| usable(c))
        {
            return Ok(list.clone());
        }
        let started = Instant::now();
        let list = Arc::new(self.read_pages(organization, None, false, requests).await?);
        self.lists
            .lock()
            .expect("lists lock")
            .insert(key, (started, list.clone()));
        Ok(list)
    }

    /// Reads every page of a list (or of the search for `email`), or only the probe, each page
    /// paced and retried like any request. Counts each request in `requests`.
    async fn read_pages(
        &self,
        organization: Option<&str>,
        email: Option<&str>,
        probe: bool,
        requests: &mut u32,
    ) -> Result<Vec<Member>, ReadFailure> {
        let operation = if probe { "preflight" } else { "lookup" };
        let mut members = Vec::new();
        let mut at = Cursor::default();
        let mut budget = Budget::new();
        let mut last: Option<Result<Answer, Transport>> = None;
        loop {
            if let Some((_, reason)) = self.halt() {
                return Err(ReadFailure {
                    reason: FailReason::LaneHalted,
                    last,
                    halted: Some(reason),
                });
            }
            let prepared = if probe {
                self.provider.prepare_probe(organization).await
            } else {
                self.provider.prepare_list(organization, email, &at).await
            };
            let (result, generation) = match prepared {
                Err(result) => (result, 0),
                Ok(p) => {
                    self.admit().await;
                    *requests += 1;
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    let start = Instant::now();
                    let sent = self.provider.send_list(p.request, &at).await;
                    self.metrics.request(
                        operation,
                        status_label(&sent.as_ref().map(|(a, _)| a)),
                        start.elapsed(),
                    );
                    match sent {
                        Ok((answer, Some(page))) => {
                            self.circuit.ok();
                            members.extend(page.members);
                            match page.next {
                                Some(next) if !probe && next.page < crate::providers::MAX_PAGES => {
                                    at = next;
                                    budget = Budget::new();
                                    last = Some(Ok(answer));
                                    continue;
                                }
                                _ => return Ok(members),
                            }
                        }
                        Ok((answer, None)) => (Ok(answer), p.generation),
                        Err(t) => (Err(t), p.generation),
                    }
                }
            };
            match self.judge(&mut budget, &result, generation, organization, None) {
                Verdict::Retry(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    last = Some(result);
                }
                Verdict::Final(Decision::Fail { reason }) => {
                    return Err(ReadFailure {
                        reason,
                        last: Some(result),
                        halted: None,
                    });
                }
                // A list answer never reads as a removal; an unreadable 2xx is Unexpected.
                Verdict::Final(_) => {
                    return Err(ReadFailure {
                        reason: FailReason::Unexpected,
                        last: Some(result),
                        halted: None,
                    });
                }
            }
        }
    }

    async fn attempts(&self, job: &Job) -> Record {
        let started = Timestamp::now();
        let mut attempts = 0u32;
        let org = job.subject.organization();
        let org = org.as_deref();
        let protected = match self.proof(org).await {
            Ok(p) => p,
            // The reason names the entry, and the organization when only that one failed.
            Err(reason) => {
                return self.not_sent(
                    job,
                    started,
                    Outcome::NotAttempted,
                    "preflight_failed",
                    reason,
                );
            }
        };
        if let Some(reason) = self.organization_refused(org) {
            return self.not_sent(
                job,
                started,
                Outcome::NotAttempted,
                "organization_refused",
                reason,
            );
        }
        let target: Cow<'_, Target> = match &job.subject {
            Subject::Known(t) => Cow::Borrowed(t),
            Subject::ByEmail { email, .. } => {
                match self
                    .look_up(job, email.as_str(), started, &mut attempts)
                    .await
                {
                    Ok(t) => Cow::Owned(t),
                    Err(record) => return *record,
                }
            }
        };
        let user = target.user();
        let pattern = self
            .protected
            .matches(&user)
            .map(str::to_owned)
            .or_else(|| protected.get(&user.to_ascii_lowercase()).cloned());
        if let Some(pattern) = pattern {
            tracing::warn!(job_id = %job.id, provider = %self.name, "protected account: skipped");
            let mut r = self.not_sent(
                job,
                started,
                Outcome::SkippedProtected,
                "protected",
                format!(
                    "protected account (matches `{pattern}` in safety.protected): never removed"
                ),
            );
            r.attempts = attempts;
            r.resolved_user = matches!(job.subject, Subject::ByEmail { .. }).then_some(user);
            return r;
        }
        let mut record = self.remove(job, &target, org, started, attempts).await;
        if matches!(job.subject, Subject::ByEmail { .. }) {
            record.resolved_user = Some(user);
        }
        record
    }

    /// Finds the id of the member with exactly this email: a whole list (shared, cached) or the
    /// provider's search. `Err` holds the job's final record (no member, ambiguous, failed).
    async fn look_up(
        &self,
        job: &Job,
        email: &str,
        started: Timestamp,
        attempts: &mut u32,
    ) -> Result<Target, Box<Record>> {
        let org = job.subject.organization();
        let org = org.as_deref();
        let read = if self.provider.whole_list() {
            self.whole_list(org, None, attempts).await
        } else {
            self.read_pages(org, Some(email), false, attempts)
                .await
                .map(Arc::new)
        };
        let members = match read {
            Ok(m) => m,
            Err(f) => return Err(Box::new(self.read_failed(job, started, *attempts, f))),
        };
        let done = |outcome, code: &'static str, message: String| {
            let mut r = self.not_sent(job, started, outcome, code, message);
            r.attempts = *attempts;
            Box::new(r)
        };
        match resolve(email, members.iter()) {
            Resolution::Found(id) => job.subject.resolve(&id).map_err(|e| {
                done(
                    Outcome::Failed,
                    "bad_lookup",
                    format!("the search answered an id we cannot use: {e}"),
                )
            }),
            Resolution::NoMember => {
                let mut r = done(
                    Outcome::AlreadyAbsent,
                    "no_member",
                    "no member with this email in the provider's member list".into(),
                );
                r.reason = None;
                r.absence = Some(Absence::NoMember);
                Err(r)
            }
            Resolution::Ambiguous(ids) => Err(done(
                Outcome::Failed,
                "ambiguous",
                format!(
                    "{} members have exactly this email; nothing was removed",
                    ids.len()
                ),
            )),
        }
    }

    /// The removal, retried within the budgets, to its final record.
    async fn remove(
        &self,
        job: &Job,
        target: &Target,
        org: Option<&str>,
        started: Timestamp,
        mut attempts: u32,
    ) -> Record {
        let mut budget = Budget::new();
        let mut last: Option<Result<Answer, Transport>> = None;
        loop {
            if let Some(reason) = self.organization_refused(org) {
                return self.halted_record(
                    job,
                    started,
                    attempts,
                    last.as_ref(),
                    "organization_refused",
                    reason,
                );
            }
            let (result, generation) = match self.provider.prepare(target).await {
                Ok(p) => {
                    // Admission is the last step before the wire, so requests leave at the pace
                    // the limiter allows.
                    self.admit().await;
                    if let Some((code, reason)) = self.halt() {
                        return self.halted_record(
                            job,
                            started,
                            attempts,
                            last.as_ref(),
                            code,
                            reason,
                        );
                    }
                    attempts += 1;
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    let start = Instant::now();
                    let result = self.provider.send(p.request).await;
                    self.metrics
                        .request("remove", status_label(&result.as_ref()), start.elapsed());
                    if let Some(audit) = self.audit.get() {
                        let (code, id) = match &result {
                            Ok(a) => (Some(a.status.as_u16()), a.request_id.as_deref()),
                            Err(_) => (None, None),
                        };
                        audit.request(job, attempts, code, id).await;
                    }
                    (result, p.generation)
                }
                // The token endpoint refused or was silent: nothing went to the removal endpoint.
                Err(result) => (result, 0),
            };
            let decision = match self.judge(&mut budget, &result, generation, org, Some(&job.id)) {
                Verdict::Retry(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    last = Some(result);
                    continue;
                }
                Verdict::Final(d) => d,
            };
            let answered = Instant::now();
            return match decision {
                Decision::Removed => self.finished(
                    job,
                    started,
                    attempts,
                    Outcome::Removed,
                    None,
                    Some(&result),
                ),
                Decision::AlreadyAbsent => {
                    self.absent(job, started, attempts, &result, Absence::Provider404)
                }
                Decision::AbsentUnconfirmed => {
                    self.confirm_absent(job, target, started, attempts, (result, answered))
                        .await
                }
                Decision::Fail { reason } => self.finished(
                    job,
                    started,
                    attempts,
                    Outcome::Failed,
                    Some(reason.as_str()),
                    Some(&result),
                ),
                Decision::Retry { .. } => unreachable!("judge turns retries into waits"),
            };
        }
    }

    /// A 404 the page does not document: believed only if the member list, read after it, no
    /// longer shows the member. Otherwise the job failed, with the provider's words.
    /// `answer`: the 404 and when it came.
    async fn confirm_absent(
        &self,
        job: &Job,
        target: &Target,
        started: Timestamp,
        mut attempts: u32,
        answer: (Result<Answer, Transport>, Instant),
    ) -> Record {
        let (result, answered) = answer;
        let org = target.organization();
        let list = self
            .whole_list(org.as_deref(), Some(answered), &mut attempts)
            .await;
        let user = target.user();
        match list {
            Ok(members) if !members.iter().any(|m| m.id.eq_ignore_ascii_case(&user)) => {
                self.absent(job, started, attempts, &result, Absence::MemberList)
            }
            Ok(_) => {
                let mut r = self.finished(
                    job,
                    started,
                    attempts,
                    Outcome::Failed,
                    Some("not_found_but_listed"),
                    Some(&result),
                );
                let words = r.error.take().map(|e| e.message).unwrap_or_default();
                r.error = Some(ErrorField {
                    code: "not_found_but_listed".into(),
                    message: format!(
                        "the removal answered 404 ({words}), but the member list still shows this member: check base_url"
                    ),
                });
                r
            }
            Err(f) => {
                let mut r = self.read_failed(job, started, attempts, f);
                let words = r.error.take().map(|e| e.message).unwrap_or_default();
                r.error = Some(ErrorField {
                    code: r.reason.unwrap_or("failed").to_owned(),
                    message: format!(
                        "the removal answered 404, which this provider does not document, and the member list that would confirm it could not be read: {words}"
                    ),
                });
                r
            }
        }
    }

    /// Classifies one answer and applies the budgets: how long to wait before the next attempt,
    /// or the final decision. Credential failures count toward the entry's circuit; a refusal
    /// scoped to `org` closes that organization only.
    fn judge(
        &self,
        budget: &mut Budget,
        result: &Result<Answer, Transport>,
        generation: Generation,
        org: Option<&str>,
        job_id: Option<&str>,
    ) -> Verdict {
        let decision = classify(
            result,
            self.provider.refreshable() && budget.refreshes < MAX_TOKEN_REFRESHES,
        );
        let (reason, after) = match decision {
            Decision::Removed | Decision::AlreadyAbsent | Decision::AbsentUnconfirmed => {
                self.circuit.ok();
                return Verdict::Final(decision);
            }
            Decision::Fail { reason } => {
                if reason.is_credential() {
                    let status = result.as_ref().map(|a| a.status.as_u16()).unwrap_or(0);
                    self.circuit
                        .credential_failure(&format!("{status} {}", reason.as_str()));
                } else if reason == FailReason::OrganizationForbidden {
                    self.refuse_organization(org, result);
                }
                return Verdict::Final(decision);
            }
            Decision::Retry { reason, after } => (reason, after),
        };
        let fail = |reason| Verdict::Final(Decision::Fail { reason });
        let step = |b: &mut Budget| {
            after.unwrap_or_else(|| {
                b.schedule
                    .get_or_insert_with(|| Box::new(self.policy.schedule()))
                    .next()
                    .unwrap_or(self.policy.max_delay)
            })
        };
        let wait = match reason {
            RetryReason::RateLimited => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let d = step(budget);
                budget.rate_waited += d;
                if budget.rate_waited > self.policy.max_rate_limit_wait {
                    return fail(FailReason::RateLimitWaitExceeded);
                }
                self.pause_for(d);
                Duration::ZERO // admit() waits out the lane's pause
            }
            RetryReason::TokenRefresh => {
                budget.refreshes += 1;
                self.provider.invalidate_token(generation);
                Duration::ZERO
            }
            RetryReason::Conflict => {
                budget.conflicts += 1;
                if self.policy.on_conflict == OnConflict::Fail
                    || budget.conflicts > self.policy.max_conflict_retries
                {
                    return fail(FailReason::Conflict);
                }
                step(budget)
            }
            RetryReason::ServerError | RetryReason::Timeout | RetryReason::Connection => {
                budget.transient += 1;
                let d = step(budget);
                if budget.transient >= self.policy.max_attempts
                    || budget.first.elapsed() + d > self.policy.max_elapsed
                {
                    return fail(FailReason::RetriesExhausted);
                }
                d
            }
        };
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.retry(reason);
        tracing::info!(job_id = job_id.unwrap_or(""), provider = %self.name, reason = reason.as_str(), wait_ms = wait.as_millis() as u64, "retry");
        Verdict::Retry(wait)
    }

    /// Closes one organization after a refusal scoped to it.
    fn refuse_organization(&self, org: Option<&str>, result: &Result<Answer, Transport>) {
        let words = match result {
            Ok(a) => a
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            Err(t) => t.to_string(),
        };
        let mut refused = self.refused.lock().expect("refused lock");
        if let std::collections::hash_map::Entry::Vacant(slot) = refused.entry(self.org_key(org)) {
            let reason = format!(
                "provider entry `{}` refused access to organization {} ({words}): its jobs are not sent; the entry's other organizations go on",
                self.name,
                org.unwrap_or("")
            );
            tracing::error!(provider = %self.name, organization = org.unwrap_or(""), reason = %reason, "organization refused");
            slot.insert(reason);
        }
    }

    fn organization_refused(&self, org: Option<&str>) -> Option<String> {
        self.refused
            .lock()
            .expect("refused lock")
            .get(&self.org_key(org))
            .cloned()
    }

    /// The record of a job a read could not serve.
    fn read_failed(&self, job: &Job, started: Timestamp, attempts: u32, f: ReadFailure) -> Record {
        if let Some(reason) = f.halted {
            let code = self.halt().map_or("circuit_open", |(c, _)| c);
            return self.halted_record(job, started, attempts, f.last.as_ref(), code, reason);
        }
        self.finished(
            job,
            started,
            attempts,
            Outcome::Failed,
            Some(f.reason.as_str()),
            f.last.as_ref(),
        )
    }

    /// The record of a person found absent, with the evidence.
    fn absent(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        result: &Result<Answer, Transport>,
        evidence: Absence,
    ) -> Record {
        let mut r = self.finished(
            job,
            started,
            attempts,
            Outcome::AlreadyAbsent,
            None,
            Some(result),
        );
        r.absence = Some(evidence);
        r
    }

    /// A record for a job that ended before (or without) a removal request.
    fn not_sent(
        &self,
        job: &Job,
        started: Timestamp,
        outcome: Outcome,
        code: &'static str,
        message: String,
    ) -> Record {
        let mut r = self.finished(job, started, 0, outcome, Some(code), None);
        r.error = Some(ErrorField {
            code: code.to_owned(),
            message,
        });
        r
    }

    fn halted_record(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        last: Option<&Result<Answer, Transport>>,
        code: &'static str,
        reason: String,
    ) -> Record {
        let (outcome, code) = if attempts == 0 {
            (Outcome::NotAttempted, code)
        } else {
            (Outcome::Failed, FailReason::LaneHalted.as_str())
        };
        let mut r = self.finished(job, started, attempts, outcome, Some(code), last);
        r.error = Some(ErrorField {
            code: code.to_owned(),
            message: reason,
        });
        r
    }

    fn finished(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        outcome: Outcome,
        reason: Option<&'static str>,
        result: Option<&Result<Answer, Transport>>,
    ) -> Record {
        let (http_status, provider_request_id, error) = match result {
            Some(Ok(a)) => (
                Some(a.status.as_u16()),
                a.request_id.clone(),
                a.error
                    .as_ref()
                    .filter(|_| !outcome.is_done() || outcome == Outcome::AlreadyAbsent)
                    .map(|e| ErrorField {
                        code: e
                            .code
                            .clone()
                            .or_else(|| reason.map(str::to_owned))
                            .unwrap_or_else(|| a.status.as_u16().to_string()),
                        message: e.message.clone(),
                    }),
            ),
            Some(Err(t)) => (
                None,
                None,
                Some(ErrorField {
                    code: reason.unwrap_or("transport").to_owned(),
                    message: t.to_string(),
                }),
            ),
            None => (None, None, None),
        };
        tracing::info!(job_id = %job.id, provider = %self.name, outcome = outcome.as_str(), reason = reason.unwrap_or(""), attempts, "job finished");
        Record {
            job_id: job.id.to_string(),
            line: job.line,
            provider: Some(self.name.to_string()),
            organization: job.subject.organization(),
            user: Some(job.subject.user()),
            resolved_user: None,
            outcome,
            reason,
            absence: None,
            http_status,
            attempts,
            provider_request_id,
            error,
            started_at: Some(started),
            finished_at: Timestamp::now(),
        }
    }

    /// Takes jobs from `jobs` until it closes or `stop` fires, at most `max_in_flight` at a time,
    /// and records each. Jobs already started finish and are recorded after `stop`.
    ///
    /// `max_in_flight` workers share the queue, each taking the next job once its last is
    /// recorded: no task spawned and no permit taken per job. Jobs come in chunks so that a
    /// feeder on a blocking thread wakes once a chunk rather than once a job when the lane is the
    /// bottleneck.
    pub async fn drive(
        self: Arc<Self>,
        jobs: mpsc::Receiver<Vec<Job>>,
        sink: Sink,
        stop: CancellationToken,
    ) {
        let queue = Arc::new(tokio::sync::Mutex::new((jobs, VecDeque::new())));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.max_in_flight.max(1) {
            let (lane, sink, stop, queue) =
                (self.clone(), sink.clone(), stop.clone(), queue.clone());
            workers.spawn(async move {
                while let Some(job) = next_job(&queue, &stop).await {
                    if stop.is_cancelled() || sink.is_broken() || !lane.audit_ok() {
                        return;
                    }
                    let record = match lane.halt() {
                        // Nothing will be sent.
                        Some((code, reason)) => {
                            lane.halted_record(&job, Timestamp::now(), 0, None, code, reason)
                        }
                        None => lane.execute(&job).await,
                    };
                    sink.record(record).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }
}

/// A lane's queue: the feed's chunks, and what is left of the last one.
type Queue = tokio::sync::Mutex<(mpsc::Receiver<Vec<Job>>, VecDeque<Job>)>;

/// The next job in the queue, waiting for the feed's next chunk if needed; None once the feed is
/// done or `stop` fires.
async fn next_job(queue: &Queue, stop: &CancellationToken) -> Option<Job> {
    let mut guard = queue.lock().await;
    let (jobs, pending) = &mut *guard;
    loop {
        if let Some(job) = pending.pop_front() {
            return Some(job);
        }
        let chunk = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            chunk = jobs.recv() => chunk?,
        };
        pending.extend(chunk);
    }
}

#[cfg(test)]
mod tests {
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
        p.set_rate(1000.0, 50);
        let t = Instant::now();
        for _ in 0..50 {
            p.ready().await;
        }
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "new rate applies: {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn circuit_opens_only_on_consecutive_failures() {
        let c = Circuit {
            threshold: 3,
            consecutive: AtomicU32::new(0),
            open: OnceLock::new(),
        };
        c.credential_failure("401");
        c.credential_failure("401");
        c.ok();
        c.credential_failure("403");
        assert!(c.reason().is_none());
        c.credential_failure("403");
        c.credential_failure("403");
        assert!(c.reason().unwrap().contains("3 credential refusals"));
    }
}

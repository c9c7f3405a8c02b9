//! A lane per provider entry: its pacing (limiter and pause), its in-flight bound, its circuit,
//! and the attempt loop that takes one job from first request to final record.
//!
//! Lanes share nothing, so a provider that is slow, rate-limited or down never slows another.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::hold::Hold;
use crate::job::{Job, LaneId, ProviderKind, Subject, Target};
use crate::metrics::LaneMetrics;
use crate::providers::lookup::{Member, Resolution, resolve};
use crate::providers::{Answer, Provider, Transport};
use crate::report::{ErrorField, Outcome, Record, Sink, Timestamp};
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

/// The retry budgets of one job, shared by its lookups and its removal.
struct Budget {
    first: Instant,
    /// The backoff schedule, made at the first backoff: most jobs never need one.
    schedule: Option<Box<dyn Iterator<Item = Duration> + Send>>,
    transient: u32,
    conflicts: u32,
    rate_waited: Duration,
    /// A 401 right after a refresh is final; a later one (the new token expired while this job
    /// waited out a pause or a backoff) may refresh again.
    just_refreshed: bool,
    last: Option<Result<Answer, Transport>>,
}

/// Where an email lookup stands: the page to read next and the members seen so far.
#[derive(Default)]
struct Lookup {
    page: u32,
    members: Vec<Member>,
    answer: Option<Answer>,
}

/// After one answer: wait and try again, or the job's final record.
enum Next {
    Wait(Duration),
    Done(Box<Record>),
}

/// What a lookup step could not settle by itself.
enum Step {
    /// The job ended (no member, ambiguous, halted).
    Done(Record),
    /// An answer (or its absence) for the one classification.
    Classify(Result<Answer, Transport>),
}

/// The status label of a request's metric: the HTTP code, or why none came.
fn status_label<'a>(result: &Result<&'a Answer, &Transport>) -> &'a str {
    match result {
        Ok(a) => a.status.as_str(),
        Err(Transport::Timeout(_)) => "timeout",
        Err(Transport::Connect(_)) => "connect",
        Err(Transport::Other(_)) => "error",
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
}

/// What a lane needs besides its provider.
pub struct LaneSettings {
    pub rate_per_second: f64,
    pub burst: u32,
    pub max_in_flight: u32,
    pub circuit_after: u32,
    pub policy: Policy,
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
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// Requests this lane may have outstanding at once (the queue prefetch in worker mode).
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// Why the lane stopped sending, if it did.
    pub fn halted(&self) -> Option<&str> {
        self.circuit.reason()
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

    /// Runs one job to its final record: pacing, the request, classification, retries.
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

    async fn attempts(&self, job: &Job) -> Record {
        let mut resolved = match &job.subject {
            Subject::Known(t) => Some(Cow::Borrowed(t)),
            Subject::ByEmail { .. } => None,
        };
        let mut record = self.attempts_on(job, &mut resolved).await;
        if let (Subject::ByEmail { .. }, Some(t)) = (&job.subject, resolved) {
            record.resolved_user = Some(t.user());
        }
        record
    }

    /// One lookup step for an email subject: a cached whole list, or one page of the provider's
    /// search. `Ok(Some(target))` when found; `Ok(None)` when another page is needed; `Err` with
    /// either a finished record or an answer to classify.
    async fn lookup_step(
        &self,
        job: &Job,
        ctx: &mut Lookup,
        started: Timestamp,
        attempts: &mut u32,
    ) -> Result<Option<Target>, Step> {
        let Subject::ByEmail {
            organization,
            email,
            ..
        } = &job.subject
        else {
            unreachable!("only email subjects are looked up")
        };
        let org = organization.as_deref();
        let whole = self.provider.whole_list();
        let _one_fetch = if whole {
            Some(self.provider.list_fetch().lock().await)
        } else {
            None
        };
        let members = match self
            .provider
            .cached_members(org)
            .filter(|_| whole && ctx.page == 0)
        {
            Some(cached) => cached,
            None => {
                let Some(prepared) = self
                    .provider
                    .prepare_lookup(org, email.as_str(), ctx.page)
                    .await
                else {
                    unreachable!("validation makes email subjects only for providers that look up")
                };
                let request = match prepared {
                    Ok(r) => r,
                    Err(result) => return Err(Step::Classify(result)),
                };
                self.admit().await;
                if let Some(reason) = self.halted() {
                    return Err(Step::Done(
                        self.halted_record(job, started, *attempts, None, reason),
                    ));
                }
                *attempts += 1;
                let start = Instant::now();
                let sent = self.provider.send_lookup(request, ctx.page).await;
                self.metrics.request(
                    "lookup",
                    status_label(&sent.as_ref().map(|(a, _)| a)),
                    start.elapsed(),
                );
                let (answer, page) = match sent {
                    Ok((answer, Some(page))) => (answer, page),
                    Ok((answer, None)) => return Err(Step::Classify(Ok(answer))),
                    Err(t) => return Err(Step::Classify(Err(t))),
                };
                self.circuit.ok();
                ctx.answer = Some(answer);
                ctx.members.extend(page.members);
                if page.more {
                    ctx.page += 1;
                    return Ok(None);
                }
                let members = Arc::new(std::mem::take(&mut ctx.members));
                if whole {
                    self.provider.cache_members(org, members.clone());
                }
                members
            }
        };
        let last = ctx.answer.take().map(Ok);
        let done = |outcome, code: &'static str, message: String| {
            let mut r = self.finished(job, started, *attempts, outcome, Some(code), last.as_ref());
            r.error = Some(ErrorField {
                code: code.to_owned(),
                message,
            });
            Step::Done(r)
        };
        match resolve(email.as_str(), members.iter()) {
            Resolution::Found(id) => match job.subject.resolve(&id) {
                Ok(t) => Ok(Some(t)),
                Err(e) => Err(done(
                    Outcome::Failed,
                    "bad_lookup",
                    format!("the search answered an id we cannot use: {e}"),
                )),
            },
            Resolution::NoMember => Err(done(
                Outcome::AlreadyAbsent,
                "no_member",
                "no member with this email".into(),
            )),
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

    async fn attempts_on<'j>(
        &self,
        job: &'j Job,
        resolved: &mut Option<Cow<'j, Target>>,
    ) -> Record {
        let started = Timestamp::now();
        let mut budget = Budget {
            first: Instant::now(),
            schedule: None,
            transient: 0,
            conflicts: 0,
            rate_waited: Duration::ZERO,
            just_refreshed: false,
            last: None,
        };
        let mut lookup = Lookup::default();
        let mut attempts = 0u32;
        loop {
            if let Some(reason) = self.halted() {
                return self.halted_record(job, started, attempts, budget.last.as_ref(), reason);
            }
            let sent = Instant::now();
            let result = match resolved.as_ref() {
                None => match self
                    .lookup_step(job, &mut lookup, started, &mut attempts)
                    .await
                {
                    Ok(found) => {
                        *resolved = found.map(Cow::Owned);
                        continue;
                    }
                    Err(Step::Done(record)) => return record,
                    Err(Step::Classify(result)) => result,
                },
                Some(target) => match self.provider.prepare(target).await {
                    Ok(request) => {
                        // Admission is the last step before the wire, so requests leave at the
                        // pace the limiter allows.
                        self.admit().await;
                        if let Some(reason) = self.halted() {
                            return self.halted_record(
                                job,
                                started,
                                attempts,
                                budget.last.as_ref(),
                                reason,
                            );
                        }
                        attempts += 1;
                        self.stats.requests.fetch_add(1, Ordering::Relaxed);
                        let start = Instant::now();
                        let result = self.provider.send(request).await;
                        self.metrics.request(
                            "remove",
                            status_label(&result.as_ref()),
                            start.elapsed(),
                        );
                        if let Some(audit) = self.audit.get() {
                            let (code, id) = match &result {
                                Ok(a) => (Some(a.status.as_u16()), a.request_id.as_deref()),
                                Err(_) => (None, None),
                            };
                            audit.request(job, attempts, code, id).await;
                        }
                        result
                    }
                    // The token endpoint refused or was silent: nothing went to the removal endpoint.
                    Err(result) => result,
                },
            };
            match self.decide(job, started, attempts, &mut budget, result, sent) {
                Next::Wait(wait) if wait.is_zero() => {}
                Next::Wait(wait) => tokio::time::sleep(wait).await,
                Next::Done(record) => return *record,
            }
        }
    }

    /// Classifies one answer and applies the budgets: how long to wait before the next attempt,
    /// or the job's final record.
    fn decide(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        budget: &mut Budget,
        result: Result<Answer, Transport>,
        sent: Instant,
    ) -> Next {
        let decision = classify(
            &result,
            self.provider.refreshable() && !budget.just_refreshed,
        );
        budget.just_refreshed = false;
        let fail = |reason: FailReason, result: &Result<Answer, Transport>| {
            self.finished(
                job,
                started,
                attempts,
                Outcome::Failed,
                Some(reason.as_str()),
                Some(result),
            )
        };
        let (reason, after) = match decision {
            Decision::Removed | Decision::AlreadyAbsent => {
                self.circuit.ok();
                let outcome = if decision == Decision::Removed {
                    Outcome::Removed
                } else {
                    Outcome::AlreadyAbsent
                };
                return Next::Done(Box::new(self.finished(
                    job,
                    started,
                    attempts,
                    outcome,
                    None,
                    Some(&result),
                )));
            }
            Decision::Fail { reason } => {
                if reason.is_credential() {
                    let status = result.as_ref().map(|a| a.status.as_u16()).unwrap_or(0);
                    self.circuit
                        .credential_failure(&format!("{status} {}", reason.as_str()));
                }
                return Next::Done(Box::new(fail(reason, &result)));
            }
            Decision::Retry { reason, after } => (reason, after),
        };
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
                    return Next::Done(Box::new(fail(FailReason::RateLimitWaitExceeded, &result)));
                }
                self.pause_for(d);
                Duration::ZERO // admit() waits out the lane's pause
            }
            RetryReason::TokenRefresh => {
                budget.just_refreshed = true;
                self.provider.invalidate_token(sent);
                Duration::ZERO
            }
            RetryReason::Conflict => {
                budget.conflicts += 1;
                if self.policy.on_conflict == OnConflict::Fail
                    || budget.conflicts > self.policy.max_conflict_retries
                {
                    return Next::Done(Box::new(fail(FailReason::Conflict, &result)));
                }
                step(budget)
            }
            RetryReason::ServerError | RetryReason::Timeout | RetryReason::Connection => {
                budget.transient += 1;
                let d = step(budget);
                if budget.transient >= self.policy.max_attempts
                    || budget.first.elapsed() + d > self.policy.max_elapsed
                {
                    return Next::Done(Box::new(fail(FailReason::RetriesExhausted, &result)));
                }
                d
            }
        };
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.retry(reason);
        tracing::info!(job_id = %job.id, provider = %self.name, reason = reason.as_str(), wait_ms = wait.as_millis() as u64, "retry");
        budget.last = Some(result);
        Next::Wait(wait)
    }

    fn halted_record(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        last: Option<&Result<Answer, Transport>>,
        reason: &str,
    ) -> Record {
        let (outcome, code) = if attempts == 0 {
            (Outcome::NotAttempted, "circuit_open")
        } else {
            (Outcome::Failed, FailReason::LaneHalted.as_str())
        };
        let mut r = self.finished(job, started, attempts, outcome, Some(code), last);
        r.error = Some(ErrorField {
            code: code.to_owned(),
            message: reason.to_owned(),
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
                    let record = match lane.halted() {
                        // Nothing will be sent.
                        Some(reason) => lane.halted_record(&job, Timestamp::now(), 0, None, reason),
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

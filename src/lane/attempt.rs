//! The attempt loop: one job from its preflight and lookup to its final record, every answer
//! classified once, retries within the budgets, absence confirmed where the page is silent.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::job::{Job, Subject, Target};
use crate::outcome::{Absence, ErrorField, Outcome, Reason, Record, Timestamp};
use crate::providers::{Answer, Generation, Transport};
use crate::retry::{Decision, FailReason, OnConflict, RetryReason, classify};

use super::Lane;
use super::members::ReadFailure;

/// A 429's wait above this holds the whole lane (the provider stopping the key); one this short
/// or shorter is the throttled request's own, while the cut pace spaces the others. A token
/// bucket's `Retry-After` is a fraction of a second rounded up to one, and an HTTP date adds up
/// to a second more.
pub const LANE_PAUSE_ABOVE: Duration = Duration::from_secs(2);

/// The retry budgets of one request sequence (a job's removal, one page of a list).
pub(super) struct Budget {
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
    pub(super) fn new() -> Budget {
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
pub(super) enum Verdict {
    Retry(Duration),
    Final(Decision),
}

/// The provider's words in an answer, or why none came.
fn words(result: &Result<Answer, Transport>) -> String {
    match result {
        Ok(a) => a
            .error
            .as_ref()
            .map(|e| match &e.code {
                Some(c) => format!("{c}: {}", e.message),
                None => e.message.clone(),
            })
            .unwrap_or_default(),
        Err(t) => t.to_string(),
    }
}

/// The user a success answer names, when it is not the target (see `Answer::subject`).
fn named_other(result: &Result<Answer, Transport>, target: &Target) -> Option<String> {
    let named = result.as_ref().ok()?.subject.as_deref()?;
    (!named.trim().eq_ignore_ascii_case(target.user().trim())).then(|| named.to_owned())
}

/// The status label of a request's metric: the HTTP code, or why none came.
pub(super) fn status_label<'a>(result: &Result<&'a Answer, &Transport>) -> &'a str {
    match result {
        Ok(a) => a.status.as_str(),
        Err(Transport::Timeout(_)) => "timeout",
        Err(Transport::Connect(_)) => "connect",
        Err(Transport::Other(_)) => "error",
        Err(Transport::Tls(_)) => "tls",
        Err(Transport::TooLarge(_)) => "too_large",
    }
}

impl Lane {
    /// Runs one job to its final record: preflight, lookup, pacing, the request, classification,
    /// retries.
    pub async fn execute(&self, job: &Job) -> Record {
        self.execute_while(job, &|| true).await
    }

    /// The same, for a job a door may lose meanwhile (a broker delivery whose channel went, the
    /// broker handing it to another replica): no removal is sent once `held` says it is gone. The
    /// job then ends `not_attempted`, reason [`Reason::DeliveryLost`], for the door not to record; a
    /// request already on the wire finishes and is recorded.
    pub async fn execute_while(&self, job: &Job, held: &(dyn Fn() -> bool + Sync)) -> Record {
        self.metrics.in_flight.inc();
        let record = self.attempts(job, held).await;
        self.metrics.in_flight.dec();
        record
    }

    /// The record of a job given up because its delivery is gone (see [`Reason::DeliveryLost`]).
    fn lost(&self, job: &Job, started: Timestamp) -> Record {
        tracing::warn!(job_id = %job.id, provider = %self.name, "the delivery is gone (the broker gives the job to another consumer): nothing more is sent for it here");
        self.not_sent(
            job,
            started,
            Outcome::NotAttempted,
            Reason::DeliveryLost,
            "the delivery was lost: the replica that holds it now runs the job".into(),
        )
    }

    pub(super) async fn attempts(&self, job: &Job, held: &(dyn Fn() -> bool + Sync)) -> Record {
        let started = Timestamp::now();
        let mut attempts = 0u32;
        let org = job.subject.organization();
        let org = org.as_deref();
        match self.proof(org).await {
            Ok(()) => {}
            // The reason names the entry, and the organization when only that one failed.
            Err(reason) => {
                return self.not_sent(
                    job,
                    started,
                    Outcome::NotAttempted,
                    Reason::PreflightFailed,
                    reason,
                );
            }
        };
        if let Some(reason) = self.organization_refused(org) {
            return self.not_sent(
                job,
                started,
                Outcome::NotAttempted,
                Reason::OrganizationRefused,
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
        let why = self
            .protected
            .matches(&user)
            .map(|pattern| format!("matches `{pattern}` in safety.protected"))
            .or_else(|| self.protected_id(org, &user));
        if let Some(why) = why {
            tracing::warn!(job_id = %job.id, provider = %self.name, "protected account: skipped");
            let mut r = self.not_sent(
                job,
                started,
                Outcome::SkippedProtected,
                Reason::Protected,
                format!("protected account ({why}): never removed"),
            );
            r.attempts = attempts;
            r.resolved_user = matches!(job.subject, Subject::ByEmail { .. }).then_some(user);
            return r;
        }
        let mut record = self
            .remove(job, &target, org, started, attempts, held)
            .await;
        if matches!(job.subject, Subject::ByEmail { .. }) {
            record.resolved_user = Some(user);
        }
        record
    }

    /// The removal, retried within the budgets, to its final record.
    pub(super) async fn remove(
        &self,
        job: &Job,
        target: &Target,
        org: Option<&str>,
        started: Timestamp,
        mut attempts: u32,
        held: &(dyn Fn() -> bool + Sync),
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
                    Reason::OrganizationRefused,
                    reason,
                );
            }
            let (result, generation) = match self.provider.prepare(target).await {
                Ok(p) => {
                    // Not while a whole member list is being read (see `whole_list`); taken
                    // before admission, so that removals held by a read leave at the pace
                    // afterwards, not as a burst.
                    let reading = self.reading(org);
                    let _quiet = reading.quiet.read().await;
                    // Admission is the last step before the wire, so requests leave at the pace
                    // the limiter allows.
                    self.admit().await;
                    if !held() {
                        let mut r = self.lost(job, started);
                        r.attempts = attempts;
                        return r;
                    }
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
                    let start = Instant::now();
                    let result = {
                        let _flying = self.fly();
                        self.provider.send(p.request).await
                    };
                    self.observed(start, result.as_ref().ok());
                    self.metrics
                        .request("remove", status_label(&result.as_ref()), start.elapsed());
                    if let Some(log) = self.requests.get() {
                        let (code, id) = match &result {
                            Ok(a) => (Some(a.status.as_u16()), a.request_id.as_deref()),
                            Err(_) => (None, None),
                        };
                        log.request(job, attempts, code, id).await;
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
                Decision::Removed => match named_other(&result, target) {
                    None => self.finished(
                        job,
                        started,
                        attempts,
                        Outcome::Removed,
                        None,
                        Some(&result),
                    ),
                    Some(other) => {
                        let mut r = self.finished(
                            job,
                            started,
                            attempts,
                            Outcome::Failed,
                            Some(FailReason::Unexpected.into()),
                            Some(&result),
                        );
                        r.error = Some(ErrorField {
                            code: "other_user_named".into(),
                            message: format!(
                                "the removal answered success but names user {other}, not {}: nothing is claimed",
                                target.user()
                            ),
                        });
                        r
                    }
                },
                Decision::AlreadyAbsent => {
                    self.absent(job, started, attempts, &result, Absence::Provider404)
                }
                Decision::AbsentUnconfirmed if !held() => {
                    // The answer needs a list read to be believed, and the job is another's now.
                    let mut r = self.lost(job, started);
                    r.attempts = attempts;
                    r.http_status = result.as_ref().ok().map(|a| a.status.as_u16());
                    r
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
                    Some(reason.into()),
                    Some(&result),
                ),
                Decision::Retry { .. } => unreachable!("judge turns retries into waits"),
            };
        }
    }

    /// A 404 the page does not document: believed only if the member list, read after it, no
    /// longer shows the member. Otherwise the job failed, with the provider's words.
    /// `answer`: the 404 and when it came.
    pub(super) async fn confirm_absent(
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
            // The removal's key is an id (Aitronos, Aerospike) or an email (Factory).
            Ok(members)
                if !members.iter().any(|m| {
                    m.id.eq_ignore_ascii_case(&user) || m.email.eq_ignore_ascii_case(&user)
                }) =>
            {
                self.absent(job, started, attempts, &result, Absence::MemberList)
            }
            Ok(_) => {
                let mut r = self.finished(
                    job,
                    started,
                    attempts,
                    Outcome::Failed,
                    Some(Reason::NotFoundButListed),
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
                    code: r.reason.map_or("failed", |r| r.as_str()).to_owned(),
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
    pub(super) fn judge(
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
                if reason == FailReason::BodyLost {
                    self.halt_entry(
                        Reason::RequestBodyLost,
                        format!(
                            "provider entry `{}`: the provider says the removal lacked its confirmation, which we always send: the request body was lost on the way (a proxy that strips DELETE bodies?); nothing more is sent until that is fixed ({})",
                            self.name,
                            words(result)
                        ),
                    );
                } else if reason.is_credential() {
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
                let d = step(budget);
                budget.rate_waited += d;
                if budget.rate_waited > self.policy.max_rate_limit_wait {
                    return fail(FailReason::RateLimitWaitExceeded);
                }
                // The pace was cut already (`observed`). A short wait is this request's: the
                // others go on at the cut pace. A long one is the provider stopping the key, and
                // holds the whole lane.
                if d > LANE_PAUSE_ABOVE {
                    self.pause_for(d);
                    Duration::ZERO // admit() waits out the lane's pause
                } else {
                    d
                }
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
        self.metrics.retry(reason);
        tracing::info!(job_id = job_id.unwrap_or(""), provider = %self.name, reason = reason.as_str(), wait_ms = wait.as_millis() as u64, "retry");
        Verdict::Retry(wait)
    }

    /// The record of a job a read could not serve.
    pub(super) fn read_failed(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        f: ReadFailure,
    ) -> Record {
        if let Some(reason) = f.halted {
            let code = self.halt().map_or(Reason::CircuitOpen, |(c, _)| c);
            return self.halted_record(job, started, attempts, f.last.as_ref(), code, reason);
        }
        self.finished(
            job,
            started,
            attempts,
            Outcome::Failed,
            Some(f.reason.into()),
            f.last.as_ref(),
        )
    }

    /// The record of a person found absent, with the evidence.
    pub(super) fn absent(
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
    pub(super) fn not_sent(
        &self,
        job: &Job,
        started: Timestamp,
        outcome: Outcome,
        code: Reason,
        message: String,
    ) -> Record {
        let mut r = self.finished(job, started, 0, outcome, Some(code), None);
        r.error = Some(ErrorField {
            code: code.as_str().to_owned(),
            message,
        });
        r
    }

    pub(super) fn halted_record(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        last: Option<&Result<Answer, Transport>>,
        code: Reason,
        reason: String,
    ) -> Record {
        let (outcome, code) = if attempts == 0 {
            (Outcome::NotAttempted, code)
        } else {
            (Outcome::Failed, Reason::LaneHalted)
        };
        let mut r = self.finished(job, started, attempts, outcome, Some(code), last);
        r.error = Some(ErrorField {
            code: code.as_str().to_owned(),
            message: reason,
        });
        r
    }

    pub(super) fn finished(
        &self,
        job: &Job,
        started: Timestamp,
        attempts: u32,
        outcome: Outcome,
        reason: Option<Reason>,
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
                            .or_else(|| reason.map(|r| r.as_str().to_owned()))
                            .unwrap_or_else(|| a.status.as_u16().to_string()),
                        message: e.message.clone(),
                    }),
            ),
            Some(Err(t)) => (
                None,
                None,
                Some(ErrorField {
                    code: reason.map_or("transport", Reason::as_str).to_owned(),
                    message: t.to_string(),
                }),
            ),
            None => (None, None, None),
        };
        tracing::info!(job_id = %job.id, provider = %self.name, outcome = outcome.as_str(), reason = reason.map_or("", Reason::as_str), attempts, "job finished");
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
}

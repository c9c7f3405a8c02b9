//! One request step, the only way a lane sends anything: a removal and a list page alike are
//! prepared (a token fetched if need be), admitted at the lane's pace, sent, counted, told to the
//! pace, classified once, and judged against the sequence's budgets; the step then waits out the
//! retry it schedules. What the answer means for the job is the caller's.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::providers::client::RequestBuilder;

use crate::job::Job;
use crate::outcome::Reason;
use crate::providers::{Answer, Generation, Prepared, Transport};
use crate::retry::{Decision, FailReason, OnConflict, RetryReason, classify};

use super::Lane;

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
enum Verdict {
    Retry(Duration),
    Final(Final),
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

/// Which request a step sends: the `operation` label of the request metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Remove,
    Preflight,
    Lookup,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Remove => "remove",
            Operation::Preflight => "preflight",
            Operation::Lookup => "lookup",
        }
    }
}

/// What one request step is for.
pub(super) struct Step<'a> {
    pub(super) operation: Operation,
    pub(super) organization: Option<&'a str>,
    /// The job whose removal this is: each request is told to the request log.
    pub(super) job: Option<&'a Job>,
    /// Whether the door still holds the job (see `Lane::execute_while`); none for reads, which
    /// serve every job of the organization.
    pub(super) held: Option<&'a (dyn Fn() -> bool + Sync)>,
    /// Held shared from admission until the answer (removals: see `Reading`).
    pub(super) quiet: Option<&'a tokio::sync::RwLock<()>>,
}

/// Why a step sent nothing.
pub(super) enum Stop {
    /// The door no longer holds the job.
    Lost,
    /// The lane halted: the report's reason and why.
    Halted(Reason, String),
}

/// What one request step came to.
pub(super) enum Tried<P> {
    /// Nothing was sent.
    Stopped(Stop),
    /// Worth another try; the step has waited already. The answer, or why none came.
    Again(Result<Answer, Transport>),
    /// The final decision on this answer.
    Decided(Final, Result<Answer, Transport>),
    /// An answer in the page's documented shape, for the caller to read (a list page).
    Read(Answer, P),
}

/// The final word on one answer, once the budgets are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Final {
    Removed,
    AlreadyAbsent,
    /// A 404 the provider's page does not document: absent only if its member list agrees.
    AbsentUnconfirmed,
    Failed(FailReason),
}

/// A read (list, search, probe) that ended without a usable answer.
pub(super) struct ReadFailure {
    pub(super) reason: FailReason,
    /// What the provider last answered, or why nothing came.
    pub(super) last: Option<Result<Answer, Transport>>,
    /// Set when the lane halted while the read waited: why.
    pub(super) halted: Option<String>,
}

impl Lane {
    /// One request: prepared, admitted at the pace, sent, classified and judged, the retry's
    /// wait waited. `send` answers the answer and, for a list, its page when it has one. Counts
    /// each request sent in `attempts`.
    pub(super) async fn request<P>(
        &self,
        step: &Step<'_>,
        budget: &mut Budget,
        attempts: &mut u32,
        prepare: impl Future<Output = Result<Prepared, Result<Answer, Transport>>>,
        send: impl AsyncFnOnce(RequestBuilder) -> Result<(Answer, Option<P>), Transport>,
    ) -> Tried<P> {
        if let Some((code, why)) = self.halt() {
            return Tried::Stopped(Stop::Halted(code, why));
        }
        let (result, generation) = match prepare.await {
            // The token endpoint refused or was silent: nothing went to the API itself.
            Err(result) => (result, 0),
            Ok(p) => {
                let _quiet = match step.quiet {
                    Some(q) => Some(q.read().await),
                    None => None,
                };
                // Admission is the last step before the wire, so requests leave at the pace the
                // limiter allows.
                self.admit().await;
                if step.held.is_some_and(|held| !held()) {
                    return Tried::Stopped(Stop::Lost);
                }
                if let Some((code, why)) = self.halt() {
                    return Tried::Stopped(Stop::Halted(code, why));
                }
                *attempts += 1;
                let start = Instant::now();
                let sent = {
                    let _flying = self.pacing.fly();
                    send(p.request).await
                };
                self.pacing
                    .observed(start, sent.as_ref().ok().map(|(a, _)| a));
                self.metrics.request(
                    step.operation.as_str(),
                    status_label(&sent.as_ref().map(|(a, _)| a)),
                    start.elapsed(),
                );
                if let (Some(job), Some(log)) = (step.job, self.requests.get()) {
                    let (code, id) = match &sent {
                        Ok((a, _)) => (Some(a.status.as_u16()), a.request_id.as_deref()),
                        Err(_) => (None, None),
                    };
                    log.request(job, *attempts, code, id).await;
                }
                match sent {
                    Ok((answer, Some(page))) => {
                        self.circuit.ok();
                        return Tried::Read(answer, page);
                    }
                    Ok((answer, None)) => (Ok(answer), p.generation),
                    Err(t) => (Err(t), p.generation),
                }
            }
        };
        let job_id = step.job.map(|j| &*j.id);
        match self.judge(budget, &result, generation, step.organization, job_id) {
            Verdict::Retry(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Tried::Again(result)
            }
            Verdict::Final(decision) => Tried::Decided(decision, result),
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
                return Verdict::Final(match decision {
                    Decision::Removed => Final::Removed,
                    Decision::AlreadyAbsent => Final::AlreadyAbsent,
                    _ => Final::AbsentUnconfirmed,
                });
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
                return Verdict::Final(Final::Failed(reason));
            }
            Decision::Retry { reason, after } => (reason, after),
        };
        let fail = |reason| Verdict::Final(Final::Failed(reason));
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
        let why = format!(
            "provider entry `{}` refused access to organization {} ({words}): its jobs are not sent; the entry's other organizations go on",
            self.name,
            org.unwrap_or("")
        );
        if self.orgs.refuse(org, why.clone()) {
            tracing::error!(provider = %self.name, organization = org.unwrap_or(""), reason = %why, "organization refused");
        }
    }
}

//! The attempt loop: one job from its preflight and lookup to its final record, every answer
//! classified once, retries within the budgets, absence confirmed where the page is silent.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Instant;

use crate::job::{Job, Subject, Target};
use crate::outcome::{Absence, ErrorField, Outcome, Reason, Record, Timestamp};
use crate::providers::{Answer, Transport};
use crate::retry::FailReason;

use super::Lane;
use super::request::{Budget, Final, Operation, Step, Stop, Tried};

/// The user a success answer names, when it is not the target (see `Answer::subject`).
fn named_other(result: &Result<Answer, Transport>, target: &Target) -> Option<String> {
    let named = result.as_ref().ok()?.subject.as_deref()?;
    (!named.trim().eq_ignore_ascii_case(target.user().trim())).then(|| named.to_owned())
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
        if let Some(reason) = self.orgs.refused(org) {
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
            .or_else(|| self.orgs.protected_id(org, &user));
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
        // Not while a whole member list is being read (see `whole_list`); taken before admission,
        // so that removals held by a read leave at the pace afterwards, not as a burst.
        let reading = self.orgs.reading(org);
        let step = Step {
            operation: Operation::Remove,
            organization: org,
            job: Some(job),
            held: Some(held),
            quiet: Some(&reading.quiet),
        };
        loop {
            if let Some(reason) = self.orgs.refused(org) {
                return self.halted_record(
                    job,
                    started,
                    attempts,
                    last.as_ref(),
                    Reason::OrganizationRefused,
                    reason,
                );
            }
            let tried = self
                .request(
                    &step,
                    &mut budget,
                    &mut attempts,
                    self.provider.prepare(target),
                    async |request| {
                        let answer = self.provider.send(request).await?;
                        Ok((answer, None::<Infallible>))
                    },
                )
                .await;
            let (decision, result) = match tried {
                Tried::Stopped(Stop::Lost) => {
                    let mut r = self.lost(job, started);
                    r.attempts = attempts;
                    return r;
                }
                Tried::Stopped(Stop::Halted(code, reason)) => {
                    return self.halted_record(job, started, attempts, last.as_ref(), code, reason);
                }
                Tried::Again(result) => {
                    last = Some(result);
                    continue;
                }
                Tried::Decided(decision, result) => (decision, result),
                Tried::Read(_, never) => match never {},
            };
            let answered = Instant::now();
            return match decision {
                Final::Removed => match named_other(&result, target) {
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
                Final::AlreadyAbsent => {
                    self.absent(job, started, attempts, &result, Absence::Provider404)
                }
                Final::AbsentUnconfirmed if !held() => {
                    // The answer needs a list read to be believed, and the job is another's now.
                    let mut r = self.lost(job, started);
                    r.attempts = attempts;
                    r.http_status = result.as_ref().ok().map(|a| a.status.as_u16());
                    r
                }
                Final::AbsentUnconfirmed => {
                    self.confirm_absent(job, target, started, attempts, (result, answered))
                        .await
                }
                Final::Failed(reason) => self.finished(
                    job,
                    started,
                    attempts,
                    Outcome::Failed,
                    Some(reason.into()),
                    Some(&result),
                ),
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
}

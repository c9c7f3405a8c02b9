//! The records a lane builds: every way a job can end, with the provider's last answer and the
//! words that say why.

use crate::job::Job;
use crate::outcome::{Absence, ErrorField, Outcome, Reason, Record, Timestamp};
use crate::providers::{Answer, Transport};

use super::Lane;
use super::request::ReadFailure;

impl Lane {
    /// The record of a job given up because its delivery is gone (see [`Reason::DeliveryLost`]).
    pub(super) fn lost(&self, job: &Job, started: Timestamp) -> Record {
        tracing::warn!(job_id = %job.id, provider = %self.name, "the delivery is gone (the broker gives the job to another consumer): nothing more is sent for it here");
        self.not_sent(
            job,
            started,
            Outcome::NotAttempted,
            Reason::DeliveryLost,
            "the delivery was lost: the replica that holds it now runs the job".into(),
        )
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

    /// The record of a job that is not sent because it is due later (`run --due-only`), or because
    /// it was cancelled while it waited (`cancelled`: `how` says by whom, and when it was due).
    pub fn unsent_job(&self, job: &Job, outcome: Outcome, code: Reason, how: String) -> Record {
        let mut r = self.not_sent(job, Timestamp::now(), outcome, code, how);
        r.started_at = None;
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
            due_at: job.due,
            started_at: Some(started),
            finished_at: Timestamp::now(),
        }
    }
}

//! What became of a job: its [`Outcome`], the [`Reason`] when it was not removed, the evidence of
//! an absence, and the [`Record`] every door, lane and sink passes on. The one place that decides
//! what a record means for a rerun, a redelivery and the dead-letter queue ([`Record::fate`]).

mod reason;
mod tally;

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::job::Invalid;

pub use reason::{Lasting, Reason};

/// Something told of every record (the metrics, the outcomes exchange).
pub type Observer = std::sync::Arc<dyn Fn(&Record) + Send + Sync>;
pub use tally::{Live, Summary};

/// How a job ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Removed,
    AlreadyAbsent,
    Failed,
    Invalid,
    NotAttempted,
    /// A protected account (`safety.protected`): nothing was sent.
    SkippedProtected,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Removed,
        Outcome::AlreadyAbsent,
        Outcome::Failed,
        Outcome::Invalid,
        Outcome::NotAttempted,
        Outcome::SkippedProtected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Removed => "removed",
            Outcome::AlreadyAbsent => "already_absent",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::NotAttempted => "not_attempted",
            Outcome::SkippedProtected => "skipped_protected",
        }
    }

    /// Whether the person no longer has the account: what exit code 0 promises.
    pub fn is_done(self) -> bool {
        matches!(self, Outcome::Removed | Outcome::AlreadyAbsent)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A wall-clock instant, written as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// How an `already_absent` was established: every claim of absence names its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Absence {
    /// The removal answered 404 in the provider's own not-a-member shape, after the entry's
    /// preflight proved its base URL and credential.
    #[serde(rename = "provider_404")]
    Provider404,
    /// The removal answered a 404 the page does not document, and the member list read after it
    /// no longer shows the member.
    #[serde(rename = "member_list")]
    MemberList,
    /// The provider's member list or search has no member with exactly this email.
    #[serde(rename = "no_member")]
    NoMember,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorField {
    pub code: String,
    pub message: String,
}

/// One report line. Never holds a credential: only ids, statuses and the provider's messages.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub job_id: String,
    pub line: Option<u64>,
    pub provider: Option<String>,
    pub organization: Option<String>,
    pub user: Option<String>,
    /// The id an email was looked up to, for jobs that named an email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_user: Option<String>,
    pub outcome: Outcome,
    /// Our classification of why the job did not end removed (a bounded set: `unauthorized`,
    /// `retries_exhausted`, `duplicate`, `circuit_open`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// For `already_absent`: the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absence: Option<Absence>,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub provider_request_id: Option<String>,
    pub error: Option<ErrorField>,
    /// When a scheduled job was due: beside `started_at`, its lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<jiff::Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

impl Record {
    /// A record of `job_id` ending `outcome` now, every other field empty.
    pub fn new(job_id: String, outcome: Outcome) -> Record {
        Record {
            job_id,
            line: None,
            provider: None,
            organization: None,
            user: None,
            resolved_user: None,
            outcome,
            reason: None,
            absence: None,
            http_status: None,
            attempts: 0,
            provider_request_id: None,
            error: None,
            due_at: None,
            started_at: None,
            finished_at: Timestamp::now(),
        }
    }

    /// A record that ends before any request, for `reason`, with the words that say why.
    pub fn unsent(job_id: String, outcome: Outcome, reason: Reason, message: String) -> Record {
        let mut r = Record::new(job_id, outcome);
        r.reason = Some(reason);
        r.error = Some(ErrorField {
            code: reason.as_str().to_owned(),
            message,
        });
        r
    }

    /// The record of input that is not a job (a row, a message, an event's target): the one way
    /// it is built. `line` is the CSV line, named in the message too.
    pub fn invalid(
        job_id: String,
        line: Option<u64>,
        provider: Option<String>,
        user: Option<String>,
        why: &Invalid,
    ) -> Record {
        let message = match line {
            Some(l) => format!("line {l}: {why}"),
            None => why.to_string(),
        };
        let outcome = match why {
            Invalid::Protected { .. } => Outcome::SkippedProtected,
            _ => Outcome::Invalid,
        };
        let mut r = Record::unsent(job_id, outcome, Reason::from(why), message);
        r.line = line;
        r.provider = provider;
        r.user = user;
        r
    }

    /// What this record means for the doors: see [`Fate`].
    pub fn fate(&self) -> Fate {
        Fate::of(self.outcome, self.reason)
    }
}

/// What a recorded outcome means for a rerun, a redelivery and the broker. The one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Done, or never to be done: removed, absent, protected, a copy of a job already recorded.
    /// A rerun skips it, a redelivery is acknowledged without running it, no dead letter.
    Closed,
    /// Ended for good and not done (invalid input, the provider's own refusal): a rerun of the
    /// file skips it, since it would end the same; the worker dead-letters it, for a person to
    /// look at. Invalid input is also remembered as settled against redeliveries; a failure is
    /// not, so a replay after a fix runs it again.
    Final,
    /// May end otherwise when tried again (`not_attempted`, or a failure whose reason is not
    /// [`Lasting::Yes`]): a rerun tries it again; the worker dead-letters it.
    Transient,
}

impl Fate {
    /// The fate of a job that ended `outcome` for `reason`.
    pub fn of(outcome: Outcome, reason: Option<Reason>) -> Fate {
        match outcome {
            Outcome::Removed | Outcome::AlreadyAbsent | Outcome::SkippedProtected => Fate::Closed,
            Outcome::Invalid if reason == Some(Reason::Duplicate) => Fate::Closed,
            // Cancelled before its due time: never to be done, nobody to look at it.
            Outcome::Failed if reason == Some(Reason::Cancelled) => Fate::Closed,
            Outcome::Invalid => Fate::Final,
            Outcome::NotAttempted => Fate::Transient,
            Outcome::Failed => match reason.map(Reason::lasting) {
                Some(Lasting::No) => Fate::Transient,
                Some(Lasting::Yes) | None => Fate::Final,
            },
        }
    }

    /// The fate of a report line, whose reason is text (an unknown one, from a newer version,
    /// is taken as transient: trying again is the safe side of not knowing).
    pub fn of_line(outcome: Outcome, reason: Option<&str>) -> Fate {
        match reason.map(|r| (r, Reason::parse(r))) {
            Some((_, Some(r))) => Fate::of(outcome, Some(r)),
            Some((_, None)) if outcome == Outcome::Failed => Fate::Transient,
            _ => Fate::of(outcome, None),
        }
    }

    /// Whether a resumed `offboard run` skips the row: no rerun could change it.
    pub fn settled(self) -> bool {
        self != Fate::Transient
    }

    /// Whether a worker acknowledges a redelivery of the job without running it again, as
    /// `outcome` ended.
    pub fn remembered(self, outcome: Outcome) -> bool {
        self == Fate::Closed || (self == Fate::Final && outcome != Outcome::Failed)
    }

    /// Whether the worker publishes the job to the dead-letter queue.
    pub fn dead_lettered(self) -> bool {
        self != Fate::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_record_means_for_a_rerun_a_redelivery_and_the_broker() {
        use Outcome::*;
        // (outcome, reason) -> (rerun skips, redelivery acknowledged unrun, dead-lettered)
        let cases = [
            (Removed, None, (true, true, false)),
            (AlreadyAbsent, None, (true, true, false)),
            (SkippedProtected, Some("protected"), (true, true, false)),
            (Invalid, Some("duplicate"), (true, true, false)),
            (Invalid, Some("bad_format"), (true, true, true)),
            (Failed, Some("refused"), (true, false, true)),
            (Failed, Some("rejected_by_operator"), (true, false, true)),
            (Failed, Some("retries_exhausted"), (false, false, true)),
            (Failed, Some("unauthorized"), (false, false, true)),
            (Failed, Some("from_a_newer_version"), (false, false, true)),
            (NotAttempted, Some("preflight_failed"), (false, false, true)),
            (NotAttempted, Some("shadow"), (false, false, true)),
            (NotAttempted, Some("scheduled"), (false, false, true)),
            (Failed, Some("cancelled"), (true, true, false)),
        ];
        for (outcome, reason, want) in cases {
            let fate = Fate::of_line(outcome, reason);
            assert_eq!(
                (
                    fate.settled(),
                    fate.remembered(outcome),
                    fate.dead_lettered()
                ),
                want,
                "{outcome:?} {reason:?}"
            );
        }
    }

    #[test]
    fn an_invalid_record_names_its_line_and_reason() {
        let r = Record::invalid(
            "j".into(),
            Some(7),
            Some("factory".into()),
            None,
            &Invalid::Missing("user"),
        );
        assert_eq!(r.outcome, Outcome::Invalid);
        assert_eq!(r.reason, Some(Reason::MissingField));
        let e = r.error.unwrap();
        assert_eq!(e.code, "missing_field");
        assert_eq!(e.message, "line 7: missing field `user`");
    }
}

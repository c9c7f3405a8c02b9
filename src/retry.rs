//! Classification (what one answer means for the job) and the retry schedule.
//!
//! [`classify`] is the single place that turns an answer into a [`Decision`]; the same value then
//! drives the retry, the lane's pause and circuit, and the report.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::outcome::Reason;
use crate::providers::{Answer, Hint, Transport};

/// What to do after one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Removed,
    AlreadyAbsent,
    /// A 404 the provider's page does not document: absent only if its member list agrees.
    AbsentUnconfirmed,
    /// Try again, after `after` when the provider said how long (else the backoff schedule decides).
    Retry {
        reason: RetryReason,
        after: Option<Duration>,
    },
    Fail {
        reason: FailReason,
    },
}

/// Why a request is worth repeating. Also the `reason` label of the retry metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    RateLimited,
    Conflict,
    ServerError,
    Timeout,
    Connection,
    TokenRefresh,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::Conflict => "conflict",
            RetryReason::ServerError => "server_error",
            RetryReason::Timeout => "timeout",
            RetryReason::Connection => "connection",
            RetryReason::TokenRefresh => "token_refresh",
        }
    }
}

/// Why a job failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// 401: the credential is wrong, expired or revoked.
    Unauthorized,
    /// 403 about us, not the target: the credential lacks the scope or role.
    Forbidden,
    /// 403 scoped to one organization or tenant: no permission there.
    OrganizationForbidden,
    /// The organization or tenant does not exist, or the URL is wrong.
    NotFound,
    /// The provider refused this target (an owner who cannot be removed).
    Refused,
    /// Another 4xx: the request was not acceptable.
    Rejected,
    /// A status the API page does not list as success (3xx, an undocumented 2xx).
    Unexpected,
    /// A conflict with `on_conflict = "fail"`, or past `max_conflict_retries`.
    Conflict,
    /// Transient failures outlasted `max_attempts` or `max_elapsed_s`.
    RetriesExhausted,
    /// 429s outlasted `max_rate_limit_wait_s`.
    RateLimitWaitExceeded,
    /// The lane's circuit opened while this job waited to retry.
    LaneHalted,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// A member list answer was larger than `http.max_list_bytes`.
    TooLarge,
    /// A member list answer that is not the page's documented list: no proof of anything.
    UnreadableList,
    /// The provider says the request lacked what we always send: lost on the way.
    BodyLost,
}

impl From<FailReason> for Reason {
    fn from(f: FailReason) -> Reason {
        match f {
            FailReason::Unauthorized => Reason::Unauthorized,
            FailReason::Forbidden => Reason::Forbidden,
            FailReason::OrganizationForbidden => Reason::ForbiddenInOrganization,
            FailReason::NotFound => Reason::NotFound,
            FailReason::Refused => Reason::Refused,
            FailReason::Rejected => Reason::Rejected,
            FailReason::Unexpected => Reason::UnexpectedStatus,
            FailReason::Conflict => Reason::Conflict,
            FailReason::RetriesExhausted => Reason::RetriesExhausted,
            FailReason::RateLimitWaitExceeded => Reason::RateLimitWaitExceeded,
            FailReason::LaneHalted => Reason::LaneHalted,
            FailReason::Tls => Reason::Tls,
            FailReason::TooLarge => Reason::AnswerTooLarge,
            FailReason::UnreadableList => Reason::UnreadableList,
            FailReason::BodyLost => Reason::RequestBodyLost,
        }
    }
}

impl FailReason {
    /// The report's string for this failure.
    pub fn as_str(self) -> &'static str {
        Reason::from(self).as_str()
    }

    /// Failures that say our credentials are bad: repeated, they open the lane's circuit.
    pub fn is_credential(self) -> bool {
        matches!(self, FailReason::Unauthorized | FailReason::Forbidden)
    }
}

/// The one classification table: status × the adapter's reading × headers → decision.
///
/// `refreshable`: the lane's token may be renewed and this job has not renewed it yet, so a 401 is
/// worth one more try with a new token.
pub fn classify(result: &Result<Answer, Transport>, refreshable: bool) -> Decision {
    let answer = match result {
        Ok(a) => a,
        Err(Transport::Timeout(_)) => return retry(RetryReason::Timeout, None),
        Err(Transport::Connect(_) | Transport::Other(_)) => {
            return retry(RetryReason::Connection, None);
        }
        Err(Transport::Tls(_)) => return fail(FailReason::Tls),
        Err(Transport::TooLarge(_)) => return fail(FailReason::TooLarge),
    };
    let s = answer.status;
    match answer.hint {
        Hint::Removed if s.is_success() => return Decision::Removed,
        Hint::NotAMember if s == StatusCode::NOT_FOUND => return Decision::AlreadyAbsent,
        Hint::NotAMemberUnconfirmed if s == StatusCode::NOT_FOUND => {
            return Decision::AbsentUnconfirmed;
        }
        Hint::Unreadable => return fail(FailReason::UnreadableList),
        Hint::BodyLost => return fail(FailReason::BodyLost),
        Hint::TokenDenied => {
            // Our client credentials were refused at the token endpoint; its 429/5xx are transient.
            return match s {
                StatusCode::TOO_MANY_REQUESTS => retry(RetryReason::RateLimited, answer.wait),
                s if s.is_server_error() => retry(RetryReason::ServerError, answer.wait),
                _ => fail(FailReason::Unauthorized),
            };
        }
        _ => {}
    }
    match s {
        StatusCode::TOO_MANY_REQUESTS => retry(RetryReason::RateLimited, answer.wait),
        StatusCode::CONFLICT => retry(RetryReason::Conflict, answer.wait),
        StatusCode::UNAUTHORIZED if refreshable => {
            retry(RetryReason::TokenRefresh, Some(Duration::ZERO))
        }
        StatusCode::UNAUTHORIZED => fail(FailReason::Unauthorized),
        StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST if answer.hint == Hint::TargetRefused => {
            fail(FailReason::Refused)
        }
        StatusCode::FORBIDDEN if answer.hint == Hint::OrganizationRefused => {
            fail(FailReason::OrganizationForbidden)
        }
        StatusCode::FORBIDDEN => fail(FailReason::Forbidden),
        StatusCode::NOT_FOUND => fail(FailReason::NotFound),
        // 408 Request Timeout and 425 Too Early are the server asking us to try again.
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY => {
            retry(RetryReason::ServerError, answer.wait)
        }
        s if s.is_server_error() => retry(RetryReason::ServerError, answer.wait),
        s if s.is_client_error() => fail(FailReason::Rejected),
        _ => fail(FailReason::Unexpected),
    }
}

fn retry(reason: RetryReason, after: Option<Duration>) -> Decision {
    Decision::Retry { reason, after }
}

fn fail(reason: FailReason) -> Decision {
    Decision::Fail { reason }
}

/// What to do on a 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    #[default]
    Retry,
    Fail,
}

/// The budgets of one provider entry's retries.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts for transient failures (5xx, timeouts, connection errors), the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry is scheduled past this time since the job's first attempt.
    pub max_elapsed: Duration,
    pub on_conflict: OnConflict,
    pub max_conflict_retries: u32,
    /// The total a job may wait on 429s; such waits do not count against `max_attempts`.
    pub max_rate_limit_wait: Duration,
}

impl Policy {
    /// The backoff schedule for one job: exponential from `base_delay`, capped at `max_delay`, with
    /// full jitter (a uniform draw in `[0, step]`, as in AWS's "Exponential Backoff and Jitter").
    ///
    /// backon provides the capped exponential steps; its own jitter adds `[0, step)` on top of the
    /// step, which spreads retries less than full jitter does, so we draw within the step instead.
    pub fn schedule(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .map(|step| {
                Duration::from_nanos(fastrand::u64(
                    0..=step.as_nanos().min(u64::MAX as u128) as u64,
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderError;

    fn answer(status: u16, hint: Hint) -> Result<Answer, Transport> {
        Ok(Answer::new(StatusCode::from_u16(status).unwrap(), hint))
    }

    fn with_wait(status: u16, secs: u64) -> Result<Answer, Transport> {
        let mut a = Answer::new(StatusCode::from_u16(status).unwrap(), Hint::None);
        a.wait = Some(Duration::from_secs(secs));
        a.error = Some(ProviderError::default());
        Ok(a)
    }

    /// The classification table, row by row.
    #[test]
    fn table() {
        use Decision::*;
        use FailReason as F;
        use RetryReason as R;
        let rows: Vec<(Result<Answer, Transport>, bool, Decision)> = vec![
            (answer(204, Hint::Removed), false, Removed),
            (answer(200, Hint::Removed), false, Removed),
            // A 2xx the page does not list is not taken as a removal.
            (
                answer(202, Hint::None),
                false,
                Fail {
                    reason: F::Unexpected,
                },
            ),
            (
                answer(302, Hint::None),
                false,
                Fail {
                    reason: F::Unexpected,
                },
            ),
            (answer(404, Hint::NotAMember), false, AlreadyAbsent),
            (
                answer(404, Hint::NotAMemberUnconfirmed),
                false,
                AbsentUnconfirmed,
            ),
            (
                answer(403, Hint::OrganizationRefused),
                false,
                Fail {
                    reason: F::OrganizationForbidden,
                },
            ),
            (
                answer(404, Hint::NoSuchOrganization),
                false,
                Fail {
                    reason: F::NotFound,
                },
            ),
            (
                answer(404, Hint::None),
                false,
                Fail {
                    reason: F::NotFound,
                },
            ),
            (
                with_wait(429, 7),
                false,
                Retry {
                    reason: R::RateLimited,
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                answer(429, Hint::None),
                false,
                Retry {
                    reason: R::RateLimited,
                    after: None,
                },
            ),
            (
                answer(409, Hint::None),
                false,
                Retry {
                    reason: R::Conflict,
                    after: None,
                },
            ),
            (
                answer(500, Hint::None),
                false,
                Retry {
                    reason: R::ServerError,
                    after: None,
                },
            ),
            (
                answer(501, Hint::None),
                false,
                Retry {
                    reason: R::ServerError,
                    after: None,
                },
            ),
            (
                with_wait(503, 3),
                false,
                Retry {
                    reason: R::ServerError,
                    after: Some(Duration::from_secs(3)),
                },
            ),
            (
                answer(504, Hint::None),
                false,
                Retry {
                    reason: R::ServerError,
                    after: None,
                },
            ),
            (
                answer(408, Hint::None),
                false,
                Retry {
                    reason: R::ServerError,
                    after: None,
                },
            ),
            (
                answer(401, Hint::None),
                false,
                Fail {
                    reason: F::Unauthorized,
                },
            ),
            (
                answer(401, Hint::TokenExpired),
                true,
                Retry {
                    reason: R::TokenRefresh,
                    after: Some(Duration::ZERO),
                },
            ),
            (
                answer(401, Hint::None),
                true,
                Retry {
                    reason: R::TokenRefresh,
                    after: Some(Duration::ZERO),
                },
            ),
            (
                answer(401, Hint::TokenDenied),
                true,
                Fail {
                    reason: F::Unauthorized,
                },
            ),
            (
                answer(400, Hint::TokenDenied),
                true,
                Fail {
                    reason: F::Unauthorized,
                },
            ),
            (
                answer(503, Hint::TokenDenied),
                true,
                Retry {
                    reason: R::ServerError,
                    after: None,
                },
            ),
            (
                answer(429, Hint::TokenDenied),
                true,
                Retry {
                    reason: R::RateLimited,
                    after: None,
                },
            ),
            (
                answer(403, Hint::None),
                false,
                Fail {
                    reason: F::Forbidden,
                },
            ),
            (
                answer(403, Hint::TargetRefused),
                false,
                Fail { reason: F::Refused },
            ),
            (
                answer(400, Hint::TargetRefused),
                false,
                Fail { reason: F::Refused },
            ),
            (
                answer(400, Hint::None),
                false,
                Fail {
                    reason: F::Rejected,
                },
            ),
            (
                answer(422, Hint::None),
                false,
                Fail {
                    reason: F::Rejected,
                },
            ),
            (
                Err(Transport::Timeout("t".into())),
                false,
                Retry {
                    reason: R::Timeout,
                    after: None,
                },
            ),
            (
                Err(Transport::Connect("c".into())),
                false,
                Retry {
                    reason: R::Connection,
                    after: None,
                },
            ),
            (
                Err(Transport::Other("o".into())),
                false,
                Retry {
                    reason: R::Connection,
                    after: None,
                },
            ),
            (
                Err(Transport::Tls("unknown issuer".into())),
                false,
                Fail { reason: F::Tls },
            ),
            (
                Err(Transport::TooLarge("big".into())),
                false,
                Fail {
                    reason: F::TooLarge,
                },
            ),
        ];
        for (i, (input, refreshable, want)) in rows.iter().enumerate() {
            assert_eq!(classify(input, *refreshable), *want, "row {i}: {input:?}");
        }
    }

    #[test]
    fn credential_failures_are_the_ones_that_open_circuits() {
        assert!(FailReason::Unauthorized.is_credential());
        assert!(FailReason::Forbidden.is_credential());
        assert!(!FailReason::Refused.is_credential());
        assert!(!FailReason::NotFound.is_credential());
        assert!(!FailReason::OrganizationForbidden.is_credential());
    }

    #[test]
    fn schedule_is_capped_and_jittered_within_each_step() {
        let p = Policy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(60),
            on_conflict: OnConflict::Retry,
            max_conflict_retries: 3,
            max_rate_limit_wait: Duration::from_secs(60),
        };
        let caps = [100u64, 200, 400, 800, 800, 800];
        let mut seen_below_half = false;
        for _ in 0..200 {
            for (d, cap) in p.schedule().zip(caps) {
                assert!(d <= Duration::from_millis(cap), "{d:?} over {cap} ms");
                seen_below_half |= d < Duration::from_millis(cap / 2);
            }
        }
        assert!(seen_below_half, "full jitter draws from the whole step");
    }
}

//! Why a job did not end `removed`: a closed set, each with its stable string for the report,
//! the audit log, the dead-letter headers and the metrics' labels, and whether a later try may
//! end otherwise.

use serde::{Serialize, Serializer};

use crate::job::Invalid;

/// Whether a job that `failed` for a reason may end otherwise when it is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lasting {
    /// The same again: the provider's own refusal of this request, or of this input.
    Yes,
    /// Perhaps not: budgets ran out, a credential was refused (fixed since, perhaps), an answer
    /// could not be read, the lane halted.
    No,
}

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal, $lasting:ident;)*) => {
        /// Why a job did not end `removed` (`already_absent` says why in its `absence` instead).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            /// The stable string the report, the audit log and the metrics carry.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }

            /// The reason a report line names, if it is one of ours.
            pub fn parse(text: &str) -> Option<Reason> {
                match text {
                    $($text => Some(Reason::$variant),)*
                    _ => None,
                }
            }

            /// Whether a job that failed for this reason fails alike when tried again.
            pub fn lasting(self) -> Lasting {
                match self {
                    $(Reason::$variant => Lasting::$lasting,)*
                }
            }
        }
    };
}

reasons! {
    // The input: a row or message that is not a job.
    /// A required field is empty or missing.
    MissingField = "missing_field", Yes;
    /// The provider named is not an entry of the config.
    UnknownProvider = "unknown_provider", Yes;
    /// A field's value does not have its format.
    BadFormat = "bad_format", Yes;
    /// A field that must be empty for this provider kind.
    NotApplicable = "not_applicable", Yes;
    /// The row could not be read at all.
    UnreadableRow = "unreadable_row", Yes;
    /// A copy of a job already in the file or run within `safety.window`.
    Duplicate = "duplicate", Yes;
    /// An identity system named a login that is not an email, and gave no email.
    NoEmail = "no_email", Yes;
    /// A protected account (`safety.protected`, or the organization's owner): never removed.
    Protected = "protected", Yes;

    // Never sent: the lane or the door stopped the job before its removal.
    /// The entry's or organization's preflight failed.
    PreflightFailed = "preflight_failed", No;
    /// The organization refused us (a 403 scoped to it) earlier.
    OrganizationRefused = "organization_refused", No;
    /// Consecutive credential refusals opened the lane's circuit.
    CircuitOpen = "circuit_open", No;
    /// The delivery was lost (another replica runs the job); the door does not record it.
    DeliveryLost = "delivery_lost", No;
    /// An intake in shadow mode: the plan is recorded, nothing is sent.
    Shadow = "shadow", No;
    /// Due later: `run --due-only` leaves it for `enqueue` to schedule.
    Scheduled = "scheduled", No;
    /// Cancelled while it waited for its due time (`offboard schedule cancel`, a reactivation).
    Cancelled = "cancelled", Yes;
    /// An operator rejected the quarantine that held the job.
    RejectedByOperator = "rejected_by_operator", Yes;

    // The lookup of an email.
    /// The search answered an id we cannot use.
    BadLookup = "bad_lookup", Yes;
    /// Several members have exactly this email.
    Ambiguous = "ambiguous", Yes;

    // The provider's answers (see `retry::FailReason`).
    /// 401: the credential is wrong, expired or revoked.
    Unauthorized = "unauthorized", No;
    /// 403 about us: the credential lacks the scope or role.
    Forbidden = "forbidden", No;
    /// 403 scoped to one organization or tenant.
    ForbiddenInOrganization = "forbidden_in_organization", No;
    /// The organization or tenant does not exist, or the URL is wrong.
    NotFound = "not_found", Yes;
    /// The provider refused this target (an owner who cannot be removed).
    Refused = "refused", Yes;
    /// Another 4xx: the request was not acceptable.
    Rejected = "rejected", Yes;
    /// A status the API page does not list as success, or a success naming another user.
    UnexpectedStatus = "unexpected_status", No;
    /// A conflict with `on_conflict = "fail"`, or past `max_conflict_retries`.
    Conflict = "conflict", Yes;
    /// Transient failures outlasted `max_attempts` or `max_elapsed_s`.
    RetriesExhausted = "retries_exhausted", No;
    /// 429s outlasted `max_rate_limit_wait_s`.
    RateLimitWaitExceeded = "rate_limit_wait_exceeded", No;
    /// The lane halted while the job waited to retry.
    LaneHalted = "lane_halted", No;
    /// The TLS handshake or certificate check failed.
    Tls = "tls", No;
    /// A member list answer was larger than `http.max_list_bytes`.
    AnswerTooLarge = "answer_too_large", No;
    /// A member list answer that is not the page's documented list.
    UnreadableList = "unreadable_list", No;
    /// The provider says the request lacked what we always send: lost on the way.
    RequestBodyLost = "request_body_lost", No;
    /// The removal answered 404, but the member list still shows the member.
    NotFoundButListed = "not_found_but_listed", Yes;
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a row or message was refused before anything was sent.
impl From<&Invalid> for Reason {
    fn from(why: &Invalid) -> Self {
        match why {
            Invalid::Missing(_) => Reason::MissingField,
            Invalid::UnknownProvider(_) => Reason::UnknownProvider,
            Invalid::Format { .. } => Reason::BadFormat,
            Invalid::NotApplicable { .. } => Reason::NotApplicable,
            Invalid::Unreadable(_) => Reason::UnreadableRow,
            Invalid::Duplicate { .. } | Invalid::DuplicateOf { .. } => Reason::Duplicate,
            Invalid::NoEmail(_) => Reason::NoEmail,
            Invalid::Protected { .. } => Reason::Protected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's format: these strings are what reports, dead letters and dashboards hold.
    /// Changing one breaks readers of old reports; add, never rename.
    #[test]
    fn every_reason_has_its_pinned_string_and_reads_back() {
        let pinned = [
            "missing_field",
            "unknown_provider",
            "bad_format",
            "not_applicable",
            "unreadable_row",
            "duplicate",
            "no_email",
            "protected",
            "preflight_failed",
            "organization_refused",
            "circuit_open",
            "delivery_lost",
            "shadow",
            "scheduled",
            "cancelled",
            "rejected_by_operator",
            "bad_lookup",
            "ambiguous",
            "unauthorized",
            "forbidden",
            "forbidden_in_organization",
            "not_found",
            "refused",
            "rejected",
            "unexpected_status",
            "conflict",
            "retries_exhausted",
            "rate_limit_wait_exceeded",
            "lane_halted",
            "tls",
            "answer_too_large",
            "unreadable_list",
            "request_body_lost",
            "not_found_but_listed",
        ];
        let ours: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(ours, pinned);
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(Reason::parse("left"), None);
    }

    /// The failures a resumed run tries again, as docs/safety.md lists them (under Resume).
    #[test]
    fn the_failures_a_later_try_may_change_are_these() {
        let transient: Vec<&str> = Reason::ALL
            .iter()
            .filter(|r| r.lasting() == Lasting::No)
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            transient,
            [
                "preflight_failed",
                "organization_refused",
                "circuit_open",
                "delivery_lost",
                "shadow",
                "scheduled",
                "unauthorized",
                "forbidden",
                "forbidden_in_organization",
                "unexpected_status",
                "retries_exhausted",
                "rate_limit_wait_exceeded",
                "lane_halted",
                "tls",
                "answer_too_large",
                "unreadable_list",
                "request_body_lost",
            ]
        );
    }
}

//! Why a raw job is not a job.

use super::ProviderKind;

/// Why a raw job is not a job. Its `Display` names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("unknown provider `{0}`: not an entry of the config")]
    UnknownProvider(String),
    #[error("field `{field}`: {reason}")]
    Format { field: &'static str, reason: String },
    #[error("field `{field}` must be empty for {kind} ({why})")]
    NotApplicable {
        field: &'static str,
        kind: ProviderKind,
        why: &'static str,
    },
    #[error("unreadable row: {0}")]
    Unreadable(String),
    #[error("duplicate of line {first_line} (same provider, organization and user)")]
    Duplicate { first_line: u64 },
    #[error(
        "duplicate of job {job_id} within safety.window (same provider, organization and user)"
    )]
    DuplicateOf { job_id: String },
    #[error(
        "the identity system named `{0}`, which is not an email address, and gave no email: nobody can be looked up by it"
    )]
    NoEmail(String),
    /// Not invalid, but never to be removed: it matches `safety.protected`.
    #[error("protected account (matches `{pattern}` in safety.protected): never removed")]
    Protected { pattern: String },
}

pub(super) fn bad(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid::Format {
        field,
        reason: reason.into(),
    }
}

//! A job as a door received it: strings as given, nothing checked yet.

use std::borrow::Cow;

use serde::Deserialize;

/// A job as a door received it: strings as given, nothing checked yet.
///
/// Borrowed where the door allows it (a CSV record, a JSON message without escapes), so reading a row
/// costs no allocation until validation keeps what it needs.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawJob<'a> {
    #[serde(borrow, default)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub organization: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub transfer_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub job_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub requested_by: Option<Cow<'a, str>>,
    /// An RFC 3339 instant with an offset: not removed before it.
    #[serde(borrow, default)]
    pub not_before: Option<Cow<'a, str>>,
    /// A date: removed at the end of it (midnight after it) in `time_zone`.
    #[serde(borrow, default)]
    pub last_day: Option<Cow<'a, str>>,
    /// An IANA time zone name, for `last_day`.
    #[serde(borrow, default)]
    pub time_zone: Option<Cow<'a, str>>,
    /// A due instant already resolved (offset applied) by the publisher of a scheduled job: only
    /// in messages, never a CSV column.
    #[serde(borrow, default)]
    pub due_at: Option<Cow<'a, str>>,
}

/// A field of a raw job, trimmed, with empty meaning absent.
pub(super) fn field<'s>(v: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

//! The wire format: job and event messages, their ids and properties, and a delivery read as a
//! job or an event (or why it is not one).

use std::borrow::Cow;
use std::collections::HashMap;

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, ShortString};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::doors::csv::COLUMNS;
use crate::job::{Invalid, Job, RawJob};

/// A job message: the CSV row's fields, JSON, with a job id always set by its publisher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobMessage {
    pub job_id: String,
    pub provider: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When a scheduled job is due, resolved by its publisher (time zone and offset applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

impl JobMessage {
    pub fn from_job(job: &Job) -> JobMessage {
        let (organization, transfer_to) = (
            job.subject.organization(),
            job.subject.transfer_to().map(|d| d.as_str().to_owned()),
        );
        JobMessage {
            job_id: job.id.to_string(),
            provider: job.provider.to_string(),
            user: job.subject.user(),
            organization,
            transfer_to,
            reason: job.reason.as_deref().map(str::to_owned),
            requested_by: job.requested_by.as_deref().map(str::to_owned),
            due_at: job.due.map(|t| t.to_string()),
        }
    }
}

/// A person-level event: one person, several providers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub targets: Vec<EventTarget>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    /// The door it came through (`okta`, `scim`); unset for a person-level message (`amqp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    /// From an intake in shadow mode: counted and recorded, never sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The identity system made the person active again: nothing is removed, and their
    /// removals still waiting for a due time are cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reactivated: bool,
}

impl Event {
    /// The door it came through, for the quarantine's counts: `okta`, `scim`, or `amqp` (a
    /// person-level message, whatever it says).
    pub fn door(&self) -> &'static str {
        match self.door.as_deref() {
            Some("okta") => "okta",
            Some("scim") => "scim",
            _ => "amqp",
        }
    }

    /// Who it is about, for the quarantine's counts: the first target's user, lowercased, so
    /// that one person's events through two doors count once.
    pub fn person(&self) -> String {
        self.targets
            .first()
            .map(|t| t.user.trim().to_lowercase())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventTarget {
    pub provider: String,
    pub user: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub transfer_to: Option<String>,
    /// Set by the intake: `user` is meant as the person's email (the identity system's login or
    /// email). One that is not an email address is no one to look up: the job ends `invalid`,
    /// reason `no_email`, rather than being taken for a provider's id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_email: bool,
}

impl EventTarget {
    /// Whether `user` must be an email address and is not one.
    pub fn lacks_email(&self) -> bool {
        let user = self.user.trim();
        self.by_email
            && !user
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
    }

    /// The target as a raw job of the event, with a job id stable across redeliveries.
    pub fn raw<'a>(&'a self, event: &'a Event, event_id: &str, index: usize) -> RawJob<'a> {
        RawJob {
            provider: Some(self.provider.as_str().into()),
            user: Some(self.user.as_str().into()),
            organization: self.organization.as_deref().map(Into::into),
            transfer_to: self.transfer_to.as_deref().map(Into::into),
            job_id: Some(format!("{event_id}:{index}").into()),
            reason: event.reason.as_deref().map(Into::into),
            requested_by: event.requested_by.as_deref().map(Into::into),
            ..RawJob::default()
        }
    }
}

/// An id for a message that carries none, stable across redeliveries and across upgrades: its
/// `message_id` property, else the SHA-256 of its body in hex (a specified hash: the standard
/// library's `DefaultHasher` may change between releases, and a worker after an upgrade must still
/// recognise a job it recorded before).
pub fn stable_id(props: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = props
        .message_id()
        .as_ref()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
    {
        return id.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    format!("msg-sha256-{}", hex::encode(digest))
}

/// Properties of a job message: persistent JSON.
pub fn job_properties(job_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(job_id.into())
}

/// A header's value as text.
pub fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::Timestamp(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A delivery that is not the message its queue carries: the id its record gets (the message's
/// stable id) and why.
#[derive(Debug)]
pub struct Unreadable {
    pub id: String,
    pub why: Invalid,
}

/// A delivery of a lane's queue read as a job: its fields as sent, the job id always set (the
/// message's own, else its stable id). Validation is the job's, not the door's.
/// A field the job message does not know refuses it, named: a `not_before` this version does not
/// read would otherwise be removed now.
pub fn read_job(delivery: &Delivery) -> Result<RawJob<'_>, Unreadable> {
    job_from(&delivery.properties, &delivery.data)
}

/// [`read_job`] over a message's properties and body.
fn job_from<'b>(props: &BasicProperties, body: &'b [u8]) -> Result<RawJob<'b>, Unreadable> {
    let fallback = || stable_id(props, body);
    let unreadable = |why: String| Unreadable {
        id: fallback(),
        why: Invalid::Unreadable(why),
    };
    let mut raw = serde_json::from_slice::<RawJob<'_>>(body)
        .map_err(|e| unreadable(format!("not a job message: {e}")))?;
    let fields = serde_json::from_slice::<HashMap<Cow<'_, str>, IgnoredAny>>(body)
        .map_err(|e| unreadable(format!("not a job message: {e}")))?;
    let mut unknown: Vec<&str> = fields
        .keys()
        .map(|k| k.as_ref())
        .filter(|k| !COLUMNS.contains(k) && *k != "due_at")
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(unreadable(format!(
            "a job message with fields this version does not read: {}; nothing is sent (it reads: {})",
            unknown
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", "),
            COLUMNS.join(", ")
        )));
    }
    if raw.job_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
        raw.job_id = Some(fallback().into());
    }
    Ok(raw)
}

/// A delivery of the intake queue read as a person-level event with at least one target, and its
/// id (the event's own, else the message's stable id).
pub fn read_event(delivery: &Delivery) -> Result<(Event, String), Unreadable> {
    let id = stable_id(&delivery.properties, &delivery.data);
    let event = match serde_json::from_slice::<Event>(&delivery.data) {
        Ok(e) if !e.targets.is_empty() => e,
        Ok(_) => {
            return Err(Unreadable {
                id,
                why: Invalid::Missing("targets"),
            });
        }
        Err(e) => {
            return Err(Unreadable {
                id,
                why: Invalid::Unreadable(format!("not an event: {e}")),
            });
        }
    };
    let id = event
        .event_id
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(id);
    Ok((event, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_id_prefers_message_id_and_else_hashes_the_body() {
        let p = BasicProperties::default().with_message_id("m-1".into());
        assert_eq!(stable_id(&p, b"x"), "m-1");
        let none = BasicProperties::default();
        assert_ne!(
            stable_id(&none, b"{\"a\":1}"),
            stable_id(&none, b"{\"a\":2}")
        );
        // Pinned: the same body gets the same id on every build, toolchain and machine.
        assert_eq!(
            stable_id(&none, b"{\"a\":1}"),
            "msg-sha256-015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn an_event_splits_into_jobs_with_stable_ids() {
        let e: Event = serde_json::from_str(
            r#"{"targets":[{"provider":"factory","user":"a@b.co"},{"provider":"cognee","user":"u","organization":"t"}],"reason":"left","event_id":"ev-7"}"#,
        )
        .unwrap();
        let raws: Vec<_> = e
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| t.raw(&e, "ev-7", i))
            .collect();
        assert_eq!(raws[1].job_id.as_deref(), Some("ev-7:1"));
        assert_eq!(raws[1].organization.as_deref(), Some("t"));
        assert_eq!(raws[0].reason.as_deref(), Some("left"));
        assert!(serde_json::from_str::<Event>(r#"{"targets":[],"extra":1}"#).is_err());
    }

    #[test]
    fn a_job_message_with_a_field_it_does_not_read_is_refused_naming_it() {
        let props = BasicProperties::default().with_message_id("m-9".into());
        let ok = job_from(
            &props,
            br#"{"provider":"factory","user":"a@b.co","job_id":""}"#,
        )
        .expect("every field known");
        assert_eq!(
            ok.job_id.as_deref(),
            Some("m-9"),
            "an empty job id takes the message's"
        );
        let body = br#"{"provider":"factory","user":"a@b.co","not_before":"2027-01-01T00:00:00Z","notify":1,"note":1}"#;
        let e = job_from(&props, body).expect_err("unknown fields");
        assert_eq!(e.id, "m-9");
        let why = e.why.to_string();
        assert!(why.contains("`note`, `notify`"), "{why}");
        assert!(!why.contains("`not_before`,"), "a field it reads: {why}");
        assert!(matches!(e.why, Invalid::Unreadable(_)), "{:?}", e.why);
    }
}

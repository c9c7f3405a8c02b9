//! Aitronos: `DELETE {base}/v1/organizations/{org_*}/users/{usr_*}` with JSON
//! `{"confirm": true, "transfer_resources_to_department_id"?}`; `X-API-Key` or a Bearer JWT.
//! 204 on success; errors as `{"success": false, "error": {"code", "message", "trace_id", ...}}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{self, Cursor, MemberPage, Unreadable};

/// Members per search page (the API's maximum `take`).
const PAGE: u32 = 100;
use crate::job::{ProviderKind, Target};

pub struct Aitronos {
    pub(super) base: String,
}

#[derive(Serialize)]
struct Body<'a> {
    /// Without it the API answers 422 CONFIRMATION_REQUIRED.
    confirm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_resources_to_department_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Inner,
}

#[derive(Deserialize)]
struct Inner {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    trace_id: Option<String>,
}

/// Where a page starts: the members the pages before it held (carried in the cursor).
fn skip(at: &Cursor) -> u64 {
    at.offset()
}

/// The search answer in either of its documented shapes: `{"users", "total_users_count", "skip",
/// "take"}` (the search page) or `{"members", "total", "skip", "limit"}` (another page). Each
/// list comes with its own total; a body with both lists, or a list without its total, is
/// neither.
#[derive(Deserialize)]
struct List {
    #[serde(default)]
    users: Option<Vec<User>>,
    #[serde(default)]
    total_users_count: Option<u64>,
    #[serde(default)]
    members: Option<Vec<User>>,
    #[serde(default)]
    total: Option<u64>,
}

/// A user of the list: `id` is the membership (`orguser_*`), `user_id` the `usr_*` a removal
/// takes.
#[derive(Deserialize)]
struct User {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl Adapter for Aitronos {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aitronos
    }

    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder {
        let Target::Aitronos {
            organization,
            user,
            transfer_to,
        } = target
        else {
            unreachable!("checked by Provider::remove")
        };
        http.delete(format!(
            "{}/v1/organizations/{}/users/{}",
            self.base,
            organization.as_str(),
            user.as_str()
        ))
        .json(&Body {
            confirm: true,
            transfer_resources_to_department_id: transfer_to.as_ref().map(|d| d.as_str()),
        })
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let envelope = http::json::<Envelope>(body).map(|e| e.error);
        let code = envelope.as_ref().map(|e| e.code.as_str()).unwrap_or("");
        let hint = match status {
            StatusCode::NO_CONTENT => Hint::Removed,
            // The code for an unknown user is not documented (likely USER_NOT_FOUND), and a user
            // id that exists nowhere (a typo) may answer the same: believed only once the member
            // list read after it agrees.
            StatusCode::NOT_FOUND if code.contains("ORGANIZATION") || code.contains("ORG_") => {
                Hint::NoSuchOrganization
            }
            StatusCode::NOT_FOUND if code.contains("USER") || code.contains("MEMBER") => {
                Hint::NotAMemberUnconfirmed
            }
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            // We always send `confirm: true`: the body was lost on the way (a proxy that strips
            // DELETE bodies). Every removal will meet the same fate, so the lane halts.
            StatusCode::UNPROCESSABLE_ENTITY if code == "CONFIRMATION_REQUIRED" => Hint::BodyLost,
            StatusCode::FORBIDDEN if code == "CANNOT_DELETE_OWNER" => Hint::TargetRefused,
            // No access to this organization: its jobs fail, the key's other organizations go on.
            StatusCode::FORBIDDEN if code == "ORGANIZATION_ACCESS_DENIED" => {
                Hint::OrganizationRefused
            }
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.request_id = envelope
            .as_ref()
            .and_then(|e| e.trace_id.clone())
            .or_else(|| http::header(headers, "x-request-id").map(str::to_owned));
        answer.wait = http::retry_after(headers, std::time::SystemTime::now())
            .or_else(|| reset(headers))
            .or_else(|| http::go_duration_header(headers, "x-ratelimit-reset-requests"));
        if !status.is_success() {
            answer.error = Some(match envelope {
                Some(e) => ProviderError {
                    code: Some(e.code),
                    message: e.message,
                },
                None => ProviderError::unparsed(status, body),
            });
        }
        answer
    }

    /// `POST {base}/v1/organizations/{org}/users` with `{"search_term", "take", "skip"}`: a
    /// substring search, 100 a page; an empty term lists every member.
    fn list(
        &self,
        http: &Client,
        organization: Option<&str>,
        email: Option<&str>,
        at: &Cursor,
    ) -> RequestBuilder {
        let body = serde_json::json!({
            "search_term": email.unwrap_or(""),
            "take": PAGE,
            "skip": skip(at),
        });
        http.post(self.members_url(organization)).json(&body)
    }

    /// The documented answer lists `users` with `id` (the membership, `orguser_*`) and `user_id`
    /// (the `usr_*` the removal takes), and `total_users_count`; another page shows `members`
    /// and `total`. Either is read, never a mix; every user needs `user_id` and `email`.
    fn read_list(&self, body: &[u8], at: &Cursor) -> Result<MemberPage, Unreadable> {
        let list: List = lookup::parse(body)?;
        let (name, users, total) = match list {
            List {
                users: Some(users),
                total_users_count: Some(total),
                members: None,
                ..
            } => ("users", users, total),
            List {
                members: Some(members),
                total: Some(total),
                users: None,
                ..
            } => ("members", members, total),
            List { users: Some(_), .. } => {
                return Err(Unreadable::new(
                    "`users` without `total_users_count` (or beside `members`): not the documented answer",
                ));
            }
            List {
                members: Some(_), ..
            } => {
                return Err(Unreadable::new(
                    "`members` without `total`: not the documented answer",
                ));
            }
            _ => {
                return Err(Unreadable::new(
                    "no `users` (nor `members`) list: not the documented answer",
                ));
            }
        };
        let got = users.len() as u64;
        let members = users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let what = format!("{name}[{i}]");
                lookup::member(&what, (u.user_id, "user_id"), u.email)
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        // The next page starts after what this one held, which may be fewer than asked for (a
        // server capping `take`): skipping by the page size would pass members by unread. An
        // empty page before the total is reached ends the read short, and the count says so.
        let seen = skip(at) + got;
        let more = got > 0 && seen < total;
        Ok(MemberPage {
            members,
            next: more.then(|| at.next(Some(seen.to_string()))),
            total: Some(total),
        })
    }

    fn probe(&self, http: &Client, organization: Option<&str>) -> RequestBuilder {
        http.post(self.members_url(organization))
            .json(&serde_json::json!({"search_term": "", "take": 1}))
    }

    fn whole_list(&self) -> bool {
        false
    }
}

impl Aitronos {
    /// Every Aitronos job names its organization (validation sees to it); without one the URL
    /// is one the API answers 404, never another organization's.
    fn members_url(&self, organization: Option<&str>) -> String {
        let org = organization.unwrap_or_default();
        format!("{}/v1/organizations/{org}/users", self.base)
    }
}

/// `X-RateLimit-Reset`: one page says a Unix time, another reads like seconds. A value past the
/// year 2001 in seconds can only be a Unix time.
fn reset(headers: &HeaderMap) -> Option<std::time::Duration> {
    super::quota::reset_in(
        http::header(headers, "x-ratelimit-reset")?,
        std::time::SystemTime::now(),
    )
}

//! Factory: `DELETE {base}/api/v0/organization/users?email=E`, `Authorization: Bearer fk-...`.
//! 204 on success (empty body or `{}`); errors as `{"detail", "status", "title", "metadata"?}`.
//! Members: `GET {base}/api/v0/organization/users?limit=&cursor=` (no email filter), answering
//! `{"users": [{id, email, ...}], "pagination": {"hasMore", "nextCursor"}}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{self, Cursor, MemberPage, Unreadable};
use crate::job::{ProviderKind, Target};

pub struct Factory {
    pub(super) base: String,
}

#[derive(Deserialize)]
struct Envelope {
    detail: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    status: Option<serde_json::Number>,
}

impl Envelope {
    /// The page makes `detail`, `status` and `title` all required: a body with `detail` alone is
    /// some other server's answer (FastAPI's default 404 is `{"detail": "Not Found"}`).
    fn is_complete(&self) -> bool {
        self.title.is_some() && self.status.is_some()
    }
}

/// The member list's answer: the wrapper and paging are required, records are read one by one.
#[derive(Deserialize)]
struct List {
    users: Vec<User>,
    pagination: Pagination,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(rename = "hasMore")]
    has_more: bool,
    #[serde(default, rename = "nextCursor")]
    next_cursor: Option<String>,
}

impl Adapter for Factory {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Factory
    }

    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder {
        let Target::Factory { email } = target else {
            unreachable!("checked by Provider::remove")
        };
        http.delete(format!("{}/api/v0/organization/users", self.base))
            .query(&[("email", email.as_str())])
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let envelope = http::json::<Envelope>(body);
        let hint = match status {
            StatusCode::NO_CONTENT => Hint::Removed,
            // The page lists a 404 with its error envelope and says nothing of what it means:
            // likely no such member or invitation, but believed only once the member list read
            // after it agrees. A bare 404 is a wrong URL, not an absent member.
            StatusCode::NOT_FOUND if envelope.as_ref().is_some_and(Envelope::is_complete) => {
                Hint::NotAMemberUnconfirmed
            }
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.request_id = http::header(headers, "x-request-id").map(str::to_owned);
        answer.wait = http::retry_after(headers, std::time::SystemTime::now());
        if !status.is_success() {
            answer.error = Some(match envelope {
                Some(e) => ProviderError {
                    code: e.title,
                    message: e.detail,
                },
                None => ProviderError::unparsed(status, body),
            });
        }
        answer
    }

    /// Every member, 100 a page (`limit` is a string on the page, 1 to 100).
    fn list(
        &self,
        http: &Client,
        _organization: Option<&str>,
        _email: Option<&str>,
        at: &Cursor,
    ) -> RequestBuilder {
        let request = http
            .get(format!("{}/api/v0/organization/users", self.base))
            .query(&[("limit", "100")]);
        match &at.token {
            Some(cursor) => request.query(&[("cursor", cursor.as_str())]),
            None => request,
        }
    }

    /// `{"users": [{id, email, ...}], "pagination": {"hasMore", "nextCursor"}}`, nothing else:
    /// every user with its `id` and `email`; more pages only with a cursor to continue at.
    fn read_list(&self, body: &[u8], at: &Cursor) -> Result<MemberPage, Unreadable> {
        let list: List = lookup::parse(body)?;
        let members = list
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let what = format!("users[{i}]");
                lookup::member(&what, (u.id, "id"), u.email)
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        let next = match (list.pagination.has_more, list.pagination.next_cursor) {
            (true, Some(cursor)) if !cursor.is_empty() => Some(at.next(Some(cursor))),
            (true, _) => {
                return Err(Unreadable::new(
                    "`pagination.hasMore` is true without a `pagination.nextCursor` to continue at",
                ));
            }
            (false, _) => None,
        };
        Ok(MemberPage {
            members,
            next,
            total: None,
        })
    }

    fn probe(&self, http: &Client, _organization: Option<&str>) -> RequestBuilder {
        http.get(format!("{}/api/v0/organization/users", self.base))
            .query(&[("limit", "1")])
    }

    fn whole_list(&self) -> bool {
        true
    }
}

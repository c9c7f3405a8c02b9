//! Aerospike Cloud: `DELETE {base}/organization/members/{uuid}`, `Authorization: Bearer <token>` from
//! an OAuth2 client-credentials grant. 204 with `X-Request-Id`; errors as `{"code", "message"}` on
//! the page and as RFC 9457 problem details (`type`, `title`, `status`, `detail`) in the newer spec.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{self, Cursor, MemberPage, Unreadable};

/// Members asked for per list page: the OpenAPI's `LimitParam` is 1 to 100 ("Must be between 1
/// and 100"), and a server that checks it answers 400 to anything else. The docs also say paging
/// is "currently disabled" and the whole set comes back: `count` and `meta` then say so.
const PAGE: u64 = 100;
use crate::job::{ProviderKind, Target};

pub struct Aerospike {
    pub(super) base: String,
}

/// Both error shapes in one: the page's `{code, message}` and problem details.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// `MemberCollectionSchema`: `count` and `members` required; `meta` ({total, limit, offset},
/// each required) is nullable in the schema, but without it nothing says the list is complete,
/// so it is required here.
#[derive(Deserialize)]
struct List {
    count: u64,
    meta: Option<Meta>,
    members: Vec<Record>,
}

#[derive(Deserialize)]
struct Meta {
    total: u64,
    offset: u64,
}

/// `MemberSchema`: a user (`id`, `email` required) with its `role`.
#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// `OrgAdmin` or `OrgOwner`.
    #[serde(default)]
    role: Option<String>,
}

impl Adapter for Aerospike {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aerospike
    }

    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder {
        let Target::Aerospike { user } = target else {
            unreachable!("checked by Provider::remove")
        };
        http.delete(format!("{}/organization/members/{user}", self.base))
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let envelope = http::json::<Envelope>(body)
            .filter(|e| e.code.is_some() || e.kind.is_some() || e.message.is_some());
        let code = envelope
            .as_ref()
            .and_then(|e| e.kind.clone().or_else(|| e.code.clone()));
        let c = code.as_deref().unwrap_or("");
        let hint = match status {
            StatusCode::NO_CONTENT => Hint::Removed,
            // The page lists no 404 for this call: one in the API's own error shape may mean the
            // member is gone, or a wrong URL. The lane believes it only once the member list
            // (read after this answer) no longer shows the member.
            StatusCode::NOT_FOUND if envelope.is_some() => Hint::NotAMemberUnconfirmed,
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            StatusCode::UNAUTHORIZED if c.contains("token-expired") || c == "invalid_token" => {
                Hint::TokenExpired
            }
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.request_id = http::header(headers, "x-request-id").map(str::to_owned);
        answer.wait = http::retry_after(headers, std::time::SystemTime::now());
        if !status.is_success() {
            answer.error = Some(match envelope {
                Some(e) => ProviderError {
                    code,
                    message: e.detail.or(e.message).or(e.title).unwrap_or_default(),
                },
                None => ProviderError::unparsed(status, body),
            });
        }
        answer
    }

    /// `GET {base}/organization/members?limit=&offset=`: every member; no email filter.
    fn list(
        &self,
        http: &Client,
        _organization: Option<&str>,
        _email: Option<&str>,
        at: &Cursor,
    ) -> RequestBuilder {
        let offset = at.token.clone().unwrap_or_else(|| "0".into());
        http.get(format!("{}/organization/members", self.base))
            .query(&[("limit", &PAGE.to_string()), ("offset", &offset)])
    }

    /// `{"count", "meta": {"total", "limit", "offset"}, "members": [...]}` exactly: `count` must be
    /// the page's length, `meta.offset` the offset asked for, and every member needs `id`,
    /// `email` and its `role` (`OrgOwner` marks the owner).
    fn read_list(&self, body: &[u8], at: &Cursor) -> Result<MemberPage, Unreadable> {
        let list: List = lookup::parse(body)?;
        let got = list.members.len() as u64;
        if list.count != got {
            return Err(Unreadable(format!(
                "`count` is {} but `members` holds {got}",
                list.count
            )));
        }
        let asked = at.offset();
        let members = list
            .members
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let what = format!("members[{i}]");
                let mut m = lookup::member(&what, (r.id, "id"), r.email)?;
                m.owner = match lookup::required(r.role, &what, "role")?.as_str() {
                    "OrgOwner" => true,
                    "OrgAdmin" => false,
                    other => {
                        return Err(Unreadable(format!(
                            "{what} has `role` {other:?}, neither OrgAdmin nor OrgOwner"
                        )));
                    }
                };
                Ok(m)
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        let Some(meta) = list.meta else {
            return Err(Unreadable::new(
                "`meta` is null: nothing says how many members there are, so the list cannot be proven complete",
            ));
        };
        if meta.offset != asked {
            return Err(Unreadable(format!(
                "offset {asked} was asked for and `meta.offset` says {}: the server did not page as asked",
                meta.offset
            )));
        }
        let reached = asked + got;
        let more = got > 0 && reached < meta.total;
        let next = more.then(|| at.next(Some(reached.to_string())));
        let total = Some(meta.total);
        Ok(MemberPage {
            members,
            next,
            total,
        })
    }

    fn probe(&self, http: &Client, _organization: Option<&str>) -> RequestBuilder {
        http.get(format!("{}/organization/members", self.base))
            .query(&[("limit", "1"), ("offset", "0")])
    }

    fn owner_listed(&self) -> bool {
        true
    }

    fn whole_list(&self) -> bool {
        true
    }
}

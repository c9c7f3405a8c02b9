//! Aerospike Cloud: `DELETE {base}/organization/members/{uuid}`, `Authorization: Bearer <token>` from
//! an OAuth2 client-credentials grant. 204 with `X-Request-Id`; errors as `{"code", "message"}` on
//! the page and as RFC 9457 problem details (`type`, `title`, `status`, `detail`) in the newer spec.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{AnyList, Cursor, IdField, MemberPage, members};

/// Members asked for per list page. The docs say paging is "currently disabled" and the whole
/// set comes back; if it ever is enabled, `meta` says where to go on.
const PAGE: u64 = 1000;
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

    /// `{"count", "meta": {"total", "limit", "offset"}, "members": [...]}`, or a bare array.
    fn read_list(&self, body: &[u8], at: &Cursor) -> Option<MemberPage> {
        let (list, paging) = AnyList::read(body)?.split()?;
        let got = list.len() as u64;
        let members = members(list, IdField::Id)?;
        let asked: u64 = at
            .token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let next = match paging.meta {
            Some(meta) => {
                let reached = meta.offset.unwrap_or(asked) + got;
                (got > 0 && meta.total.is_some_and(|t| reached < t))
                    .then(|| at.next(Some(reached.to_string())))
            }
            // A bare array exactly as long as asked for may be the first page of more, if paging
            // is ever enabled: read on (a page read again ends the read, see `lookup::extend`).
            // A shorter one is the whole set.
            None => (got == PAGE).then(|| at.next(Some((asked + got).to_string()))),
        };
        Some(MemberPage { members, next })
    }

    fn probe(&self, http: &Client, _organization: Option<&str>) -> RequestBuilder {
        http.get(format!("{}/organization/members", self.base))
            .query(&[("limit", "1"), ("offset", "0")])
    }

    fn whole_list(&self) -> bool {
        true
    }
}

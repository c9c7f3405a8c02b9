//! Aerospike Cloud: `DELETE {base}/organization/members/{uuid}`, `Authorization: Bearer <token>` from
//! an OAuth2 client-credentials grant. 204 with `X-Request-Id`; errors as `{"code", "message"}` on
//! the page and as RFC 9457 problem details (`type`, `title`, `status`, `detail`) in the newer spec.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
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
            // The key picks the organization: a 404 in the API's own error shape is the member.
            StatusCode::NOT_FOUND if envelope.is_some() => Hint::NotAMember,
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

    /// `GET {base}/organization/members`: every member, no filter, no paging.
    fn lookup(
        &self,
        http: &Client,
        _organization: Option<&str>,
        _email: &str,
        _page: u32,
    ) -> Option<RequestBuilder> {
        Some(http.get(format!("{}/organization/members", self.base)))
    }

    fn read_lookup(&self, body: &[u8], _page: u32) -> Option<super::lookup::MemberPage> {
        super::lookup::read_whole_list(body)
    }

    fn whole_list(&self) -> bool {
        true
    }
}

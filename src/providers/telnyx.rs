//! Telnyx: `POST {base}/v2/organizations/users/{id}/actions/remove`, no body, `Authorization: Bearer`.
//! 200 with `{"data": OrganizationUser}`; errors as `{"errors": [{"code": "10005", "title", "detail"}]}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{AnyList, MemberPage};
use crate::job::{ProviderKind, Target};

pub struct Telnyx {
    pub(super) base: String,
}

#[derive(Deserialize)]
struct Envelope {
    errors: Vec<Error>,
}

#[derive(Deserialize)]
struct Error {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct Removed {
    #[allow(dead_code)]
    data: serde::de::IgnoredAny,
}

impl Adapter for Telnyx {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Telnyx
    }

    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder {
        let Target::Telnyx { user } = target else {
            unreachable!("checked by Provider::remove")
        };
        http.post(format!(
            "{}/v2/organizations/users/{}/actions/remove",
            self.base,
            user.as_str()
        ))
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let first = http::json::<Envelope>(body).and_then(|e| e.errors.into_iter().next());
        let code = first.as_ref().and_then(|e| e.code.as_deref()).unwrap_or("");
        let detail = first
            .as_ref()
            .and_then(|e| e.detail.as_deref())
            .unwrap_or("");
        let hint = match status {
            // Success is a 200 carrying the removed user.
            StatusCode::OK if http::json::<Removed>(body).is_some() => Hint::Removed,
            // The key picks the organization, so a 10005 on this path can only mean the user.
            StatusCode::NOT_FOUND if code == "10005" => Hint::NotAMember,
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            // What removing the organization owner returns is not documented.
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                if detail.to_ascii_lowercase().contains("owner") =>
            {
                Hint::TargetRefused
            }
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.request_id = http::header(headers, "x-request-id").map(str::to_owned);
        answer.wait = http::retry_after(headers, std::time::SystemTime::now())
            .or_else(|| http::seconds_header(headers, "x-ratelimit-reset"));
        if hint != Hint::Removed {
            answer.error = Some(match first {
                Some(e) => ProviderError {
                    code: e.code,
                    message: match (e.title, e.detail) {
                        (Some(t), Some(d)) => format!("{t}: {d}"),
                        (t, d) => t.or(d).unwrap_or_default(),
                    },
                },
                None => ProviderError::unparsed(status, body),
            });
        }
        answer
    }

    /// `GET {base}/v2/organizations/users?filter[email]=E&page[size]=250&page[number]=N`: a partial
    /// match, paged.
    fn lookup(
        &self,
        http: &Client,
        _organization: Option<&str>,
        email: &str,
        page: u32,
    ) -> Option<RequestBuilder> {
        let number = (page + 1).to_string();
        Some(
            http.get(format!("{}/v2/organizations/users", self.base))
                .query(&[
                    ("filter[email]", email),
                    ("page[size]", "250"),
                    ("page[number]", number.as_str()),
                ]),
        )
    }

    fn read_lookup(&self, body: &[u8], page: u32) -> Option<MemberPage> {
        #[derive(Deserialize)]
        struct Paged {
            #[serde(default)]
            meta: Option<Meta>,
        }
        #[derive(Deserialize)]
        struct Meta {
            #[serde(default)]
            total_pages: Option<u32>,
        }
        let members = http::json::<AnyList>(body)?.members();
        let total_pages = http::json::<Paged>(body)
            .and_then(|p| p.meta)
            .and_then(|m| m.total_pages);
        let more = match total_pages {
            Some(t) => page + 1 < t,
            None => members.len() == 250,
        };
        Some(MemberPage { members, more })
    }
}

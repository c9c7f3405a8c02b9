//! Telnyx: `POST {base}/v2/organizations/users/{id}/actions/remove`, no body, `Authorization: Bearer`.
//! 200 with `{"data": OrganizationUser}`; errors as `{"errors": [{"code": "10005", "title", "detail"}]}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{AnyList, Cursor, IdField, MemberPage, members};

/// Members per list page.
const PAGE: u32 = 250;
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
            // 10005 is also what a wrong URL answers ("resource or URL could not be found"): the
            // lane believes it only once the entry's preflight has read the member list at the
            // same base URL, and the key picks the organization, so then it can only be the user.
            StatusCode::NOT_FOUND if code == "10005" => Hint::NotAMember,
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            // The page's 403 on this path is 10010 "not authorized": what it answers for the
            // organization's owner. It is about this user, never a reason to halt the lane.
            StatusCode::FORBIDDEN if code == "10010" => Hint::TargetRefused,
            // What removing the owner returns is not documented beyond that: read the words.
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
    /// match, paged; without `filter[email]` every member.
    fn list(
        &self,
        http: &Client,
        _organization: Option<&str>,
        email: Option<&str>,
        at: &Cursor,
    ) -> RequestBuilder {
        let number = (at.page + 1).to_string();
        let size = PAGE.to_string();
        let request = http.get(format!("{}/v2/organizations/users", self.base));
        let request = match email {
            Some(e) => request.query(&[("filter[email]", e)]),
            None => request,
        };
        request.query(&[
            ("page[size]", size.as_str()),
            ("page[number]", number.as_str()),
        ])
    }

    fn read_list(&self, body: &[u8], at: &Cursor) -> Option<MemberPage> {
        let (list, paging) = AnyList::read(body)?.split()?;
        let got = list.len();
        let members = members(list, IdField::Id)?;
        let more = match paging.meta.and_then(|m| m.total_pages) {
            Some(t) => at.page + 1 < t,
            None => got == PAGE as usize,
        };
        Some(MemberPage {
            members,
            next: more.then(|| at.next(None)),
        })
    }

    fn probe(&self, http: &Client, _organization: Option<&str>) -> RequestBuilder {
        http.get(format!("{}/v2/organizations/users", self.base))
            .query(&[("page[size]", "1")])
    }

    fn whole_list(&self) -> bool {
        false
    }
}

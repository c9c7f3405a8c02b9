//! Telnyx: `POST {base}/v2/organizations/users/{id}/actions/remove`, no body, `Authorization: Bearer`.
//! 200 with `{"data": OrganizationUser}`; errors as `{"errors": [{"code": "10005", "title", "detail"}]}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{self, Cursor, Member, MemberPage, Unreadable};

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

/// The 200 of a removal: `{"data": OrganizationUser}`, naming the user removed.
#[derive(Deserialize)]
struct Removed {
    data: RemovedUser,
}

#[derive(Deserialize)]
struct RemovedUser {
    id: String,
}

/// The list answer: `{"data": [OrganizationUser], "meta": {page_number, page_size, total_pages,
/// total_results}}`.
#[derive(Deserialize)]
struct List {
    data: Vec<User>,
    meta: ListMeta,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// `organization_owner` or `organization_sub_user`.
    #[serde(default)]
    record_type: Option<String>,
}

/// The list's paging: which page this is, how many there are and how many users in all (the
/// count a complete read must reach, and may not change while it is read).
#[derive(Deserialize)]
struct ListMeta {
    page_number: u32,
    total_pages: u32,
    total_results: u64,
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
        let removed = (status == StatusCode::OK)
            .then(|| http::json::<Removed>(body))
            .flatten();
        let hint = match status {
            // Success is a 200 carrying the removed user, by its id.
            StatusCode::OK if removed.is_some() => Hint::Removed,
            // 10005 is "the requested resource or URL could not be found": a user no longer in
            // the organization, or a wrong URL. Believed only once the member list agrees.
            StatusCode::NOT_FOUND if code == "10005" => Hint::NotAMemberUnconfirmed,
            StatusCode::NOT_FOUND => Hint::NoSuchOrganization,
            // 403 10010 is what the page says: "the user doesn't have the required permissions"
            // (our key), read as any 403 about us. The owner is protected before sending.
            StatusCode::FORBIDDEN if code == "10010" => Hint::None,
            // What removing the owner returns is not documented beyond that: read the words.
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                if detail.to_ascii_lowercase().contains("owner") =>
            {
                Hint::TargetRefused
            }
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.subject = removed.map(|r| r.data.id);
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

    /// `data` and `meta` as the list answers them; every user with `id` and `email`, the owner
    /// known by `record_type`. A page other than the one asked for, or a count that disagrees with
    /// `meta.total_results`, is not read as the list.
    fn read_list(&self, body: &[u8], at: &Cursor) -> Result<MemberPage, Unreadable> {
        let list: List = lookup::parse(body)?;
        let asked = at.page + 1;
        if list.meta.page_number != asked {
            return Err(Unreadable(format!(
                "page {asked} was asked for and `meta.page_number` says {}: the server did not page as asked",
                list.meta.page_number
            )));
        }
        let members = list
            .data
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let what = format!("data[{i}]");
                let mut m = lookup::member(&what, (u.id, "id"), u.email)?;
                m.owner = match lookup::required(u.record_type, &what, "record_type")?.as_str() {
                    "organization_owner" => true,
                    "organization_sub_user" => false,
                    other => {
                        return Err(Unreadable(format!(
                            "{what} has `record_type` {other:?}, neither organization_owner nor organization_sub_user"
                        )));
                    }
                };
                Ok(m)
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        Ok(MemberPage {
            members,
            next: (asked < list.meta.total_pages).then(|| at.next(None)),
            total: Some(list.meta.total_results),
        })
    }

    fn probe(&self, http: &Client, _organization: Option<&str>) -> RequestBuilder {
        http.get(format!("{}/v2/organizations/users", self.base))
            .query(&[("page[size]", "1")])
    }

    fn owner_listed(&self) -> bool {
        true
    }

    /// "An organization has exactly one `organization_owner`": a whole list with none, or more
    /// than one, is not the organization's list.
    fn check_whole(&self, members: &[Member]) -> Result<(), Unreadable> {
        match members.iter().filter(|m| m.owner).count() {
            1 => Ok(()),
            n => Err(Unreadable(format!(
                "the whole list holds {n} `organization_owner` records; an organization has exactly one"
            ))),
        }
    }

    fn whole_list(&self) -> bool {
        false
    }
}

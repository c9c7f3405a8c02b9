//! Cognee: `DELETE {base}/api/v1/permissions/tenants/{tenant}/users/{user}`, `X-Api-Key` or a Bearer
//! JWT. 200 with a message; errors as FastAPI's `{"detail": "<message> [<ErrorName>]"}` or a
//! validation list `{"detail": [{"loc", "msg", "type"}]}`.

use ::http::StatusCode;
use ::http::header::HeaderMap;
use serde::Deserialize;

use super::Adapter;
use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError};
use super::lookup::{self, Cursor, MemberPage, Unreadable};
use crate::job::{ProviderKind, Target};

pub struct Cognee {
    pub(super) base: String,
}

#[derive(Deserialize)]
struct Envelope {
    detail: Detail,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Detail {
    Text(String),
    Validation(Vec<Invalid>),
}

#[derive(Deserialize)]
struct Invalid {
    #[serde(default)]
    loc: Vec<serde_json::Value>,
    msg: String,
}

/// A user of the tenant's list.
#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl Adapter for Cognee {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cognee
    }

    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder {
        let Target::Cognee { tenant, user } = target else {
            unreachable!("checked by Provider::remove")
        };
        http.delete(format!(
            "{}/api/v1/permissions/tenants/{tenant}/users/{user}",
            self.base
        ))
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let error = http::json::<Envelope>(body).map(|e| match e.detail {
            Detail::Text(t) => split_name(&t),
            Detail::Validation(list) => ProviderError {
                code: Some("validation_error".into()),
                message: list
                    .iter()
                    .map(|i| {
                        let loc: Vec<String> = i
                            .loc
                            .iter()
                            .map(|l| l.to_string().trim_matches('"').to_owned())
                            .collect();
                        format!("{}: {}", loc.join("."), i.msg)
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        });
        let message = error
            .as_ref()
            .map(|e| e.message.to_ascii_lowercase())
            .unwrap_or_default();
        let name = error.as_ref().and_then(|e| e.code.as_deref()).unwrap_or("");
        let hint = match status {
            // The page: "Returns a success message". A 200 without one is not taken as removal.
            StatusCode::OK if success_message(body) => Hint::Removed,
            // The checks run tenant first, then user, then membership: only the last one means the
            // removal already happened. An unknown user is more likely a typo than a done job.
            StatusCode::NOT_FOUND
                if name == "TenantNotFoundError" || message.starts_with("tenant") =>
            {
                Hint::NoSuchOrganization
            }
            StatusCode::NOT_FOUND if message.contains("not found in this tenant") => {
                Hint::NotAMember
            }
            StatusCode::BAD_REQUEST if message.contains("owner") => Hint::TargetRefused,
            // Permission is per tenant (owner, or has_user_management_permission there): a 403
            // fails this tenant's jobs and never halts the entry's other tenants.
            StatusCode::FORBIDDEN => Hint::OrganizationRefused,
            _ => Hint::None,
        };
        let mut answer = Answer::new(status, hint);
        answer.request_id = http::header(headers, "x-request-id").map(str::to_owned);
        answer.wait = http::retry_after(headers, std::time::SystemTime::now());
        if hint != Hint::Removed {
            answer.error = Some(error.unwrap_or_else(|| ProviderError::unparsed(status, body)));
        }
        answer
    }

    /// `GET {base}/api/v1/permissions/tenants/{tenant}/users`: every user of the tenant, as
    /// `[{id, email, roles}]`; no filter, no paging.
    fn list(
        &self,
        http: &Client,
        organization: Option<&str>,
        _email: Option<&str>,
        _at: &Cursor,
    ) -> RequestBuilder {
        http.get(self.users_url(organization))
    }

    /// A bare array of `{id, email, roles}`, every user with `id` and `email`; the whole tenant.
    fn read_list(&self, body: &[u8], _at: &Cursor) -> Result<MemberPage, Unreadable> {
        let users: Vec<User> = lookup::parse(body)?;
        let members = users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let what = format!("user [{i}]");
                lookup::member(&what, (u.id, "id"), u.email)
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        Ok(MemberPage {
            total: Some(members.len() as u64),
            members,
            next: None,
        })
    }

    /// The list has no `limit`: the probe is the tenant's whole list.
    fn probe(&self, http: &Client, organization: Option<&str>) -> RequestBuilder {
        http.get(self.users_url(organization))
    }

    fn whole_list(&self) -> bool {
        true
    }
}

impl Cognee {
    /// Every Cognee job names its tenant (validation sees to it); without one the URL is one the
    /// API answers 404, never another tenant's.
    fn users_url(&self, organization: Option<&str>) -> String {
        let tenant = organization.unwrap_or_default();
        format!("{}/api/v1/permissions/tenants/{tenant}/users", self.base)
    }
}

/// Whether a 200's body carries the success message the page promises: a JSON object with a
/// non-empty `message` string and no error `detail`.
fn success_message(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Success {
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    http::json::<Success>(body).is_some_and(|s| !s.message.trim().is_empty() && s.detail.is_none())
}

/// `"Tenant not found. [TenantNotFoundError]"` → code `TenantNotFoundError`, message `Tenant not found.`
fn split_name(detail: &str) -> ProviderError {
    let d = detail.trim();
    if let Some(open) = d.rfind(" [") {
        if let Some(name) = d[open + 2..].strip_suffix(']') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return ProviderError {
                    code: Some(name.to_owned()),
                    message: d[..open].trim().to_owned(),
                };
            }
        }
    }
    ProviderError {
        code: None,
        message: d.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_name_is_split_off_the_detail() {
        let e = super::split_name("Tenant not found. [TenantNotFoundError]");
        assert_eq!(e.code.as_deref(), Some("TenantNotFoundError"));
        assert_eq!(e.message, "Tenant not found.");
        let e = super::split_name("User not found in this tenant.");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "User not found in this tenant.");
    }
}

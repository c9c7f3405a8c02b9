//! Factory: `DELETE /api/v0/organization/users?email=E`, `Authorization: Bearer fk-...`.
//! Errors are `{"detail", "status", "title"}`; success is 204 with an empty body.
//!
//! List: `GET /api/v0/organization/users?limit=&cursor=` (`limit` 1..=100, default 20) answers 200
//! `{"users": [{id, email, name, role}], "pagination": {"hasMore", "nextCursor"}}`; the cursor is
//! opaque (the position of the page's last member), so it stays valid while members are removed.
//!
//! Any other URL answers FastAPI's bare 404 `{"detail": "Not Found"}`, not the API's error shape.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use serde_json::{Value, json};

use super::{Fault, Member, Removal, Server, bearer, ceil_secs, fnv1a, form_pairs, name_words};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/api/v0/organization/users", delete(remove).get(list))
        .fallback(not_found)
        .with_state(server)
}

/// An unknown URL: the framework's 404, not the API's error shape.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}

fn error(status: u16, title: &str, detail: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        Json(json!({"detail": detail, "status": status, "title": title})),
    )
        .into_response()
}

fn rate_limited(wait: std::time::Duration) -> Response {
    let mut r = error(
        429,
        "Too Many Requests",
        "Rate limit exceeded. Please retry later.",
    );
    r.headers_mut().insert(
        "retry-after",
        ceil_secs(wait).to_string().parse().expect("digits"),
    );
    r
}

async fn remove(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if bearer(&headers) != Some(s.secret.as_str()) {
        return error(401, "Unauthorized", "Invalid or missing API key.");
    }
    let email = form_pairs(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let user = email.clone().unwrap_or_default();
    let resp = answer(&s, email);
    s.record(None, &user, resp)
}

fn answer(s: &Server, email: Option<String>) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    let Some(email) = email else {
        return error(400, "Bad Request", "Query parameter `email` is required.");
    };
    if !email.contains('@') {
        return error(
            400,
            "Bad Request",
            "Query parameter `email` must be an email address.",
        );
    }
    match s.fault(None, &email) {
        Some(Fault::Unavailable) => {
            return error(
                503,
                "Service Unavailable",
                "The service is temporarily unavailable.",
            );
        }
        Some(Fault::RateLimited(wait)) => return rate_limited(wait),
        Some(Fault::Conflict) => {
            return error(
                409,
                "Conflict",
                "The membership is being modified by another request.",
            );
        }
        None => {}
    }
    match s.remove(None, &email) {
        Removal::Removed(_) => StatusCode::NO_CONTENT.into_response(),
        // Factory has no owner concept the API exposes; seeded owners are simply not removable.
        Removal::Owner => error(
            403,
            "Forbidden",
            "The organization owner cannot be removed.",
        ),
        Removal::NoOrganization | Removal::NotMember { .. } => error(
            404,
            "Not Found",
            &format!("No member or pending invitation with email {email} in this organization."),
        ),
    }
}

/// The first value of a query parameter.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_pairs(query.unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

async fn list(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if bearer(&headers) != Some(s.secret.as_str()) {
        return error(401, "Unauthorized", "Invalid or missing API key.");
    }
    let resp = list_answer(&s, query.as_deref());
    s.record_lookup(None, "", resp)
}

fn list_answer(s: &Server, query: Option<&str>) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    let limit = match param(query, "limit").map(|v| v.trim().parse::<usize>()) {
        None => 20,
        Some(Ok(n @ 1..=100)) => n,
        Some(_) => {
            return error(
                400,
                "Bad Request",
                "Query parameter `limit` must be an integer from 1 to 100.",
            );
        }
    };
    let cursor = match param(query, "cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match decode_cursor(&c) {
            Some(at) => Some(at),
            None => return error(400, "Bad Request", "Invalid cursor."),
        },
    };
    // Factory's credential picks the organization, which always exists.
    let (users, next) = s
        .with_org(None, |org| {
            let mut page: Vec<&Member> = match &cursor {
                Some(at) => org.after(at).take(limit + 1).collect(),
                None => org.ordered().take(limit + 1).collect(),
            };
            let more = page.len() > limit;
            page.truncate(limit);
            let next = more
                .then(|| page.last().map(|m| encode_cursor(m)))
                .flatten();
            (page.into_iter().map(user).collect::<Vec<_>>(), next)
        })
        .unwrap_or_default();
    let body = json!({
        "users": users,
        "pagination": {"hasMore": next.is_some(), "nextCursor": next},
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// A listed user: a stable id per email, the email, a name from it, the role.
fn user(m: &Member) -> Value {
    let id = uuid::Builder::from_random_bytes(
        (u128::from(fnv1a(m.email.to_lowercase().as_bytes())) << 64
            | u128::from(fnv1a(m.user.as_bytes()) ^ 0xfac7))
        .to_be_bytes(),
    )
    .into_uuid();
    json!({
        "id": id.hyphenated().to_string(),
        "email": m.email,
        "name": name_words(&m.email).join(" "),
        "role": if m.owner { "owner" } else { "member" },
    })
}

fn encode_cursor(m: &Member) -> String {
    let (email, k) = m.order();
    hex::encode(format!("{email}\n{k}"))
}

fn decode_cursor(c: &str) -> Option<(String, String)> {
    let text = String::from_utf8(hex::decode(c.trim()).ok()?).ok()?;
    let (email, k) = text.split_once('\n')?;
    Some((email.to_owned(), k.to_owned()))
}

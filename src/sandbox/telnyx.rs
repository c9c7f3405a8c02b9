//! Telnyx: `POST /v2/organizations/users/{id}/actions/remove`, no body, `Authorization: Bearer
//! KEY...`. Success is 200 `{"data": OrganizationUser}`; errors are `{"errors": [{code, title,
//! detail, source: {pointer}, meta: {url}}]}` with string codes.
//!
//! List: `GET /v2/organizations/users?filter[email]=E&page[size]=N&page[number]=K` (size 1..=250,
//! default 20; number from 1, default 1) answers 200 `{"data": [OrganizationUser], "meta":
//! {page_number, page_size, total_pages, total_results}}`, matching the email by substring,
//! case-insensitively.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Fault, Member, Removal, Server, bearer, ceil_secs, fnv1a, key, rfc3339};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v2/organizations/users/{id}/actions/remove", post(remove))
        .route("/v2/organizations/users", get(list))
        .with_state(server)
}

fn error(status: u16, code: &str, title: &str, detail: &str) -> Response {
    let body = json!({
        "errors": [{
            "code": code,
            "title": title,
            "detail": detail,
            "source": {"pointer": "/"},
            "meta": {"url": format!("https://developers.telnyx.com/docs/overview/errors/{code}")},
        }]
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn rate_limited(limit: u32, wait: Duration) -> Response {
    let mut r = error(
        429,
        "10011",
        "Too many requests",
        "You have exceeded the number of allowed requests. Please slow down.",
    );
    let h = r.headers_mut();
    h.insert(
        "x-ratelimit-limit",
        limit.to_string().parse().expect("digits"),
    );
    h.insert("x-ratelimit-remaining", "0".parse().expect("digits"));
    h.insert(
        "x-ratelimit-reset",
        ceil_secs(wait).to_string().parse().expect("digits"),
    );
    r
}

fn organization_user(m: &Member, record_type: &str) -> serde_json::Value {
    // A creation date fixed per user, somewhere in 2021-2024.
    let created = UNIX_EPOCH
        + Duration::from_secs(1_610_000_000 + fnv1a(key(&m.user).as_bytes()) % 100_000_000);
    let created_at = rfc3339(created).replace('Z', ".000Z");
    json!({
        "id": m.user,
        "record_type": record_type,
        "email": m.email,
        "user_status": "enabled",
        "organization_user_bypasses_sso": false,
        "created_at": created_at,
        "last_sign_in_at": rfc3339(SystemTime::now() - Duration::from_secs(86_400 * 3)).replace('Z', ".000Z"),
    })
}

/// Telnyx's 401 for a missing or wrong bearer token.
fn unauthorized(s: &Server, headers: &HeaderMap) -> Option<Response> {
    (bearer(headers) != Some(s.secret.as_str())).then(|| {
        error(
            401,
            "10009",
            "Authentication failed",
            "Could not understand the provided credentials.",
        )
    })
}

async fn remove(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&s, &headers) {
        return refused;
    }
    let resp = answer(&s, &id);
    s.record(None, &id, resp)
}

fn answer(s: &Server, id: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(s.limit_per_second(), wait);
    }
    match s.fault(None, id) {
        Some(Fault::Unavailable) => {
            return error(
                503,
                "10007",
                "Service unavailable",
                "The service is temporarily unavailable. Please retry.",
            );
        }
        Some(Fault::RateLimited(wait)) => return rate_limited(s.limit_per_second(), wait),
        Some(Fault::Conflict) => {
            return error(
                409,
                "10015",
                "Conflict",
                "The request conflicts with a concurrent change to this user.",
            );
        }
        None => {}
    }
    match s.remove(None, id) {
        Removal::Removed(m) => {
            let user = organization_user(&m, "organization_sub_user");
            (StatusCode::OK, Json(json!({"data": user}))).into_response()
        }
        Removal::Owner => error(
            403,
            "10010",
            "Not authorized",
            "You are not authorized to access the requested resource.",
        ),
        Removal::NoOrganization | Removal::NotMember { .. } => error(
            404,
            "10005",
            "Resource not found",
            "The requested resource or URL could not be found.",
        ),
    }
}

async fn list(
    State(s): State<Arc<Server>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&s, &headers) {
        return refused;
    }
    let filter = query.get("filter[email]").cloned().unwrap_or_default();
    let resp = list_answer(&s, &query, &filter);
    s.record_lookup(None, &filter, resp)
}

fn list_answer(s: &Server, query: &HashMap<String, String>, filter: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(s.limit_per_second(), wait);
    }
    // A page parameter: its default when absent, None when not an integer in 1..=max.
    let number = |name: &str, default: usize, max: usize| -> Option<usize> {
        match query.get(name).map(|v| v.trim().parse::<usize>()) {
            None => Some(default),
            Some(Ok(n)) if (1..=max).contains(&n) => Some(n),
            Some(_) => None,
        }
    };
    let bad = |detail: &str| error(400, "10015", "Bad Request", detail);
    let Some(size) = number("page[size]", 20, 250) else {
        return bad("page[size] must be an integer between 1 and 250.");
    };
    let Some(page) = number("page[number]", 1, usize::MAX) else {
        return bad("page[number] must be a positive integer.");
    };
    let found = s.lookup(None, filter).unwrap_or_default();
    let total = found.len();
    let data: Vec<serde_json::Value> = found
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|m| organization_user(m, "organization_sub_user"))
        .collect();
    let body = json!({
        "data": data,
        "meta": {
            "page_number": page,
            "page_size": size,
            "total_pages": total.div_ceil(size),
            "total_results": total,
        }
    });
    (StatusCode::OK, Json(body)).into_response()
}

//! Telnyx: `POST /v2/organizations/users/{id}/actions/remove`, no body, `Authorization: Bearer
//! KEY...`. Success is 200 `{"data": OrganizationUser}`; errors are `{"errors": [{code, title,
//! detail, source: {pointer}, meta: {url}}]}` with string codes.
//!
//! List: `GET /v2/organizations/users?filter[email]=E&page[size]=N&page[number]=K` (size 1..=250,
//! default 20; number from 1, default 1) answers 200 `{"data": [OrganizationUser], "meta":
//! {page_number, page_size, total_pages, total_results}}`, matching the email by substring,
//! case-insensitively; `include_groups=true` adds each user's `groups`.
//!
//! OrganizationUser has exactly the page's properties: `id`, `record_type` (`organization_owner`
//! or `organization_sub_user`), `email`, `user_status`, `organization_user_bypasses_sso`,
//! `created_at`, `last_sign_in_at` (null for users who never signed in) and, when asked, `groups`.
//!
//! Any other URL (say a base URL that already ends in `/v2`) answers 404 with code `10005`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Fault, Member, Removal, Server, bearer, ceil_secs, created_at, fnv1a, key, rfc3339};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v2/organizations/users/{id}/actions/remove", post(remove))
        .route("/v2/organizations/users", get(list))
        .fallback(not_found)
        .with_state(server)
}

/// The documented 404, for a resource or a URL that does not exist.
fn resource_not_found() -> Response {
    error(
        404,
        "10005",
        "Resource not found",
        "The requested resource or URL could not be found.",
    )
}

async fn not_found() -> Response {
    resource_not_found()
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

/// The page's OrganizationUser: its properties and no others; `groups` only when asked.
fn organization_user(m: &Member, groups: bool) -> serde_json::Value {
    let h = fnv1a(key(&m.user).as_bytes());
    // One user in five never signed in: the schema's `null`.
    let last_sign_in = (h % 5 != 0).then(|| {
        let ago = Duration::from_secs(3_600 * (1 + h % 2_000));
        rfc3339(SystemTime::now() - ago).replace('Z', ".000Z")
    });
    let record_type = if m.owner {
        "organization_owner"
    } else {
        "organization_sub_user"
    };
    let mut user = json!({
        "id": m.user,
        "record_type": record_type,
        "email": m.email,
        "user_status": "enabled",
        "organization_user_bypasses_sso": false,
        "created_at": created_at(&m.user),
        "last_sign_in_at": last_sign_in,
    });
    if groups {
        const NAMES: [&str; 4] = ["Engineering", "Support", "Sales", "Operations"];
        let group =
            uuid::Uuid::from_u128(0x7b09cdc3_8948_47f0_aa62_74ac943d6c50 + u128::from(h % 4));
        user["groups"] =
            json!([{"id": group.hyphenated().to_string(), "name": NAMES[(h % 4) as usize]}]);
    }
    user
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
    let mut resp = answer(&s, &id);
    s.window_headers(&mut resp);
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
            let user = organization_user(&m, false);
            (StatusCode::OK, Json(json!({"data": user}))).into_response()
        }
        Removal::Owner => error(
            403,
            "10010",
            "Not authorized",
            "You are not authorized to access the requested resource.",
        ),
        Removal::NoOrganization | Removal::NotMember { .. } => resource_not_found(),
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
    let mut resp = list_answer(&s, &query, &filter);
    s.window_headers(&mut resp);
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
    let groups = query
        .get("include_groups")
        .is_some_and(|v| v.trim() == "true");
    let needle = filter.trim().to_lowercase();
    let first = (page - 1).saturating_mul(size);
    let (data, total) = s
        .with_org(None, |o| {
            let mut total = 0;
            let mut data = Vec::new();
            for m in o.matching(&needle) {
                if total >= first && data.len() < size {
                    data.push(organization_user(m, groups));
                }
                total += 1;
            }
            (data, total)
        })
        .unwrap_or_default();
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

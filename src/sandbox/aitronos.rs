//! Aitronos: `DELETE /v1/organizations/{org_*}/users/{usr_*}` with `{"confirm": true,
//! "transfer_resources_to_department_id"?}`, `X-API-Key: ak_...`. Errors use the envelope
//! `{"success": false, "error": {code, message, system_message, type, status, details, trace_id,
//! timestamp}}`; success is 204.
//!
//! Search: `POST /v1/organizations/{org_*}/users` with `{"search_term", "take" (1..=100, default 10),
//! "skip" (default 0)}` answers 200 `{"users": [{id: "orguser_*", user_id: "usr_*",
//! organization_id, email, full_name, username, role: {..}, status: {..}}], "total_users_count",
//! "skip", "take"}` (or, with [`AitronosSearchShape::Members`], the other page's `{"members": [..],
//! "total", "skip", "limit"}`), matching the email by substring, case-insensitively. `id` is the
//! membership; `user_id` is what the removal takes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::seed::base36;
use super::{
    AitronosSearchShape, Fault, Member, Removal, Server, ceil_secs, created_at, fnv1a, header, key,
    name_words, now_unix, rfc3339,
};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/v1/organizations/{organization_id}/users/{user_id}",
            delete(remove),
        )
        .route("/v1/organizations/{organization_id}/users", post(search))
        .with_state(server)
}

fn error(status: u16, code: &str, message: &str, details: Value) -> Response {
    let kind = if status >= 500 {
        "server_error"
    } else {
        "client_error"
    };
    let body = json!({
        "success": false,
        "error": {
            "code": code,
            "message": message,
            "system_message": message.to_lowercase(),
            "type": kind,
            "status": status,
            "details": details,
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": rfc3339(SystemTime::now()),
        }
    });
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

fn rate_limited(wait: Duration) -> Response {
    let mut r = error(
        429,
        "RATE_LIMIT_EXCEEDED",
        "Rate limit exceeded. Please slow down and retry later.",
        json!({}),
    );
    let reset = now_unix() + ceil_secs(wait);
    r.headers_mut().insert(
        "x-ratelimit-reset",
        reset.to_string().parse().expect("digits"),
    );
    r
}

/// Aitronos' 401 unless the request carries the API key.
fn unauthorized(s: &Server, headers: &HeaderMap) -> Option<Response> {
    (header(headers, "x-api-key") != Some(s.secret.as_str())).then(|| {
        error(
            401,
            "INVALID_API_KEY",
            "The API key provided is invalid.",
            json!({}),
        )
    })
}

async fn remove(
    State(s): State<Arc<Server>>,
    Path((org, user)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&s, &headers) {
        return refused;
    }
    let resp = answer(&s, &org, &user, &body);
    s.record(Some(&org), &user, resp)
}

fn answer(s: &Server, org: &str, user: &str, body: &[u8]) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return error(
                    422,
                    "VALIDATION_ERROR",
                    "The request body is not a valid JSON object.",
                    json!({"user_id": user}),
                );
            }
        }
    };
    if body.get("confirm") != Some(&Value::Bool(true)) {
        return error(
            422,
            "CONFIRMATION_REQUIRED",
            "Please confirm this action by setting confirm to true.",
            json!({"user_id": user}),
        );
    }
    match body.get("transfer_resources_to_department_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d.starts_with("dept_") && d.len() > 5 => {}
        Some(_) => {
            return error(
                422,
                "VALIDATION_ERROR",
                "transfer_resources_to_department_id must be a department id (dept_*).",
                json!({"field": "transfer_resources_to_department_id"}),
            );
        }
    }
    match s.fault(Some(org), user) {
        Some(Fault::Unavailable) => {
            return error(
                503,
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable. Please try again later.",
                json!({}),
            );
        }
        Some(Fault::RateLimited(wait)) => return rate_limited(wait),
        Some(Fault::Conflict) => {
            return error(
                409,
                "CONFLICT",
                "The user's membership is being modified by another request.",
                json!({"user_id": user, "organization_id": org}),
            );
        }
        None => {}
    }
    match s.remove(Some(org), user) {
        Removal::Removed(_) => StatusCode::NO_CONTENT.into_response(),
        Removal::Owner => error(
            403,
            "CANNOT_DELETE_OWNER",
            "The organization owner cannot be removed.",
            json!({"user_id": user, "organization_id": org}),
        ),
        Removal::NoOrganization => error(
            404,
            "ORGANIZATION_NOT_FOUND",
            "Organization not found.",
            json!({"organization_id": org}),
        ),
        Removal::NotMember { .. } => error(
            404,
            "USER_NOT_FOUND",
            "User not found in this organization.",
            json!({"user_id": user, "organization_id": org}),
        ),
    }
}

async fn search(
    State(s): State<Arc<Server>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&s, &headers) {
        return refused;
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let term = body
        .get("search_term")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let resp = search_answer(&s, &org, &body, &term);
    s.record_lookup(Some(&org), &term, resp)
}

fn search_answer(s: &Server, org: &str, body: &Value, term: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    let invalid = |field: &str, message: &str| {
        error(422, "VALIDATION_ERROR", message, json!({"field": field}))
    };
    if !body.is_object() {
        return invalid("body", "The request body is not a valid JSON object.");
    }
    match body.get("search_term") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => return invalid("search_term", "search_term must be a string."),
    }
    let take = match body.get("take") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => return invalid("take", "take must be an integer between 1 and 100."),
        },
    };
    let skip = match body.get("skip") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => return invalid("skip", "skip must be a non-negative integer."),
        },
    };
    let needle = term.trim().to_lowercase();
    let found = s.with_org(Some(org), |o| {
        let mut total = 0;
        let mut page = Vec::new();
        for m in o.matching(&needle) {
            if total >= skip && page.len() < take {
                page.push(member(org, m));
            }
            total += 1;
        }
        (page, total)
    });
    let Some((users, total)) = found else {
        return error(
            404,
            "ORGANIZATION_NOT_FOUND",
            "Organization not found.",
            json!({"organization_id": org}),
        );
    };
    let body = match s.aitronos_search {
        AitronosSearchShape::Users => {
            json!({"users": users, "total_users_count": total, "skip": skip, "take": take})
        }
        AitronosSearchShape::Members => {
            json!({"members": users, "total": total, "skip": skip, "limit": take})
        }
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// The membership id of a user in an organization: `orguser_` and 12 base-36 characters, fixed
/// per (organization, user).
pub(super) fn membership_id(org: &str, user: &str) -> String {
    let h = fnv1a(format!("{}/{}", key(org), key(user)).as_bytes());
    format!("orguser_{}", base36(h, 12))
}

/// A search hit: the membership, with the user it is of.
fn member(org: &str, m: &Member) -> Value {
    let (role_id, role_name) = if m.owner {
        ("role_owner", "Owner")
    } else {
        ("role_member", "Member")
    };
    json!({
        "id": membership_id(org, &m.user),
        "user_id": m.user,
        "organization_id": org,
        "email": m.email,
        "full_name": name_words(&m.email).join(" "),
        "username": m.email.split('@').next().unwrap_or(&m.email).to_lowercase(),
        "role": {"id": role_id, "name": role_name, "is_owner": m.owner},
        "status": {"id": "active", "name": "Active"},
        "joined_at": created_at(&m.user),
    })
}

//! Factory: `DELETE /api/v0/organization/users?email=E`, `Authorization: Bearer fk-...`.
//! Errors are `{"detail", "status", "title"}`; success is 204 with an empty body.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use serde_json::json;

use super::{Fault, Removal, Server, bearer, ceil_secs, form_pairs};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/api/v0/organization/users", delete(remove))
        .with_state(server)
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

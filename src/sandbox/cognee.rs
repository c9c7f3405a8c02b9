//! Cognee (FastAPI): `DELETE /api/v1/permissions/tenants/{tenant}/users/{user}`, `X-Api-Key`.
//! Success is 200 `{"message": "User removed from tenant"}`; errors are `{"detail": "<message>
//! [<ErrorName>]"}`, checked in the order: tenant not found (404), caller lacks
//! `has_user_management_permission` (403, tenants in
//! [`SandboxOptions::cognee_forbidden_tenants`](super::SandboxOptions)), owner (400), user not
//! found (404), user not in tenant (404).
//!
//! List: `GET /api/v1/permissions/tenants/{tenant}/users` answers 200 `[{id, email, roles: []}]`,
//! every member of the tenant; an unknown tenant is 404 `Tenant not found. [TenantNotFoundError]`,
//! a forbidden one 403.
//!
//! Any other URL answers FastAPI's `{"detail": "Not Found"}` 404.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::{Value, json};

use super::{Fault, Removal, Server, ceil_secs, header};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(
            "/api/v1/permissions/tenants/{tenant_id}/users/{user_id}",
            delete(remove),
        )
        .route("/api/v1/permissions/tenants/{tenant_id}/users", get(list))
        .fallback(not_found)
        .with_state(server)
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// The 403 of a tenant where the caller lacks `has_user_management_permission`.
fn forbidden() -> Response {
    detail(
        StatusCode::FORBIDDEN,
        "User does not have permission to manage users in the tenant. [PermissionDeniedError]",
    )
}

fn tenant_not_found() -> Response {
    detail(
        StatusCode::NOT_FOUND,
        "Tenant not found. [TenantNotFoundError]",
    )
}

fn detail(status: StatusCode, detail: impl Into<Value>) -> Response {
    (status, Json(json!({"detail": detail.into()}))).into_response()
}

fn rate_limited(wait: Duration) -> Response {
    let mut r = detail(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests. [RateLimitExceededError]",
    );
    r.headers_mut().insert(
        "retry-after",
        ceil_secs(wait).to_string().parse().expect("digits"),
    );
    r
}

async fn remove(
    State(s): State<Arc<Server>>,
    Path((tenant, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if header(&headers, "x-api-key") != Some(s.secret.as_str()) {
        return detail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let resp = answer(&s, &tenant, &user);
    s.record(Some(&tenant), &user, resp)
}

/// FastAPI's validation error for a path parameter that is not a UUID.
fn not_uuid(field: &str, input: &str) -> Value {
    json!({
        "loc": ["path", field],
        "msg": "Input should be a valid UUID, invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-]",
        "type": "uuid_parsing",
        "input": input,
    })
}

fn answer(s: &Server, tenant: &str, user: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    let mut invalid = Vec::new();
    if uuid::Uuid::try_parse(tenant).is_err() {
        invalid.push(not_uuid("tenant_id", tenant));
    }
    if uuid::Uuid::try_parse(user).is_err() {
        invalid.push(not_uuid("user_id", user));
    }
    if !invalid.is_empty() {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, invalid);
    }
    match s.fault(Some(tenant), user) {
        Some(Fault::Unavailable) => {
            return detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable. [ServiceUnavailableError]",
            );
        }
        Some(Fault::RateLimited(wait)) => return rate_limited(wait),
        Some(Fault::Conflict) => {
            return detail(
                StatusCode::CONFLICT,
                "Tenant membership was modified concurrently. [ConflictError]",
            );
        }
        None => {}
    }
    if s.forbidden(Some(tenant)) && s.with_org(Some(tenant), |_| ()).is_some() {
        return forbidden();
    }
    match s.remove(Some(tenant), user) {
        Removal::Removed(_) => (
            StatusCode::OK,
            Json(json!({"message": "User removed from tenant"})),
        )
            .into_response(),
        Removal::NoOrganization => tenant_not_found(),
        Removal::Owner => detail(
            StatusCode::BAD_REQUEST,
            "Cannot remove the tenant owner. [PermissionDeniedError]",
        ),
        Removal::NotMember { exists: false } => detail(
            StatusCode::NOT_FOUND,
            "User not found. [EntityNotFoundError]",
        ),
        Removal::NotMember { exists: true } => {
            detail(StatusCode::NOT_FOUND, "User not found in this tenant.")
        }
    }
}

async fn list(
    State(s): State<Arc<Server>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if header(&headers, "x-api-key") != Some(s.secret.as_str()) {
        return detail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let resp = list_answer(&s, &tenant);
    s.record_lookup(Some(&tenant), "", resp)
}

fn list_answer(s: &Server, tenant: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    if uuid::Uuid::try_parse(tenant).is_err() {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![not_uuid("tenant_id", tenant)],
        );
    }
    if s.with_org(Some(tenant), |_| ()).is_none() {
        return tenant_not_found();
    }
    if s.forbidden(Some(tenant)) {
        return forbidden();
    }
    let users = s
        .with_org(Some(tenant), |o| {
            o.ordered()
                .map(|m| json!({"id": m.user, "email": m.email, "roles": []}))
                .collect::<Vec<Value>>()
        })
        .unwrap_or_default();
    (StatusCode::OK, Json(Value::Array(users))).into_response()
}

//! Aerospike: `DELETE /v1/organization/members/{uuid}` with `Authorization: Bearer <access_token>`
//! from `POST /oauth/token` (client credentials, form or JSON body). Success is 204; every answer
//! carries `X-Request-Id`. Errors are RFC 9457 problem details (`application/problem+json`) that also
//! carry the page's `{"code", "message"}`, so both readings of the API work.
//!
//! List: `GET /v1/organization/members?limit=&offset=` answers 200 `{"count", "meta": {"total",
//! "limit", "offset"}, "members": [{id, email, role, firstName, lastName, createdAt}]}`, no filter.
//! Paging is "currently disabled" by default, as the docs say: the full set, with `meta` saying so
//! (`limit` = `total`, `offset` 0); [`SandboxOptions::aerospike_page_size`](super::SandboxOptions)
//! turns it on.
//!
//! Any other URL (say a base URL without `/v1`) answers 404 in the page's `{"code", "message"}`:
//! the same status as an unconfirmed "not a member", which is why a 404 is only believed once the
//! member list agrees.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header::CONTENT_TYPE};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::{
    Fault, Member, Removal, Server, bearer, created_at, form_pairs, header, lock, name_words,
};

pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/organization/members/{user_id}", delete(remove))
        .route("/v1/organization/members", get(list))
        .route("/oauth/token", post(token))
        .fallback(not_found)
        .with_state(server)
        .layer(map_response(request_id))
}

/// An unknown URL: the page's generic API error, not a problem document.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "not_found", "message": "The requested URL was not found."})),
    )
        .into_response()
}

async fn request_id(mut r: Response) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    r.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&id).expect("uuid is a header value"),
    );
    r
}

fn problem(status: u16, kind: &str, title: &str, detail: &str, code: &str) -> Response {
    let body = json!({
        "type": format!("urn:aerospike:errors:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "message": detail,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn rate_limited(wait: Duration) -> Response {
    let mut r = problem(
        429,
        "ratelimit:exceeded",
        "Too Many Requests",
        "Rate limit exceeded; retry after the time given in Retry-After.",
        "rate_limit_exceeded",
    );
    // Whole seconds, rounded up, so that the date is never earlier than the real wait.
    let at = SystemTime::now() + Duration::from_secs(super::ceil_secs(wait) + 1);
    r.headers_mut().insert(
        "retry-after",
        HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("http date"),
    );
    r
}

/// The 401 answer, unless the request carries a live access token.
fn unauthorized(s: &Server, headers: &HeaderMap) -> Option<Response> {
    let expiry = bearer(headers).and_then(|t| lock(&s.tokens).get(t).copied());
    match expiry {
        None => Some(problem(
            401,
            "auth:invalid-token",
            "Unauthorized",
            "Access token is missing or invalid.",
            "invalid_token",
        )),
        Some(at) if Instant::now() >= at => Some(problem(
            401,
            "auth:token-expired",
            "Token expired",
            "The access token expired.",
            "invalid_token",
        )),
        Some(_) => None,
    }
}

async fn remove(
    State(s): State<Arc<Server>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let resp = answer(&s, &user);
    s.record(None, &user, resp)
}

async fn list(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let resp = match s.over_limit() {
        Some(wait) => rate_limited(wait),
        None => list_answer(&s, query.as_deref().unwrap_or("")),
    };
    s.record_lookup(None, "", resp)
}

fn list_answer(s: &Server, query: &str) -> Response {
    let (limit, offset) = match s.aerospike_page_size {
        // Paging disabled: whatever was asked, the full set from the start.
        None => (usize::MAX, 0),
        Some(max) => match page(query, max) {
            Ok(p) => p,
            Err(detail) => {
                return problem(
                    400,
                    "request:invalid",
                    "Bad Request",
                    &detail,
                    "invalid_input",
                );
            }
        },
    };
    let (members, total) = s
        .with_org(None, |o| {
            let page: Vec<Value> = o.ordered().skip(offset).take(limit).map(member).collect();
            (page, o.members.len())
        })
        .unwrap_or_default();
    let limit = if s.aerospike_page_size.is_none() {
        total
    } else {
        limit
    };
    let body = json!({
        "count": members.len(),
        "meta": {"total": total, "limit": limit, "offset": offset},
        "members": members,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `limit` (1..=max, default max) and `offset` (default 0) from the query, or why not.
fn page(query: &str, max: usize) -> Result<(usize, usize), String> {
    let (mut limit, mut offset) = (max, 0);
    for (k, v) in form_pairs(query) {
        let n = v.trim().parse::<usize>();
        match (k.as_str(), n) {
            ("limit", Ok(n)) if n >= 1 => limit = n.min(max),
            ("offset", Ok(n)) => offset = n,
            ("limit", _) => return Err("limit must be a positive integer.".to_owned()),
            ("offset", _) => return Err("offset must be a non-negative integer.".to_owned()),
            _ => {}
        }
    }
    Ok((limit, offset))
}

/// A listed member: names from the email's local part, a creation time fixed per user.
fn member(m: &Member) -> Value {
    let mut words = name_words(&m.email).into_iter();
    let first = words.next().unwrap_or_default();
    let last = words.collect::<Vec<_>>().join(" ");
    json!({
        "id": m.user,
        "email": m.email,
        "role": if m.owner { "OrgOwner" } else { "OrgAdmin" },
        "firstName": first,
        "lastName": last,
        "createdAt": created_at(&m.user),
    })
}

fn answer(s: &Server, user: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    if uuid::Uuid::try_parse(user).is_err() {
        return problem(
            400,
            "request:invalid",
            "Bad Request",
            "userId must be a UUID.",
            "invalid_input",
        );
    }
    match s.fault(None, user) {
        Some(Fault::Unavailable) => {
            return problem(
                503,
                "server:unavailable",
                "Service Unavailable",
                "The service is temporarily unavailable.",
                "service_unavailable",
            );
        }
        Some(Fault::RateLimited(wait)) => return rate_limited(wait),
        Some(Fault::Conflict) => {
            return problem(
                409,
                "resource:conflict",
                "Conflict",
                "The member is being modified by another request.",
                "conflict",
            );
        }
        None => {}
    }
    match s.remove(None, user) {
        Removal::Removed(_) => StatusCode::NO_CONTENT.into_response(),
        Removal::Owner => problem(
            403,
            "auth:forbidden",
            "Forbidden",
            "The organization owner cannot be removed.",
            "permission_denied",
        ),
        Removal::NoOrganization | Removal::NotMember { .. } => problem(
            404,
            "resource:not-found",
            "Not Found",
            &format!("No member {user} in this organization."),
            "not_found",
        ),
    }
}

/// `POST /oauth/token`: client credentials, as a form body or a JSON body.
async fn token(State(s): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let oauth_error =
        |status: StatusCode, error: &str| (status, Json(json!({"error": error}))).into_response();
    let is_json =
        header(&headers, "content-type").is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let fields: HashMap<String, String> = if is_json {
        match serde_json::from_slice::<HashMap<String, Value>>(&body) {
            Ok(m) => m
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect(),
            Err(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        }
    } else {
        form_pairs(&String::from_utf8_lossy(&body))
            .into_iter()
            .collect()
    };
    let get = |k: &str| fields.get(k).map(String::as_str);
    match get("grant_type") {
        Some("client_credentials") => {}
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
    }
    if get("client_id") != Some(s.client_id.as_str())
        || get("client_secret") != Some(s.secret.as_str())
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let access_token = format!(
        "{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let now = Instant::now();
    {
        let mut tokens = lock(&s.tokens);
        tokens.retain(|_, exp| *exp + Duration::from_secs(600) > now);
        tokens.insert(access_token.clone(), now + s.token_ttl);
    }
    s.tokens_issued.fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": s.token_ttl.as_secs_f64().ceil() as u64,
        "scope": "update:org",
    }))
    .into_response()
}

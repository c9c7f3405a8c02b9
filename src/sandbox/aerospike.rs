//! Aerospike: `DELETE /v1/organization/members/{uuid}` with `Authorization: Bearer <access_token>`
//! from `POST /oauth/token` (client credentials, form or JSON body). Success is 204; every answer
//! carries `X-Request-Id`. Errors are RFC 9457 problem details (`application/problem+json`, the
//! vendor's `APIError`: a `type` from its `ErrorType` list, `title`, `status`, `detail`) that also
//! carry the page's `{"code", "message"}`, so both readings of the API work.
//!
//! List (`listOrgMembers`): `GET /v1/organization/members?limit=&offset=` answers 200
//! `MemberCollectionSchema`: `{"count", "meta": {"total", "limit", "offset"}, "members": [{id,
//! email, createdAt, firstName, lastName, role}]}` (role `OrgOwner` or `OrgAdmin`), no filter.
//! `limit` is an integer from 1 to 100 (default 10) and `offset` one from 0 (default 0), always
//! checked: anything else is a 400 `validation:failed`. The page holds members `offset` to
//! `offset + limit` in listing order, `count` of them, and `meta` says so; the server may cap a
//! page lower ([`SandboxOptions::aerospike_page_size`](super::SandboxOptions), then `meta.limit`
//! says the cap). With [`SandboxOptions::aerospike_paging_disabled`](super::SandboxOptions) it
//! answers as the docs say it "currently" does: the full set from the start whatever `limit` and
//! `offset` say (once valid), `meta` saying so (`total` = `limit` = `count`, `offset` 0).
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
    Fault, Member, Removal, Server, bearer, created_at, form_pairs, header, key, lock, name_words,
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
    problem_with(status, kind, title, detail, code, None)
}

/// A problem document; `context` as the spec's `ValidationErrorContext` or `ResourceErrorContext`.
fn problem_with(
    status: u16,
    kind: &str,
    title: &str,
    detail: &str,
    code: &str,
    context: Option<Value>,
) -> Response {
    let mut body = json!({
        "type": format!("urn:aerospike:errors:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "message": detail,
    });
    if let Some(c) = context {
        body["context"] = c;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// A 400 `InvalidInputError`: which field, and the spec's `ValidationErrorContext` naming it (a
/// query parameter or path segment as `/name`).
fn invalid_input(field: &str, out_of_range: bool, detail: &str) -> Response {
    let kind = if out_of_range {
        "urn:aerospike:errors:validation:out-of-range"
    } else {
        "urn:aerospike:errors:validation:failed"
    };
    problem_with(
        400,
        "validation:failed",
        "Validation Error",
        detail,
        "invalid_input",
        Some(
            json!({"invalid": [{"field": format!("/{field}"), "type": kind, "description": detail}]}),
        ),
    )
}

fn rate_limited(wait: Duration) -> Response {
    let mut r = problem(
        429,
        "ratelimit:exceeded",
        "Rate Limit Exceeded",
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
            "auth:unauthorized",
            "Unauthorized",
            "Access token is missing or invalid.",
            "invalid_token",
        )),
        Some(at) if Instant::now() >= at => Some(problem(
            401,
            "auth:token-expired",
            "Token Expired",
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
    let (limit, offset) = match page(query) {
        Ok(p) => p,
        Err(bad) => return invalid_input(bad.field, bad.out_of_range, &bad.detail),
    };
    let (limit, offset) = if s.aerospike_paging_disabled {
        (usize::MAX, 0)
    } else {
        (
            limit.min(s.aerospike_page_size.unwrap_or(MAX_LIMIT).max(1)),
            offset,
        )
    };
    let (members, total) = s
        .with_org(None, |o| {
            let page: Vec<Value> = o.ordered().skip(offset).take(limit).map(member).collect();
            (page, o.members.len())
        })
        .unwrap_or_default();
    let limit = if s.aerospike_paging_disabled {
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

/// `LimitParam`'s maximum (and `aerospike_page_size`'s, when unset).
const MAX_LIMIT: usize = 100;
/// `LimitParam`'s default.
const DEFAULT_LIMIT: usize = 10;

/// A query parameter outside its schema.
#[derive(Debug, PartialEq, Eq)]
struct BadParam {
    field: &'static str,
    /// An integer, but outside its range (else: not an integer at all).
    out_of_range: bool,
    detail: String,
}

/// `limit` (an integer 1..=100, default 10) and `offset` (an integer >= 0, default 0) from the
/// query, as `LimitParam` and `OffsetParam` say, or which one is not. A parameter given twice
/// counts as given last.
fn page(query: &str) -> Result<(usize, usize), BadParam> {
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0);
    for (k, v) in form_pairs(query) {
        let (field, min, max) = match k.as_str() {
            "limit" => ("limit", 1, MAX_LIMIT as i128),
            "offset" => ("offset", 0, usize::MAX as i128),
            _ => continue,
        };
        let range = if field == "limit" {
            "between 1 and 100"
        } else {
            "0 or more"
        };
        let n = match v.parse::<i128>() {
            Ok(n) => n,
            Err(_) => {
                return Err(BadParam {
                    field,
                    out_of_range: false,
                    detail: format!("{field} must be an integer {range}; got {v:?}."),
                });
            }
        };
        if !(min..=max).contains(&n) {
            return Err(BadParam {
                field,
                out_of_range: true,
                detail: format!("{field} must be {range}; got {n}."),
            });
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if field == "limit" {
            limit = n;
        } else {
            offset = n;
        }
    }
    Ok((limit, offset))
}

/// A listed member (`MemberSchema`): the id canonical, names from the email's local part (a
/// single word takes the domain's first label for a last name, since both names are required
/// and never empty), a creation time fixed per user, `OrgOwner` or `OrgAdmin`.
fn member(m: &Member) -> Value {
    let (first, last) = names(&m.email);
    json!({
        "id": key(&m.user),
        "email": m.email,
        "role": if m.owner { "OrgOwner" } else { "OrgAdmin" },
        "firstName": first,
        "lastName": last,
        "createdAt": created_at(&m.user),
    })
}

/// First and last name for an email, each 1 to 100 characters (`NameValidation`).
fn names(email: &str) -> (String, String) {
    let mut words = name_words(email).into_iter();
    let first = words.next().unwrap_or_else(|| "Member".to_owned());
    let mut last = words.collect::<Vec<_>>().join(" ");
    if last.is_empty() {
        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        last = name_words(domain.split('.').next().unwrap_or(""))
            .into_iter()
            .next()
            .unwrap_or_else(|| "Member".to_owned());
    }
    let cap = |s: String| s.chars().take(100).collect::<String>();
    (cap(first), cap(last))
}

fn answer(s: &Server, user: &str) -> Response {
    if let Some(wait) = s.over_limit() {
        return rate_limited(wait);
    }
    if uuid::Uuid::try_parse(user).is_err() {
        return invalid_input("userId", false, "userId must be a UUID.");
    }
    match s.fault(None, user) {
        Some(Fault::Unavailable) => {
            return problem(
                503,
                "system:unavailable",
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
            "auth:unauthorized",
            "Unauthorized",
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

//! SCIM 2.0 (RFC 7643/7644) at `/scim/v2`, as Microsoft Entra ID and Okta provisioning drive it.
//!
//! Every request these clients send succeeds as the RFC says (or Entra escrows, then quarantines
//! the whole provisioning job): users are created, read, filtered, replaced, patched and deleted
//! against a small store. What matters here is one transition: a user going from active to
//! inactive (a PATCH or PUT with `active` false) or an active user deleted is published as an
//! intake event, and the answer waits for the broker's confirmation; the store changes only after
//! it (a 503 leaves it as it was, so the client's retry publishes again, under the same event id).
//! A user made active again is recorded and answered, and re-adds nobody anywhere.

pub mod filter;
pub mod patch;
mod project;
mod schema;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::{Intake, publish, same_secret};
use store::{Deleted, Indexed, Store, StoredUser, Write};

/// The SCIM door: the token its client presents and the users it knows.
pub struct ScimDoor {
    token: SecretString,
    store: Store,
    /// Writes to one user wait for each other (Entra sends concurrent requests); writes to
    /// different users mostly do not. The store's version check still guards other processes.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

const STRIPES: usize = 64;

impl ScimDoor {
    pub fn new(token: SecretString, store: Store) -> ScimDoor {
        ScimDoor {
            token,
            store,
            stripes: (0..STRIPES).map(|_| Default::default()).collect(),
        }
    }

    async fn lock(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        self.stripes[h.finish() as usize % STRIPES].lock().await
    }
}

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub use filter::ENTERPRISE;
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The most users one page returns (ServiceProviderConfig's `filter.maxResults`).
pub const MAX_RESULTS: usize = 200;
/// Writes retried when another request changed the same user meanwhile.
const MAX_STALE_RETRIES: usize = 8;

/// A SCIM answer with `application/scim+json`.
fn scim(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// An answer in the SCIM Error schema (RFC 7644 §3.12).
struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no user with id `{id}`"),
        )
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "SCIM store");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "the SCIM store failed; retry",
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut r = scim(self.status, body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Answer = Result<Response, ScimError>;

/// The routes under `/scim/v2`, each behind the Bearer token.
pub fn routes(intake: Arc<Intake>) -> Router<Arc<Intake>> {
    Router::new()
        .route(
            "/ServiceProviderConfig",
            get(schema::service_provider_config),
        )
        .route("/ResourceTypes", get(schema::resource_types))
        .route("/ResourceTypes/{id}", get(schema::resource_type))
        .route("/Schemas", get(schema::schemas))
        .route("/Schemas/{id}", get(schema::schema))
        .route("/Users", get(list).post(create))
        .route("/Users/.search", axum::routing::post(search))
        // At the root, a search spans every resource type: here, Users alone.
        .route("/.search", axum::routing::post(search))
        .route(
            "/Users/{id}",
            get(read).put(replace).patch(modify).delete(remove),
        )
        .route_layer(middleware::from_fn_with_state(intake, authorize))
        .fallback(no_such_endpoint)
}

/// Any other path under `/scim/v2`: 404 in the Error schema, as RFC 7644 answers.
async fn no_such_endpoint(uri: axum::http::Uri) -> Response {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        format!("no such SCIM endpoint: {}", uri.path()),
    )
    .into_response()
}

/// The Bearer token, compared in constant time; 401 in the Error schema otherwise. Every answer
/// is counted by status.
async fn authorize(State(s): State<Arc<Intake>>, req: Request, next: Next) -> Response {
    let door = s.scim.as_ref().expect("routed only when configured");
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|t| same_secret(t, &door.token));
    let response = if ok {
        next.run(req).await
    } else {
        ScimError::new(StatusCode::UNAUTHORIZED, None, "authentication required").into_response()
    };
    s.metrics.intake_request("scim", response.status().as_u16());
    response
}

fn door(s: &Intake) -> &ScimDoor {
    s.scim.as_ref().expect("routed only when configured")
}

/// A user as SCIM shows it: the client's attributes with ours.
fn render(u: &StoredUser) -> Value {
    let mut m = u.attrs.clone();
    let mut schemas = vec![json!(CORE)];
    if m.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE)) {
        schemas.push(json!(ENTERPRISE));
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert("id".into(), json!(u.id));
    unassigned_or(&mut m, u.active);
    m.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": u.created,
            "lastModified": u.modified,
            "version": format!("W/\"{}\"", u.version),
            "location": format!("/scim/v2/Users/{}", u.id),
        }),
    );
    Value::Object(m)
}

/// What a filter sees of a user: its attributes, `id` and `active`.
fn filterable(u: &StoredUser) -> Map<String, Value> {
    let mut m = u.attrs.clone();
    m.insert("id".into(), json!(u.id));
    unassigned_or(&mut m, u.active);
    m
}

/// `active` as stored, unless a write left it unassigned (kept as `"active": null` in the
/// attributes; such a user counts as active, and is not shown with it).
fn unassigned_or(m: &mut Map<String, Value>, active: bool) {
    if matches!(m.get("active"), Some(Value::Null)) {
        m.remove("active");
    } else {
        m.insert("active".into(), json!(active));
    }
}

/// The body of a POST or PUT: an object, without the server's attributes, with a userName, its
/// `active` read (absent: true) and taken out.
fn user_body(body: &[u8]) -> Result<(Map<String, Value>, bool), ScimError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("not JSON: {e}")))?;
    let Value::Object(mut attrs) = value else {
        return Err(ScimError::bad("invalidSyntax", "a User is a JSON object"));
    };
    attrs.retain(|k, _| {
        !["id", "meta", "schemas"]
            .iter()
            .any(|r| k.eq_ignore_ascii_case(r))
    });
    settle_attrs(attrs)
}

/// Checks a user's attributes and takes `active` out of them (leaving `"active": null` when it is
/// unassigned: absent, or removed by a PATCH).
fn settle_attrs(mut attrs: Map<String, Value>) -> Result<(Map<String, Value>, bool), ScimError> {
    patch::normalize_active(&mut attrs).map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
    let active = patch::is_active(&attrs);
    let assigned = attrs.keys().any(|k| k.eq_ignore_ascii_case("active"));
    attrs.retain(|k, _| !k.eq_ignore_ascii_case("active"));
    if !assigned {
        attrs.insert("active".into(), Value::Null);
    }
    let user_name = attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
        .map(|(_, v)| v);
    match user_name {
        Some(Value::String(u)) if !u.trim().is_empty() => Ok((attrs, active)),
        _ => Err(ScimError::bad(
            "invalidValue",
            "userName is required and must be a non-empty string",
        )),
    }
}

/// The person a user stands for at the providers: their primary email, else their work email,
/// else any email, else their userName.
pub fn person(attrs: &Map<String, Value>) -> Option<String> {
    let get = |m: &Map<String, Value>, name: &str| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let emails: Vec<Map<String, Value>> = match get(attrs, "emails") {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|e| match e {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    let value = |m: &Map<String, Value>| {
        get(m, "value")
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|v| v.contains('@'))
    };
    let primary = emails
        .iter()
        .find(|m| {
            matches!(get(m, "primary"), Some(Value::Bool(true)))
                || get(m, "primary")
                    .and_then(|v| v.as_str().map(|s| s.eq_ignore_ascii_case("true")))
                    .unwrap_or(false)
        })
        .and_then(value);
    let work = emails
        .iter()
        .find(|m| {
            get(m, "type")
                .and_then(|v| v.as_str().map(|s| s.eq_ignore_ascii_case("work")))
                .unwrap_or(false)
        })
        .and_then(value);
    primary
        .or(work)
        .or_else(|| emails.iter().find_map(value))
        .or_else(|| {
            get(attrs, "userName")
                .and_then(|v| v.as_str().map(str::to_owned))
                .filter(|v| !v.trim().is_empty())
        })
        .map(|p| p.trim().to_owned())
}

/// Publishes the removal of `before`'s person when a write takes them from active to inactive
/// (or deletes them while active); says a reactivation. Fails with 503 when the broker does not
/// confirm, before anything is stored.
async fn on_transition(
    s: &Intake,
    before: &StoredUser,
    still_active: bool,
    how: &str,
) -> Result<(), ScimError> {
    if before.active && !still_active {
        let Some(person) = person(&before.attrs) else {
            s.metrics.intake_events("scim", "no_person", 1);
            tracing::warn!(
                scim_id = before.id,
                "SCIM user without a userName or email: nobody to remove"
            );
            return Ok(());
        };
        let event = publish::event(
            "scim",
            &s.targets,
            &person,
            format!("scim:{}:{}", before.id, before.version + 1),
            format!("scim {how}"),
            "scim".into(),
        );
        if let Err(e) = s.publisher.publish(std::slice::from_ref(&event)).await {
            tracing::error!(error = %e, scim_id = before.id, "SCIM deprovisioning not confirmed by the broker: answering 503 so the client retries");
            return Err(ScimError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the deprovisioning could not be queued; retry",
            ));
        }
        tracing::info!(scim_id = before.id, person, how, "SCIM: offboarding");
        s.metrics.intake_events("scim", "published", 1);
    } else if !before.active && still_active {
        tracing::warn!(
            scim_id = before.id,
            "SCIM: user made active again: their scheduled removals are cancelled, and no account is re-added anywhere"
        );
        if let Some(person) = person(&before.attrs) {
            let event = publish::reactivation(
                "scim",
                &person,
                format!("scim:{}:{}", before.id, before.version + 1),
                "scim".into(),
            );
            if let Err(e) = s.publisher.publish(std::slice::from_ref(&event)).await {
                tracing::error!(error = %e, scim_id = before.id, "SCIM reactivation not confirmed by the broker: answering 503 so the client retries");
                return Err(ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the reactivation could not be queued; retry",
                ));
            }
        }
        s.metrics.intake_events("scim", "reactivated", 1);
    }
    Ok(())
}

async fn read(
    State(s): State<Arc<Intake>>,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let projection = projection_of(&q);
    match door(&s).store.get(id.clone()).await {
        Ok(Some(u)) => {
            let mut v = render(&u);
            projection.apply(&mut v);
            Ok(scim(StatusCode::OK, v))
        }
        Ok(None) => Err(ScimError::not_found(&id)),
        Err(e) => Err(ScimError::internal(e)),
    }
}

async fn create(State(s): State<Arc<Intake>>, body: Bytes) -> Answer {
    let (attrs, active) = user_body(&body)?;
    match door(&s).store.create(attrs, active).await {
        Ok(Write::Done(u)) => {
            let mut r = scim(StatusCode::CREATED, render(&u));
            if let Ok(v) = HeaderValue::from_str(&format!("/scim/v2/Users/{}", u.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Ok(Write::Taken) => Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "a user with this userName exists",
        )),
        Ok(_) => Err(ScimError::internal("create found no row")),
        Err(e) => Err(ScimError::internal(e)),
    }
}

/// Reads, changes (`change` maps the current user to new attributes and `active`), publishes a
/// deactivation, then stores, retrying when another request wrote the user meanwhile.
async fn write(
    s: &Intake,
    id: String,
    how: &str,
    change: impl Fn(&StoredUser) -> Result<(Map<String, Value>, bool), ScimError>,
) -> Answer {
    let store = &door(s).store;
    let _one_writer = door(s).lock(&id).await;
    for _ in 0..MAX_STALE_RETRIES {
        let Some(before) = store.get(id.clone()).await.map_err(ScimError::internal)? else {
            return Err(ScimError::not_found(&id));
        };
        let (attrs, active) = change(&before)?;
        on_transition(s, &before, active, how).await?;
        match store
            .replace(id.clone(), before.version, attrs, active)
            .await
            .map_err(ScimError::internal)?
        {
            Write::Done(u) => return Ok(scim(StatusCode::OK, render(&u))),
            Write::Taken => {
                return Err(ScimError::new(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    "another user has this userName",
                ));
            }
            Write::NotFound => return Err(ScimError::not_found(&id)),
            Write::Stale => continue,
        }
    }
    Err(ScimError::new(
        StatusCode::CONFLICT,
        None,
        "the user keeps changing under concurrent requests; retry",
    ))
}

async fn replace(State(s): State<Arc<Intake>>, Path(id): Path<String>, body: Bytes) -> Answer {
    let (attrs, active) = user_body(&body)?;
    write(&s, id, "deactivate (PUT)", |_| Ok((attrs.clone(), active))).await
}

async fn modify(State(s): State<Arc<Intake>>, Path(id): Path<String>, body: Bytes) -> Answer {
    let request: patch::PatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("not a PatchOp: {e}")))?;
    if !request
        .schemas
        .iter()
        .any(|x| x.eq_ignore_ascii_case(PATCH_OP))
    {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must name {PATCH_OP}"),
        ));
    }
    write(&s, id, "deactivate (PATCH)", |before| {
        let mut attrs = before.attrs.clone();
        if !matches!(attrs.get("active"), Some(Value::Null)) {
            attrs.insert("active".into(), json!(before.active));
        } else {
            attrs.remove("active");
        }
        patch::apply(&mut attrs, &request.operations)
            .map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
        settle_attrs(attrs)
    })
    .await
}

async fn remove(State(s): State<Arc<Intake>>, Path(id): Path<String>) -> Answer {
    let store = &door(&s).store;
    let _one_writer = door(&s).lock(&id).await;
    for _ in 0..MAX_STALE_RETRIES {
        let Some(before) = store.get(id.clone()).await.map_err(ScimError::internal)? else {
            return Err(ScimError::not_found(&id));
        };
        on_transition(&s, &before, false, "delete").await?;
        match store
            .delete(id.clone(), before.version)
            .await
            .map_err(ScimError::internal)?
        {
            Deleted::Yes => return Ok(StatusCode::NO_CONTENT.into_response()),
            Deleted::NotFound => return Err(ScimError::not_found(&id)),
            Deleted::Stale => continue,
        }
    }
    Err(ScimError::new(
        StatusCode::CONFLICT,
        None,
        "the user keeps changing under concurrent requests; retry",
    ))
}

/// What `GET /Users` and `POST /Users/.search` ask for.
struct ListQuery {
    filter: Option<String>,
    start: i64,
    count: i64,
    projection: project::Projection,
}

/// `attributes` and `excludedAttributes` of a query string.
fn projection_of(q: &std::collections::HashMap<String, String>) -> project::Projection {
    let param = |name: &str| -> Vec<String> {
        q.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    project::Projection::new(
        &param("attributes"),
        &param("excludedAttributes"),
        &[filter::ENTERPRISE],
    )
}

/// `GET /Users`: `filter`, `startIndex` (1-based), `count` (at most [`MAX_RESULTS`]),
/// `attributes`, `excludedAttributes`.
async fn list(
    State(s): State<Arc<Intake>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let param = |name: &str| {
        q.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str, default: i64| -> Result<i64, ScimError> {
        match param(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be a number"))),
        }
    };
    let query = ListQuery {
        filter: param("filter").map(str::to_owned),
        start: number("startIndex", 1)?,
        count: number("count", 100)?,
        projection: projection_of(&q),
    };
    listed(&s, query).await
}

/// `POST /Users/.search` and `POST /.search` (RFC 7644 §3.4.3): the same query as `GET /Users`, in a SearchRequest.
async fn search(State(s): State<Arc<Intake>>, body: Bytes) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SearchRequest {
        #[serde(default)]
        schemas: Vec<String>,
        #[serde(default)]
        attributes: Vec<String>,
        #[serde(default)]
        excluded_attributes: Vec<String>,
        filter: Option<String>,
        start_index: Option<i64>,
        count: Option<i64>,
    }
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let r: SearchRequest = serde_json::from_slice(&body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("not a SearchRequest: {e}")))?;
    if !r.schemas.iter().any(|x| x.eq_ignore_ascii_case(SEARCH)) {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must name {SEARCH}"),
        ));
    }
    let query = ListQuery {
        filter: r.filter,
        start: r.start_index.unwrap_or(1),
        count: r.count.unwrap_or(100),
        projection: project::Projection::new(
            &r.attributes,
            &r.excluded_attributes,
            &[filter::ENTERPRISE],
        ),
    };
    listed(&s, query).await
}

async fn listed(s: &Intake, q: ListQuery) -> Answer {
    let start = q.start.max(1) as usize;
    let count = q.count.clamp(0, MAX_RESULTS as i64) as usize;
    let filter = match q.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => {
            Some(filter::parse(f).map_err(|e| ScimError::bad("invalidFilter", e.to_string()))?)
        }
        None => None,
    };
    let store = &door(s).store;
    let (total, users) = match filter.as_ref().and_then(|f| f.equality()) {
        Some((attr, value)) => {
            let by = match attr {
                filter::Attr::UserName => Indexed::UserName,
                filter::Attr::ExternalId => Indexed::ExternalId,
                filter::Attr::Id => Indexed::Id,
            };
            let found = store
                .find(by, value.to_owned())
                .await
                .map_err(ScimError::internal)?;
            let f = filter.as_ref().expect("an equality is a filter");
            let found: Vec<StoredUser> = found
                .into_iter()
                .filter(|u| f.matches(&filterable(u)))
                .collect();
            let total = found.len();
            let page = found.into_iter().skip(start - 1).take(count).collect();
            (total, page)
        }
        None => store
            .page(
                move |u| filter.as_ref().is_none_or(|f| f.matches(&filterable(u))),
                start - 1,
                count,
            )
            .await
            .map_err(ScimError::internal)?,
    };
    let resources: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut v = render(u);
            q.projection.apply(&mut v);
            v
        })
        .collect();
    Ok(scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

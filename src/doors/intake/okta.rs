//! Okta Event Hooks at `/hooks/okta`: the one-time verification and the deliveries of System Log
//! events. A delivery is answered 200 only once every event that offboards someone is confirmed by
//! the broker; Okta redelivers on anything else, and the job ids derive from each event's `uuid`,
//! so a redelivery removes nobody twice.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Intake, publish};

/// Okta's event types for a user made active again: whatever `event_types` says, each cancels the
/// person's scheduled removals (it removes nobody).
const REACTIVATIONS: [&str; 2] = ["user.lifecycle.activate", "user.lifecycle.reactivate"];

/// A delivery: `{"eventType": "com.okta.event_hook", "eventId", "data": {"events": [...]}}`.
#[derive(Deserialize)]
struct Delivery {
    #[serde(default, rename = "eventId")]
    event_id: Option<String>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    events: Vec<LogEvent>,
}

/// One System Log event, as far as it matters here.
#[derive(Deserialize)]
struct LogEvent {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default, rename = "eventType")]
    event_type: String,
    #[serde(default)]
    actor: Option<Party>,
    #[serde(default)]
    target: Vec<Party>,
}

#[derive(Deserialize)]
struct Party {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, rename = "alternateId")]
    alternate_id: Option<String>,
}

/// `status`, counted as an answer of the Okta door.
fn counted(s: &Intake, status: StatusCode) -> StatusCode {
    s.metrics.intake_request("okta", status.as_u16());
    status
}

/// `GET /hooks/okta`: Okta's one-time verification echoes `X-Okta-Verification-Challenge`.
pub(super) async fn verify(State(s): State<Arc<Intake>>, headers: HeaderMap) -> Response {
    if !s.okta_authorized(&headers) {
        return counted(&s, StatusCode::UNAUTHORIZED).into_response();
    }
    match headers
        .get("x-okta-verification-challenge")
        .and_then(|v| v.to_str().ok())
    {
        Some(challenge) => (
            counted(&s, StatusCode::OK),
            axum::Json(serde_json::json!({ "verification": challenge })),
        )
            .into_response(),
        None => (
            counted(&s, StatusCode::BAD_REQUEST),
            "no X-Okta-Verification-Challenge header\n",
        )
            .into_response(),
    }
}

/// `POST /hooks/okta`: a batch of events. The secret is checked before a byte of the body is
/// read: an unauthenticated sender cannot make the intake read (or wait for) a megabyte.
pub(super) async fn deliver(
    State(s): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !s.okta_authorized(&headers) {
        return counted(&s, StatusCode::UNAUTHORIZED).into_response();
    }
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || {
        (
            counted(&s, StatusCode::PAYLOAD_TOO_LARGE),
            "the body is larger than intake.max_body_bytes, or was cut off\n",
        )
            .into_response()
    };
    // Refused as announced, without waiting for a body that is not wanted anyway.
    if announced.is_some_and(|n| n > s.max_body as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            // serde's message names the position, never the body's text.
            return (
                counted(&s, StatusCode::BAD_REQUEST),
                format!("not an Okta event hook delivery: {e}\n"),
            )
                .into_response();
        }
    };
    let okta = s.okta.as_ref().expect("routed only when configured");
    let mut events = Vec::new();
    let (mut ignored, mut no_person) = (0u64, 0u64);
    let mut reactivated = 0u64;
    for e in &delivery.data.events {
        let reactivation = REACTIVATIONS.contains(&e.event_type.as_str());
        if !reactivation && !okta.event_types.contains(&e.event_type) {
            ignored += 1;
            continue;
        }
        let uuid = e.uuid.as_deref().filter(|u| !u.trim().is_empty());
        let person = e
            .target
            .iter()
            .find(|t| t.kind.as_deref() == Some("User"))
            .and_then(|t| t.alternate_id.as_deref())
            .filter(|p| !p.trim().is_empty());
        let (Some(uuid), Some(person)) = (uuid, person) else {
            no_person += 1;
            tracing::warn!(
                event_type = e.event_type,
                event_id = uuid.unwrap_or("-"),
                delivery = delivery.event_id.as_deref().unwrap_or("-"),
                "an Okta event without a uuid or a User target with an alternateId: nobody to remove"
            );
            continue;
        };
        let actor = e
            .actor
            .as_ref()
            .and_then(|a| a.alternate_id.as_deref().or(a.id.as_deref()))
            .unwrap_or("unknown");
        if reactivation {
            tracing::warn!(
                event_type = e.event_type,
                event_id = uuid,
                person,
                "Okta: made active again: their scheduled removals are cancelled"
            );
            reactivated += 1;
            events.push(publish::reactivation(
                "okta",
                person.trim(),
                format!("okta:{uuid}"),
                format!("okta:{actor}"),
            ));
            continue;
        }
        tracing::info!(
            event_type = e.event_type,
            event_id = uuid,
            person,
            "Okta: offboarding"
        );
        events.push(publish::event(
            "okta",
            &s.targets,
            person.trim(),
            format!("okta:{uuid}"),
            format!("okta {}", e.event_type),
            format!("okta:{actor}"),
        ));
    }
    if let Err(e) = s.publisher.publish(&events).await {
        tracing::error!(error = %e, events = events.len(), "Okta delivery not confirmed by the broker: answering 503 so Okta retries");
        return (
            counted(&s, StatusCode::SERVICE_UNAVAILABLE),
            "the broker did not confirm; retry\n",
        )
            .into_response();
    }
    s.metrics
        .intake_events("okta", "published", events.len() as u64 - reactivated);
    s.metrics.intake_events("okta", "reactivated", reactivated);
    s.metrics.intake_events("okta", "ignored", ignored);
    s.metrics.intake_events("okta", "no_person", no_person);
    counted(&s, StatusCode::OK).into_response()
}

//! Operator commands to every worker on the control exchange (`offboard hold`, `offboard
//! quarantine`), their answers, and their authentication: with a control secret
//! (`OFFBOARD_CONTROL_SECRET`, shared by workers and operators, never by the intake), each command
//! carries an HMAC-SHA256 over its body, when it was signed and a nonce; a worker that holds the
//! secret ignores (and logs) a command without a valid signature, an old one, or a replay.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::amqp::{self, AmqpError, Publisher};
use crate::config::Settings;

/// An operator's command to every worker, on the control exchange. Each worker answers on the
/// message's `reply_to` queue with its hold states.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Control {
    List,
    Release {
        provider: String,
    },
    /// The gate's counts and its open quarantine.
    Quarantine,
    /// Releases the open quarantine if it holds exactly `count` people.
    Approve {
        count: usize,
        by: String,
    },
    /// Ends every job of the open quarantine as rejected (if it holds `count` people, when given).
    Reject {
        count: Option<usize>,
        by: String,
    },
    /// What waits for its due time (answered by the scheduler).
    Schedule {
        #[serde(default)]
        filter: crate::schedule::Filter,
    },
    /// Cancels waiting jobs (taken by the scheduler).
    Cancel {
        selector: crate::schedule::Selector,
        by: String,
    },
}

/// A worker's answer to a control command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlReply {
    pub worker: String,
    /// For `release`: whether this worker held that lane and released it.
    #[serde(default)]
    pub released: bool,
    pub holds: Vec<crate::safety::hold::HoldState>,
    /// From the worker that is the gate, for the quarantine commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleReply>,
}

/// The scheduler's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleReply {
    View(crate::schedule::View),
    Cancelled(Result<crate::schedule::Cancelled, String>),
}

/// The gate's answer to a quarantine command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateReply {
    pub view: crate::safety::quarantine::GateView,
    /// For `approve` and `reject`: what was decided, or why nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Result<String, String>>,
}

/// Headers of a signed command.
pub mod header {
    pub const SIGNED_AT: &str = "x-offboard-signed-at";
    pub const NONCE: &str = "x-offboard-nonce";
    pub const SIGNATURE: &str = "x-offboard-signature";
}

/// How far a command's signing time may be from the worker's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

fn mac(secret: &SecretString, signed_at: u64, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("offboard-control-v1\n{signed_at}\n{nonce}\n").as_bytes());
    mac.update(body);
    mac
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The headers that sign `body`, for `properties`.
pub fn sign(secret: &SecretString, body: &[u8], properties: BasicProperties) -> BasicProperties {
    let signed_at = unix_now();
    let nonce = uuid::Uuid::new_v4().to_string();
    let signature = mac(secret, signed_at, &nonce, body).finalize().into_bytes();
    let hex = hex::encode(signature);
    let mut headers = FieldTable::default();
    headers.insert(
        header::SIGNED_AT.into(),
        AMQPValue::LongLongInt(signed_at as i64),
    );
    headers.insert(header::NONCE.into(), AMQPValue::LongString(nonce.into()));
    headers.insert(header::SIGNATURE.into(), AMQPValue::LongString(hex.into()));
    properties.with_headers(headers)
}

/// Why a command is not honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthentic {
    #[error("it is not signed (no {0} header)")]
    Unsigned(&'static str),
    #[error("its signature does not match (another secret, or a changed body)")]
    BadSignature,
    #[error("it was signed {0} s away from this worker's clock (at most 300 s)")]
    Stale(u64),
    #[error("it was seen before (a replay)")]
    Replayed,
}

/// Checks commands against the control secret, remembering nonces for as long as a signature is
/// valid, so that a captured command cannot be sent again.
pub struct Verifier {
    secret: SecretString,
    seen: HashMap<String, u64>,
}

impl Verifier {
    pub fn new(secret: SecretString) -> Verifier {
        Verifier {
            secret,
            seen: HashMap::new(),
        }
    }

    pub fn check(&mut self, properties: &BasicProperties, body: &[u8]) -> Result<(), Unauthentic> {
        let get = |name| crate::doors::amqp::header_str(properties, name);
        let signed_at: u64 = get(header::SIGNED_AT)
            .and_then(|s| s.parse().ok())
            .ok_or(Unauthentic::Unsigned(header::SIGNED_AT))?;
        let nonce = get(header::NONCE).ok_or(Unauthentic::Unsigned(header::NONCE))?;
        let signature = get(header::SIGNATURE).ok_or(Unauthentic::Unsigned(header::SIGNATURE))?;
        let bytes = hex::decode(&signature).map_err(|_| Unauthentic::BadSignature)?;
        mac(&self.secret, signed_at, &nonce, body)
            .verify_slice(&bytes)
            .map_err(|_| Unauthentic::BadSignature)?;
        let now = unix_now();
        let skew = now.abs_diff(signed_at);
        if skew > MAX_SKEW.as_secs() {
            return Err(Unauthentic::Stale(skew));
        }
        self.seen
            .retain(|_, at| now.abs_diff(*at) <= 2 * MAX_SKEW.as_secs());
        if self.seen.insert(nonce, signed_at).is_some() {
            return Err(Unauthentic::Replayed);
        }
        Ok(())
    }
}

/// Why an operator's command could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("{0}")]
    Secret(String),
}

/// Sends an operator command to every worker through the control exchange and gathers their
/// answers for `wait`.
pub async fn ask(
    settings: &Settings,
    command: &Control,
    wait: std::time::Duration,
) -> Result<Vec<ControlReply>, AskError> {
    ask_until(settings, command, wait, |_| false).await
}

/// [`ask`], returning as soon as a reply satisfies `enough` (the one worker holding a role
/// answered), or after `wait`.
pub async fn ask_until(
    settings: &Settings,
    command: &Control,
    wait: std::time::Duration,
    enough: impl Fn(&ControlReply) -> bool,
) -> Result<Vec<ControlReply>, AskError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let secret = settings.amqp.control_secret().map_err(AskError::Secret)?;
    let connection = amqp::connect(&url, "offboard-control").await?;
    let publisher = Publisher::new(&connection).await?;
    // The workers own the topology; an operator's user need only write to the control exchange.
    amqp::expect_exchange(publisher.channel(), &settings.amqp.control_exchange).await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let (replies, mut consumer) = amqp::private_consumer(&channel, None).await?;
    let body = serde_json::to_vec(command).expect("serializable");
    let mut props = lapin::BasicProperties::default().with_reply_to(replies);
    if let Some(secret) = &secret {
        props = sign(secret, &body, props);
    }
    // Fanout: delivered to every worker's control queue, or to none (not an error: no worker).
    publisher
        .channel()
        .basic_publish(
            settings.amqp.control_exchange.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await
        .map_err(AmqpError::from)?
        .await
        .map_err(AmqpError::from)?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, consumer.next()).await {
        if let Ok(reply) = serde_json::from_slice::<ControlReply>(&d.data) {
            let done = enough(&reply);
            out.push(reply);
            if done {
                break;
            }
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_signed_command_passes_once_and_anything_else_is_refused() {
        let body = br#"{"command":"approve","count":200,"by":"ops"}"#;
        let props = sign(&secret("s3cret"), body, BasicProperties::default());
        let mut v = Verifier::new(secret("s3cret"));
        assert_eq!(v.check(&props, body), Ok(()));
        assert_eq!(v.check(&props, body), Err(Unauthentic::Replayed));
        let changed = br#"{"command":"approve","count":201,"by":"ops"}"#;
        let props = sign(&secret("s3cret"), body, BasicProperties::default());
        assert_eq!(v.check(&props, changed), Err(Unauthentic::BadSignature));
        let other = sign(&secret("guess"), body, BasicProperties::default());
        assert_eq!(v.check(&other, body), Err(Unauthentic::BadSignature));
        assert_eq!(
            v.check(&BasicProperties::default(), body),
            Err(Unauthentic::Unsigned(header::SIGNED_AT))
        );
    }

    #[test]
    fn an_old_signature_is_refused() {
        let body = b"{}";
        let s = secret("k");
        let at = unix_now() - 3600;
        let sig = hex::encode(mac(&s, at, "n1", body).finalize().into_bytes());
        let mut h = FieldTable::default();
        h.insert(header::SIGNED_AT.into(), AMQPValue::LongLongInt(at as i64));
        h.insert(header::NONCE.into(), AMQPValue::LongString("n1".into()));
        h.insert(header::SIGNATURE.into(), AMQPValue::LongString(sig.into()));
        let props = BasicProperties::default().with_headers(h);
        assert!(matches!(
            Verifier::new(s).check(&props, body),
            Err(Unauthentic::Stale(n)) if n >= 3600
        ));
    }
}

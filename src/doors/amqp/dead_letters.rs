//! The dead-letter queue as operators see it: each letter's reason and history from its headers,
//! listed without taking any, or moved back to its provider's queue after a fix.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use serde::Serialize;

use super::{AmqpError, Publisher, connect, declare, header, header_str, job_properties};
use crate::config::Settings;

/// One dead letter, as `dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub job_id: Option<String>,
    pub provider: Option<String>,
    pub reason: String,
    pub message: Option<String>,
    pub attempts: Option<u64>,
    pub first_failure: Option<String>,
    pub last_failure: Option<String>,
}

fn when(secs: Option<String>) -> Option<String> {
    let s: u64 = secs?.parse().ok()?;
    Some(
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
    )
}

fn describe(props: &lapin::BasicProperties, body: &[u8]) -> DeadLetter {
    let h = |n| header_str(props, n);
    let body_provider = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()?
            .get("provider")?
            .as_str()
            .map(str::to_owned)
    };
    DeadLetter {
        job_id: props.message_id().as_ref().map(|s| s.as_str().to_owned()),
        provider: h(header::PROVIDER).or_else(body_provider),
        // Without our header the broker itself dead-lettered it: the delivery limit was reached.
        reason: h(header::REASON)
            .or_else(|| h("x-first-death-reason"))
            .unwrap_or_else(|| "unknown".into()),
        message: h(header::MESSAGE),
        attempts: h(header::ATTEMPTS).and_then(|a| a.parse().ok()),
        first_failure: when(h(header::FIRST_FAILURE)),
        last_failure: when(h(header::LAST_FAILURE)),
    }
}

/// Reads every dead letter without removing any (they return to the queue when the channel closes).
pub async fn list_dead_letters(settings: &Settings) -> Result<Vec<DeadLetter>, AmqpError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let connection = connect(&url, "offboard-dlq").await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    declare(&channel, &settings.amqp, &names).await?;
    let mut out = vec![];
    while let Some(m) = channel
        .basic_get(
            settings.amqp.dead_letter_queue.as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .map_err(AmqpError::from)?
    {
        out.push(describe(&m.delivery.properties, &m.delivery.data));
    }
    let _ = channel.close(200, "listed".into()).await;
    let _ = connection.close(200, "listed".into()).await;
    Ok(out)
}

/// Moves dead letters back to their provider's queue (after a fix), at most `limit`, only those of
/// `provider` when given. Each is republished with confirmation before it leaves the dead-letter
/// queue. Returns how many moved.
pub async fn replay_dead_letters(
    settings: &Settings,
    provider: Option<&str>,
    limit: Option<u64>,
) -> Result<u64, AmqpError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let connection = connect(&url, "offboard-dlq").await?;
    let publisher = Publisher::new(&connection).await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    declare(&channel, &settings.amqp, &names).await?;
    let mut moved = 0;
    while limit.is_none_or(|l| moved < l) {
        let Some(m) = channel
            .basic_get(
                settings.amqp.dead_letter_queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .map_err(AmqpError::from)?
        else {
            break;
        };
        let d = describe(&m.delivery.properties, &m.delivery.data);
        let Some(target) = d.provider.filter(|p| settings.providers.contains_key(p)) else {
            continue; // not a job of a configured provider: left in place
        };
        if provider.is_some_and(|p| p != target) {
            continue;
        }
        let mut props = job_properties(d.job_id.as_deref().unwrap_or_default());
        if d.job_id.is_none() {
            props = lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
        }
        publisher
            .publish(&settings.amqp.exchange, &target, &m.delivery.data, props)
            .await?;
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(AmqpError::from)?;
        moved += 1;
    }
    // Closing returns the dead letters we passed over to the queue.
    let _ = channel.close(200, "replayed".into()).await;
    let _ = connection.close(200, "replayed".into()).await;
    Ok(moved)
}

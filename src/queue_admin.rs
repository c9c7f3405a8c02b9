//! `offboard enqueue` (a CSV into the queues) and `offboard dlq list|replay` (the dead letters).

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::Confirmation;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::doors::amqp::{self, AmqpError, JobMessage, Publisher, header};
use crate::doors::csv::{self, CsvFile, InvalidRow, Plan};
use crate::job::Directory;
use crate::run::RunError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Csv(#[from] csv::CsvError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Secret(String),
}

/// What `enqueue` did.
pub struct Enqueued {
    pub plan: Plan,
    pub invalid: Vec<InvalidRow>,
    pub published: u64,
    pub unconfirmed: u64,
}

/// Publishes confirms at most this many ahead of the broker's acknowledgements.
const WINDOW: usize = 512;

/// Validates a CSV (invalid rows are returned, not published) and publishes every valid,
/// non-duplicate row as a job message, each confirmed by the broker.
pub async fn enqueue(
    settings: &Settings,
    directory: &Directory,
    path: &std::path::Path,
    show: usize,
    guard: impl FnOnce(&Plan) -> Result<(), String>,
) -> Result<Enqueued, QueueError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let csv = {
        let p = path.to_owned();
        tokio::task::spawn_blocking(move || CsvFile::open(&p))
            .await
            .expect("no panic")?
    };
    let (plan, invalid) = {
        let (csv, directory, n) = (csv.clone(), directory.clone(), settings.providers.len());
        tokio::task::spawn_blocking(move || {
            let mut shown = vec![];
            let plan = csv::scan(&csv, &directory, n, |r| {
                if shown.len() < show {
                    shown.push(r)
                }
            })?;
            Ok::<_, csv::CsvError>((plan, shown))
        })
        .await
        .expect("no panic")?
    };
    // The blast-radius guard, before the broker is even contacted.
    guard(&plan).map_err(QueueError::Refused)?;
    // What is published is what the guard approved: the same open file, unmodified.
    csv.unchanged()?;
    let connection = amqp::connect(&url, "offboard-enqueue").await?;
    let publisher = Publisher::new(&connection).await?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    amqp::declare(publisher.channel(), &settings.amqp, &names).await?;

    let (tx, mut rx) = mpsc::channel::<JobMessage>(1024);
    let reader = {
        let (csv, directory, duplicates) =
            (csv.clone(), directory.clone(), plan.duplicates.clone());
        tokio::task::spawn_blocking(move || {
            csv.for_each(|(line, raw)| {
                let Ok(raw) = raw else { return };
                for (_, job) in directory.validate_each(&raw, Some(line)) {
                    match job {
                        Ok(job) if !duplicates.contains(&(line, job.lane)) => {
                            let _ = tx.blocking_send(JobMessage::from_job(&job));
                        }
                        _ => {}
                    }
                }
            })
        })
    };
    let (mut published, mut unconfirmed) = (0u64, 0u64);
    let mut pending = FuturesUnordered::new();
    let exchange = settings.amqp.exchange.as_str();
    loop {
        tokio::select! {
            msg = rx.recv(), if pending.len() < WINDOW => match msg {
                Some(msg) => {
                    let body = serde_json::to_vec(&msg).expect("serializable");
                    let confirm = publisher.channel().basic_publish(
                        exchange.into(),
                        msg.provider.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &body,
                        amqp::job_properties(&msg.job_id),
                    ).await.map_err(AmqpError::from)?;
                    pending.push(confirm);
                }
                None => break,
            },
            Some(c) = pending.next(), if !pending.is_empty() => tally(c, &mut published, &mut unconfirmed),
        }
    }
    while let Some(c) = pending.next().await {
        tally(c, &mut published, &mut unconfirmed);
    }
    reader.await.expect("no panic")?;
    let _ = connection.close(200, "enqueued".into()).await;
    Ok(Enqueued {
        plan,
        invalid,
        published,
        unconfirmed,
    })
}

fn tally(c: lapin::Result<Confirmation>, published: &mut u64, unconfirmed: &mut u64) {
    match c {
        Ok(c) => {
            if c.is_ack() && c.take_message().is_none() {
                *published += 1
            } else {
                *unconfirmed += 1
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "publish not confirmed");
            *unconfirmed += 1;
        }
    }
}

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
    let h = |n| amqp::header_str(props, n);
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
pub async fn list(settings: &Settings) -> Result<Vec<DeadLetter>, QueueError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let connection = amqp::connect(&url, "offboard-dlq").await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    amqp::declare(&channel, &settings.amqp, &names).await?;
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
pub async fn replay(
    settings: &Settings,
    provider: Option<&str>,
    limit: Option<u64>,
) -> Result<u64, QueueError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let connection = amqp::connect(&url, "offboard-dlq").await?;
    let publisher = Publisher::new(&connection).await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    amqp::declare(&channel, &settings.amqp, &names).await?;
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
        let mut props = amqp::job_properties(d.job_id.as_deref().unwrap_or_default());
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

/// Sends an operator command to every worker through the control exchange and gathers their
/// answers for `wait`.
pub async fn control(
    settings: &Settings,
    command: &crate::doors::control::Control,
    wait: std::time::Duration,
) -> Result<Vec<crate::doors::control::ControlReply>, QueueError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let secret = settings.amqp.control_secret().map_err(QueueError::Secret)?;
    let connection = amqp::connect(&url, "offboard-control").await?;
    let publisher = Publisher::new(&connection).await?;
    // The workers own the topology; an operator's user need only write to the control exchange.
    amqp::expect_exchange(publisher.channel(), &settings.amqp.control_exchange).await?;
    let channel = connection.create_channel().await.map_err(AmqpError::from)?;
    let (replies, mut consumer) = amqp::private_consumer(&channel, None).await?;
    let body = serde_json::to_vec(command).expect("serializable");
    let mut props = lapin::BasicProperties::default().with_reply_to(replies);
    if let Some(secret) = &secret {
        props = crate::doors::control::sign(secret, &body, props);
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
        if let Ok(reply) = serde_json::from_slice::<crate::doors::control::ControlReply>(&d.data) {
            out.push(reply);
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(out)
}

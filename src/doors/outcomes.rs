//! The outcomes exchange: every job a worker finishes, its report line as a persistent JSON
//! message on a durable topic exchange (routing key `<provider>.<outcome>`, publisher confirms),
//! so a ticketing system, a SIEM or the identity team can follow, and several replicas' outcomes
//! meet in one place. The report stays the record: this is a copy for others to read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Amqp;
use crate::doors::amqp::{self, AmqpError, Publisher};
use crate::outcome::Observer;
use crate::outcome::Record;

/// Records waiting for the broker at most; past it, outcomes are dropped (and said): a broker
/// refusing this exchange must not stop removals.
const BACKLOG: usize = 100_000;

/// The routing key of a record: `<provider>.<outcome>`.
pub fn routing_key(r: &Record) -> String {
    format!(
        "{}.{}",
        r.provider.as_deref().unwrap_or("unknown"),
        r.outcome.as_str()
    )
}

/// Starts the publisher on its own connection (made anew after a failure) and returns the
/// observer that feeds it, for [`crate::sink::Outcomes::then`], and the publisher's task. The
/// task ends once every observer is dropped and what they queued is published, or at `grace`
/// after `stop`, whichever comes first.
pub fn start(
    url: String,
    amqp: Amqp,
    stop: CancellationToken,
    grace: Duration,
) -> (Observer, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Record>(BACKLOG);
    let task = tokio::spawn(publish_loop(url, amqp, rx, stop, grace));
    let observer: Observer = Arc::new(move |r: &Record| {
        if tx.try_send(r.clone()).is_err() {
            tracing::error!(
                job_id = r.job_id,
                "the outcomes exchange is behind: this outcome is in the report only"
            );
        }
    });
    (observer, task)
}

async fn publish_loop(
    url: String,
    amqp: Amqp,
    mut rx: mpsc::Receiver<Record>,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut pending: VecDeque<Record> = VecDeque::new();
    let mut delay = Duration::from_millis(200);
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline);
    loop {
        let publisher = tokio::select! {
            _ = &mut deadline => break,
            p = connect(&url, &amqp) => p,
        };
        let (_connection, publisher) = match publisher {
            Ok(p) => {
                delay = Duration::from_millis(200);
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "outcomes exchange: cannot connect; retrying");
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        loop {
            let record = match pending.pop_front() {
                Some(r) => r,
                None => tokio::select! {
                    _ = &mut deadline => return,
                    r = rx.recv() => match r {
                        Some(r) => r,
                        None => return,
                    },
                },
            };
            let body = serde_json::to_vec(&record).expect("a record serializes");
            // Not mandatory: nobody bound for this key is no failure, and the broker returning
            // each message would only fill the log (with the record in it).
            let sent = async {
                publisher
                    .channel()
                    .basic_publish(
                        amqp.outcomes_exchange.as_str().into(),
                        routing_key(&record).as_str().into(),
                        Default::default(),
                        &body,
                        amqp::job_properties(&record.job_id),
                    )
                    .await?
                    .await
            }
            .await
            .map_err(AmqpError::from);
            match sent {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outcomes exchange: publish failed; reconnecting");
                    pending.push_front(record);
                    break;
                }
            }
        }
    }
    if !pending.is_empty() || !rx.is_empty() {
        tracing::error!(
            unpublished = pending.len() + rx.len(),
            "stopping with outcomes not published to the exchange (they are in the report)"
        );
    }
}

async fn connect(url: &str, amqp: &Amqp) -> Result<(lapin::Connection, Publisher), AmqpError> {
    let conn = amqp::connect(url, "offboard-outcomes").await?;
    let publisher = Publisher::new(&conn).await?;
    declare_exchange(publisher.channel(), amqp).await?;
    Ok((conn, publisher))
}

/// The outcomes exchange, as [`amqp::declare`] declares it.
async fn declare_exchange(channel: &lapin::Channel, amqp: &Amqp) -> Result<(), AmqpError> {
    channel
        .exchange_declare(
            amqp.outcomes_exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Prints every outcome published from now on (a private queue bound with `binding`), until
/// `idle` passes without one (None: until interrupted).
pub async fn follow(
    amqp: &Amqp,
    binding: &str,
    idle: Option<Duration>,
    mut print: impl FnMut(&str),
) -> Result<(), AmqpError> {
    let url = amqp.url().ok_or(AmqpError::NoUrl)?;
    let conn = amqp::connect(&url, "offboard-outcomes-follow").await?;
    let channel = conn.create_channel().await?;
    declare_exchange(&channel, amqp).await?;
    let (_, mut consumer) =
        amqp::private_consumer(&channel, Some((&amqp.outcomes_exchange, binding))).await?;
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => tokio::select! {
                n = consumer.next() => n,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        match next {
            Some(Ok(d)) => print(&String::from_utf8_lossy(&d.data)),
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

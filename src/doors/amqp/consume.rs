//! Consuming a queue: prefetch bounds what is unacknowledged, confirm mode for what is published
//! on the same channel.

use futures_util::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::AmqpError;

/// Starts consuming `queue` with at most `prefetch` unacknowledged deliveries, on a channel in
/// confirm mode (for dead letters and split events).
pub async fn open_consumer(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<lapin::Consumer, AmqpError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// The next delivery; `Ok(None)` when the session ends or the consumer is cancelled, `Err` when
/// the connection failed.
pub async fn next_delivery(
    consumer: &mut lapin::Consumer,
    session: &CancellationToken,
) -> Result<Option<Delivery>, AmqpError> {
    tokio::select! {
        biased;
        _ = session.cancelled() => Ok(None),
        next = consumer.next() => next.transpose().map_err(AmqpError::from),
    }
}

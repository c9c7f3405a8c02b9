//! The RabbitMQ door: topology, the job and event message formats, and confirmed publishing.
//!
//! One durable quorum queue per provider entry (`offboard.jobs.<name>`), bound to a direct exchange by
//! the entry name, so each lane consumes only its own queue; every queue dead-letters to a fanout
//! exchange and its queue (`offboard.dead`), with `x-delivery-limit` so a message that keeps killing
//! the worker ends there instead of looping. Person-level events arrive on an intake queue.

use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

use crate::config::Amqp;

mod consume;
mod dead_letters;
mod message;
mod publish;
mod schedule;
mod settle;
mod stream;
mod topology;

pub use consume::{next_delivery, open_consumer};
pub use dead_letters::{DeadLetter, list_dead_letters, replay_dead_letters};
pub use message::{
    Event, EventTarget, JobMessage, Unreadable, header_str, job_properties, read_event, read_job,
    stable_id,
};
pub use publish::{Publisher, confirm_publish};
pub use schedule::{
    CANCEL_KIND, declare_schedule, request_cancel, schedule_job, send_to_wait, tier_queue,
};
pub use settle::{Acker, Part, Settled, Why, ack, dead_letter, hand_back, requeue};
pub use stream::{append, declare_stream, entry_properties, follow, follow_ack, replay, take_lock};
pub use topology::{declare, declare_intake, expect_exchange, private_consumer};

/// Headers the worker sets on a dead letter.
pub mod header {
    pub const REASON: &str = "x-offboard-reason";
    pub const MESSAGE: &str = "x-offboard-message";
    pub const PROVIDER: &str = "x-offboard-provider";
    pub const ATTEMPTS: &str = "x-offboard-attempts";
    pub const FIRST_FAILURE: &str = "x-offboard-first-failure";
    pub const LAST_FAILURE: &str = "x-offboard-last-failure";
    pub const SOURCE_QUEUE: &str = "x-offboard-source-queue";
}

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("no broker URL: set OFFBOARD_AMQP_URL or amqp.url in the config")]
    NoUrl,
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm a publish to `{0}` (nacked or unroutable)")]
    NotConfirmed(String),
}

/// Connects, naming the connection so operators can tell replicas apart in the broker's UI.
/// A quorum queue's arguments: with `dead_letter`, dead-lettering to `amqp.dead_letter_exchange`
/// after `amqp.delivery_limit` deliveries; with `single_active`, one active consumer.
pub(crate) fn quorum_args(amqp: &Amqp, dead_letter: bool, single_active: bool) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(amqp.dead_letter_exchange.as_str().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(amqp.delivery_limit as i32),
        );
    }
    if single_active {
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    args
}

pub async fn connect(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, props).await?)
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_urls_password_is_in_no_error() {
        for url in [
            "amqp://offboard:s3cr3t-pw@127.0.0.1:notaport/%2f",
            "amqp://offboard:s3cr3t-pw@127.0.0.1:1/%2f",
            "amqp//offboard:s3cr3t-pw@127.0.0.1/",
            "amqps://offboard:s3cr3t-pw@[::1/",
        ] {
            let e = connect(url, "test").await.expect_err("no broker there");
            let text = format!("{e} {e:?}");
            assert!(!text.contains("s3cr3t-pw"), "{url}: {text}");
        }
    }
}

//! The gate: the one worker at a time that takes people off the intake queue, counts them in the
//! quarantine's log, and lets them reach the lanes only as [`crate::safety::quarantine`] decides.
//!
//! The log is a RabbitMQ stream (`amqp.gate_stream`): every person, every quarantine, release,
//! rejection and finished person is an entry, confirmed by the broker before it takes effect (and
//! before the intake message is acknowledged). The gate is whoever holds `<stream>.lock`, an
//! exclusive queue the broker deletes with its holder's connection; the next worker to declare it
//! replays the stream from its start (up to a mark it writes) and goes on where the last stopped.
//! So the count and the quarantine survive kill -9 of any process, a broker restart, and a
//! failover; the stream's entries are a few hundred bytes a person.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::{Channel, Connection};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::doors::amqp::{self, AmqpError, Event};
use crate::safety::quarantine::{Entry, Finish, GateView, Ledger, now_ms};

use super::Ctx;
use super::intake::{self, Split, Unsent};
use crate::doors::amqp::{next_delivery, open_consumer};

/// The longest the gate sleeps without looking at the clock (metrics, trimming).
const TICK: Duration = Duration::from_secs(5);
/// How often the gate's gauges are brought up to date.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Intake messages the gate takes at a time.
const PREFETCH: u16 = 64;

/// What the control consumer asks the gate (when this worker is it).
pub(super) enum Ask {
    View(oneshot::Sender<GateView>),
    Decide {
        decision: Decision,
        by: String,
        reply: oneshot::Sender<(GateView, Result<String, String>)>,
    },
}

/// An operator's decision on the open quarantine.
pub(super) enum Decision {
    Approve(usize),
    Reject(Option<usize>),
}

/// The way to the gate task, set while this worker holds the gate.
pub(super) type GateHandle = super::handle::Handle<Ask>;

/// Takes the gate when it is free and keeps it until the session ends.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    handle: Arc<GateHandle>,
    connection: Arc<Connection>,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    let stream = ctx.settings.amqp.gate_stream.clone();
    let lock = format!("{stream}.lock");
    let Some(_lock) = amqp::take_lock(&connection, &lock, "gate", &session).await? else {
        return Ok(());
    };
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(Default::default())
        .await
        .map_err(AmqpError::from)?;
    let mut ledger = Ledger::new(ctx.settings.safety.quarantine());
    let started = std::time::Instant::now();
    let replayed = replay(&connection, &channel, &stream, &mut ledger, &session).await?;
    let now = now_ms();
    ledger.trim(now);
    let view = ledger.view(now);
    tracing::info!(
        entries = replayed,
        replay_ms = started.elapsed().as_millis() as u64,
        people_in_window = view.in_window_total,
        quarantined = view.quarantine.as_ref().map_or(0, |q| q.people),
        "this worker is the gate of the automatic doors"
    );
    let (tx, mut asks) = mpsc::channel(16);
    handle.set(Some(tx));
    let mut gate = Gate {
        ctx: ctx.clone(),
        channel,
        stream,
        ledger,
    };
    let result = gate.serve(&connection, &mut asks, &session).await;
    handle.set(None);
    ctx.metrics.gate(None);
    result
}

/// Reads the log from its start into `ledger`, up to a mark of its own: see [`amqp::replay`].
async fn replay(
    connection: &Connection,
    confirms: &Channel,
    stream: &str,
    ledger: &mut Ledger,
    session: &CancellationToken,
) -> Result<u64, AmqpError> {
    let mut read = 0u64;
    amqp::replay(connection, confirms, stream, session, |body| {
        read += 1;
        match serde_json::from_slice::<Entry>(body) {
            Ok(entry) => ledger.apply(&entry),
            Err(e) => {
                tracing::error!(error = %e, offset = read, "an entry of the gate's log cannot be read; skipped")
            }
        }
        if read % 10_000 == 0 {
            ledger.trim(now_ms());
        }
    })
    .await?;
    Ok(read)
}

/// Appends one entry to the log and waits for the broker's confirmation.
async fn append(channel: &Channel, stream: &str, entry: &Entry) -> Result<(), AmqpError> {
    amqp::append(channel, stream, entry).await
}

struct Gate {
    ctx: Arc<Ctx>,
    /// In confirm mode: the log's entries, the released jobs, the quarantine's notices.
    channel: Channel,
    stream: String,
    ledger: Ledger,
}

impl Gate {
    async fn serve(
        &mut self,
        connection: &Connection,
        asks: &mut mpsc::Receiver<Ask>,
        session: &CancellationToken,
    ) -> Result<(), AmqpError> {
        // What a gate before this one decided and did not finish.
        self.finish().await?;
        let queue = self.ctx.settings.amqp.intake_queue.clone();
        let intake_channel = connection.create_channel().await?;
        let tag = format!("offboard-gate-{}", std::process::id());
        let mut consumer = open_consumer(&intake_channel, &queue, &tag, PREFETCH).await?;
        let mut shown: Option<std::time::Instant> = None;
        loop {
            // The view reads every person in the window: at most once a second, not per person.
            if shown.is_none_or(|t| t.elapsed() >= METRICS_EVERY) {
                self.ctx.metrics.gate(Some(&self.ledger.view(now_ms())));
                shown = Some(std::time::Instant::now());
            }
            let wake = self
                .ledger
                .next_due()
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                .unwrap_or(TICK)
                .min(TICK);
            tokio::select! {
                biased;
                _ = session.cancelled() => return Ok(()),
                ask = asks.recv() => match ask {
                    Some(ask) => self.answer(ask).await?,
                    None => return Ok(()),
                },
                next = next_delivery(&mut consumer, session) => match next? {
                    Some(delivery) => self.arrive(&intake_channel, &queue, delivery).await?,
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(wake) => self.ledger.trim(now_ms()),
            }
            self.due().await?;
            self.finish().await?;
        }
    }

    /// Writes `entry` to the log, then lets it take effect.
    async fn write(&mut self, entry: Entry) -> Result<(), AmqpError> {
        append(&self.channel, &self.stream, &entry).await?;
        self.ledger.apply(&entry);
        Ok(())
    }

    /// A person off the intake queue: logged (joining the open quarantine, if any), then
    /// acknowledged. A copy of one already logged is acknowledged and not counted again.
    async fn arrive(
        &mut self,
        intake_channel: &Channel,
        queue: &str,
        delivery: Delivery,
    ) -> Result<(), AmqpError> {
        let ctx = self.ctx.clone();
        let acker = amqp::Acker {
            channel: intake_channel,
            queue,
            dead_letter_exchange: &ctx.settings.amqp.dead_letter_exchange,
            delivery: &delivery,
        };
        let Some((event, event_id)) = intake::parse(&ctx, &acker, &delivery).await else {
            return Ok(());
        };
        if event.reactivated {
            // Not a removal: it counts toward no quarantine, and goes to the scheduler, which
            // cancels the person's removals still waiting (in shadow mode: said, not done).
            if event.shadow {
                tracing::warn!(
                    event_id,
                    "shadow mode: a reactivation would cancel the person's scheduled removals"
                );
            } else {
                let request = crate::schedule::CancelRequest {
                    person: event.person(),
                    event: event_id.clone(),
                    by: event
                        .requested_by
                        .clone()
                        .unwrap_or_else(|| event.door().to_owned()),
                };
                amqp::request_cancel(&self.channel, &ctx.settings.amqp, &request).await?;
            }
            acker.ack().await;
            return Ok(());
        }
        if !self.ledger.knows(&event_id) {
            let now = now_ms();
            let join = self.ledger.on_arrival(&event_id, now);
            self.write(Entry::Arrived {
                event: event_id.clone(),
                door: event.door().to_owned(),
                person: event.person(),
                shadow: event.shadow,
                at: now,
                payload: serde_json::to_value(&event).expect("an event serializes"),
            })
            .await?;
            if let Some(join) = join {
                tracing::error!(
                    event_id,
                    door = event.door(),
                    "quarantined: joins the open quarantine"
                );
                self.write(join).await?;
            }
        }
        acker.ack().await;
        Ok(())
    }

    /// People due now: released, or quarantined (with everyone not yet sent).
    async fn due(&mut self) -> Result<(), AmqpError> {
        let now = now_ms();
        let was_open = self.ledger.open().map(str::to_owned);
        let Some(entry) = self.ledger.on_due(now, || uuid::Uuid::new_v4().to_string()) else {
            return Ok(());
        };
        self.write(entry).await?;
        if self.ledger.open().is_none() || self.ledger.open() == was_open.as_deref() {
            return Ok(());
        }
        let view = self.ledger.view(now);
        if let Some(q) = view.quarantine.as_ref() {
            tracing::error!(
                quarantine = q.id,
                people = q.people,
                in_window = view.in_window_total,
                max_people_per_window = view.max_people_per_window,
                "QUARANTINE OPENED: more people arrived from identity systems than safety.max_people_per_window allows; nothing of theirs is sent until an operator runs `offboard quarantine approve --count N` or `reject`"
            );
            self.notice(
                "quarantine.opened",
                &serde_json::to_value(q).expect("serializable"),
            )
            .await;
        }
        Ok(())
    }

    /// Sends (or records) every person whose fate is decided, each marked done in the log after.
    async fn finish(&mut self) -> Result<(), AmqpError> {
        let todo: Vec<(String, serde_json::Value, bool, Finish)> = self
            .ledger
            .unfinished()
            .into_iter()
            .map(|(p, f)| (p.event.clone(), p.payload.clone(), p.shadow, f))
            .collect();
        for (event_id, payload, shadow, finish) in todo {
            let split = match serde_json::from_value::<Event>(payload) {
                Err(e) => {
                    tracing::error!(error = %e, event_id, "an event in the gate's log cannot be read: nothing of it is sent");
                    Split::Done
                }
                Ok(event) => match &finish {
                    Finish::Send if shadow => {
                        intake::record_unsent(&self.ctx, &event, &event_id, &Unsent::Shadow).await
                    }
                    Finish::Send => {
                        intake::release(&self.ctx, &self.channel, &event, &event_id).await?
                    }
                    Finish::Reject { by, quarantine } => {
                        let why = Unsent::Rejected { by, quarantine };
                        intake::record_unsent(&self.ctx, &event, &event_id, &why).await
                    }
                },
            };
            match split {
                Split::Done => self.write(Entry::Done { event: event_id }).await?,
                Split::Unrecorded => {
                    // The report or the audit log cannot be written: the lanes stop too. Try
                    // again later rather than in a loop.
                    tokio::time::sleep(TICK).await;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn answer(&mut self, ask: Ask) -> Result<(), AmqpError> {
        let now = now_ms();
        let (decision, by, reply) = match ask {
            Ask::View(reply) => {
                let _ = reply.send(self.ledger.view(now));
                return Ok(());
            }
            Ask::Decide {
                decision,
                by,
                reply,
            } => (decision, by, reply),
        };
        let before = self.ledger.view(now).quarantine;
        let decided = match decision {
            Decision::Approve(count) => self.ledger.approve(count, &by, now),
            Decision::Reject(count) => self.ledger.reject(count, &by, now),
        };
        let (entry, q) = match (decided, before) {
            (Ok(entry), Some(q)) => (entry, q),
            (Err(refusal), _) => {
                tracing::warn!(by, %refusal, "a quarantine decision was refused");
                let _ = reply.send((self.ledger.view(now), Err(refusal.to_string())));
                return Ok(());
            }
            (Ok(_), None) => unreachable!("a decision is only made on an open quarantine"),
        };
        let (what, events) = match &entry {
            Entry::Released { events, .. } => ("approved", events.clone()),
            Entry::Rejected { events, .. } => ("rejected", events.clone()),
            _ => unreachable!("a decision releases or rejects"),
        };
        let audit = crate::sink::audit::Decision::new(what, &q.id, q.people, &by, events);
        if !self.ctx.sink.decision(&audit).await {
            let _ = reply.send((
                self.ledger.view(now),
                Err("the audit log cannot be written: nothing was decided".into()),
            ));
            return Ok(());
        }
        self.write(entry).await?;
        tracing::warn!(
            quarantine = q.id,
            people = q.people,
            by,
            "quarantine {what} by an operator"
        );
        self.notice(
            &format!("quarantine.{what}"),
            &serde_json::json!({"quarantine": q.id, "people": q.people, "by": by}),
        )
        .await;
        let said = format!(
            "{what} quarantine {} of {} people (by {by})",
            q.id, q.people
        );
        let _ = reply.send((self.ledger.view(now), Ok(said)));
        Ok(())
    }

    /// Publishes a notice on the outcomes exchange (routing key `quarantine.*`); a notice lost
    /// is logged, the log and the metrics still say it.
    async fn notice(&self, key: &str, body: &serde_json::Value) {
        let body = serde_json::to_vec(body).expect("serializable");
        let props = lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        // Not mandatory: nobody need be listening on the outcomes exchange.
        let sent = self
            .channel
            .basic_publish(
                self.ctx.settings.amqp.outcomes_exchange.as_str().into(),
                key.into(),
                Default::default(),
                &body,
                props,
            )
            .await;
        let confirmed = match sent {
            Ok(confirm) => confirm.await.map(|c| c.is_ack()).unwrap_or(false),
            Err(_) => false,
        };
        if !confirmed {
            let e = "not confirmed";
            tracing::warn!(error = %e, key, "a quarantine notice was not confirmed on the outcomes exchange");
        }
    }
}

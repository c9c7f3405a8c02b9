//! The control queue: operator commands to every worker (`offboard hold list|release`,
//! `offboard quarantine list|approve|reject`, which only the gate answers with its state).

use std::sync::Arc;

use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;

use crate::doors::amqp::AmqpError;
use crate::doors::control::Verifier;
use crate::lane::Lane;

use super::Roles;
use super::gate::{Ask, Decision, GateHandle};
use super::scheduler;
use crate::doors::amqp::next_delivery;

/// Answers operator commands from the control exchange: `list` and `release PROVIDER`.
pub(super) async fn consume_control(
    lanes: Vec<Arc<Lane>>,
    roles: Roles,
    channel: Channel,
    exchange: String,
    mut verifier: Option<Verifier>,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    let (_, mut consumer) =
        crate::doors::amqp::private_consumer(&channel, Some((exchange.as_str(), ""))).await?;
    let me = format!("{}:{}", hostname(), std::process::id());
    loop {
        let delivery = match next_delivery(&mut consumer, &session).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(v) = verifier.as_mut() {
            if let Err(why) = v.check(&delivery.properties, &delivery.data) {
                tracing::error!(%why, "ignoring a control command that is not authentic: {why}");
                continue;
            }
        }
        let Ok(command) = serde_json::from_slice::<crate::doors::control::Control>(&delivery.data)
        else {
            tracing::warn!("ignoring a malformed control message");
            continue;
        };
        let mut released = false;
        if let crate::doors::control::Control::Release { provider } = &command {
            if let Some(hold) = lanes
                .iter()
                .find(|l| *l.name == **provider)
                .and_then(|l| l.hold())
            {
                released = hold.is_held();
                hold.release();
                tracing::warn!(provider, "hold released by an operator");
            }
        }
        let gate = &roles.gate;
        let schedule = match &command {
            crate::doors::control::Control::Schedule { filter } => roles
                .scheduler
                .ask(|reply| scheduler::Ask::List(filter.clone(), reply))
                .await
                .map(crate::doors::control::ScheduleReply::View),
            crate::doors::control::Control::Cancel { selector, by } => roles
                .scheduler
                .ask(|reply| scheduler::Ask::Cancel {
                    selector: selector.clone(),
                    by: by.clone(),
                    event: None,
                    reply,
                })
                .await
                .map(crate::doors::control::ScheduleReply::Cancelled),
            _ => None,
        };
        let gate = match command {
            crate::doors::control::Control::List
            | crate::doors::control::Control::Release { .. }
            | crate::doors::control::Control::Schedule { .. }
            | crate::doors::control::Control::Cancel { .. } => None,
            crate::doors::control::Control::Quarantine => {
                gate.ask(Ask::View)
                    .await
                    .map(|view| crate::doors::control::GateReply {
                        view,
                        decided: None,
                    })
            }
            crate::doors::control::Control::Approve { count, by } => {
                decide(gate, Decision::Approve(count), by).await
            }
            crate::doors::control::Control::Reject { count, by } => {
                decide(gate, Decision::Reject(count), by).await
            }
        };
        let Some(reply_to) = delivery.properties.reply_to().clone() else {
            continue;
        };
        let reply = crate::doors::control::ControlReply {
            worker: me.clone(),
            released,
            holds: lanes
                .iter()
                .filter_map(|l| l.hold().map(|h| h.state(&l.name)))
                .collect(),
            gate,
            schedule,
        };
        let body = serde_json::to_vec(&reply).expect("serializable");
        let _ = channel
            .basic_publish(
                "".into(),
                reply_to,
                Default::default(),
                &body,
                BasicProperties::default(),
            )
            .await;
    }
}

/// An operator's decision, taken by the gate if this worker is it.
async fn decide(
    gate: &GateHandle,
    decision: Decision,
    by: String,
) -> Option<crate::doors::control::GateReply> {
    let (view, decided) = gate
        .ask(|reply| Ask::Decide {
            decision,
            by,
            reply,
        })
        .await?;
    Some(crate::doors::control::GateReply {
        view,
        decided: Some(decided),
    })
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}

//! Doors: where jobs come from. Each turns outside input into [`crate::job::RawJob`]s and hands them
//! to validation; none of them sends anything. What a door yields is a job or the reason its input
//! is not one ([`crate::job::Invalid`]), with an [`Ack`]: the outcome sink
//! ([`crate::sink::Outcomes::settle`]) records the outcome, then tells the door through it.
pub mod amqp;
pub mod control;
pub mod csv;
pub mod intake;
pub mod outcomes;

use std::future::Future;

use crate::outcome::Record;

/// How a door lets go of its input once the job's outcome is recorded.
pub trait Ack {
    /// What the door did with its input, for the caller's counters.
    type Settled;
    /// Whether the outcome must be on disk before the door is told: a broker forgets an
    /// acknowledged message, while a CSV row stays in its file and resume reads the report.
    const WAITS_FOR_DISK: bool;
    /// The outcome is recorded (on disk, when [`Ack::WAITS_FOR_DISK`]).
    fn settled(self, record: &Record) -> impl Future<Output = Self::Settled> + Send;
    /// The outcome could not be recorded: keep the input for a later try.
    fn unrecorded(self) -> impl Future<Output = Self::Settled> + Send;
}

//! Jobs: what one removal is, and the only way to get one from outside input.
//!
//! A door (CSV row, queue message) yields a [`RawJob`] of borrowed strings; [`Directory::validate`]
//! is the only way to turn it into a [`Job`], whose [`Target`] is already in the exact id format its
//! provider's API page asks for. Everything downstream can then trust the job without re-checking.
//!
//! - `kind`: the five provider kinds.
//! - `raw`: [`RawJob`], as a door read it.
//! - `due`: when a removal is due (`not_before`, `last_day` in a `time_zone`).
//! - `ids`: one parser per id format.
//! - `invalid`: [`Invalid`], why a raw job is not a job.
//! - `target`: [`Target`], [`Subject`], [`Job`].
//! - `validate`: [`Directory`], the only way from one to the other.

mod due;
mod ids;
mod invalid;
mod kind;
mod raw;
mod target;
mod validate;

pub use due::{SchedulePolicy, due};
pub use ids::{Email, OpaqueId, PrefixedId, Uuid};
pub use invalid::Invalid;
pub use kind::ProviderKind;
pub use raw::RawJob;
pub use target::{Job, LaneId, Subject, Target};
pub use validate::{Directory, EVERY_PROVIDER};

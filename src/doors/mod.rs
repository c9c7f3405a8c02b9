//! Doors: where jobs come from. Each turns outside input into [`crate::job::RawJob`]s and hands them
//! to validation; none of them sends anything.
pub mod amqp;
pub mod csv;

//! offboard: removes people from the organizations of SaaS providers, in bulk and on events.
//!
//! - [`job`]: raw jobs from the doors, validated jobs and their per-provider targets.
//! - [`doors`]: where jobs come from (the CSV file).
//! - [`lane`]: per-provider pacing, in-flight bound, pause, circuit, and the attempt loop.
//! - [`retry`]: the one classification of answers, and the backoff schedule.
//! - [`providers`]: one adapter per provider API page, credentials, the uniform answer.
//! - [`report`]: the JSON Lines report writer.
//! - [`config`]: the TOML configuration with environment overrides.
//! - [`run`]: `offboard run`, the CSV path end to end.
//! - [`sandbox`]: the five providers simulated on loopback.
//! - [`verify`]: `offboard verify`, read-only proof that the people a report says are gone are gone.
pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod doors;
pub mod hold;
pub mod job;
pub mod lane;
pub mod metrics;
pub mod progress;
pub mod providers;
pub mod queue_admin;
pub mod report;
pub mod retry;
pub mod run;
pub mod safety;
pub mod sandbox;
pub mod verify;
pub mod worker;

//! offboard: removes people from the organizations of SaaS providers, in bulk and on events.
//!
//! A job's way: door -> validation -> [`job::Job`] -> lane (preflight, lookup, pace, attempt,
//! classify) -> record -> report, audit log, metrics -> acknowledgement.
//!
//! - [`doors`]: where jobs come from: the CSV file, RabbitMQ (topology, messages, publishing).
//! - [`job`]: raw jobs, id formats, targets, and validation, the only way to a job.
//! - [`safety`]: the blast-radius guard and protected accounts.
//! - [`lane`]: per provider entry: pacer and adaptive pace, circuit, preflight and member lists,
//!   the attempt loop; [`pace_file`]: the learned rates kept for the next start.
//! - [`retry`]: the one classification of answers, and the backoff schedule.
//! - [`providers`]: one adapter per provider API page, the HTTP client, credentials, the answer.
//! - [`sink`]: the one outcome path: audit log, report, metrics, tally, then the door may ack;
//!   [`report`], [`audit`]: the JSON Lines report and the fsync'd audit log; what is settled.
//! - [`metrics`]: the Prometheus registry; [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`run`]: `offboard run`; [`worker`]: `offboard worker`; [`queue_admin`]: enqueue, dlq;
//!   [`hold`]: the worker's window hold; [`verify`]: `offboard verify`.
//! - [`config`]: the TOML configuration with environment overrides, producing what the others take.
//! - [`cli`], [`console`], [`progress`]: the command line, messages for people, the closing table.
//! - [`sandbox`]: the five providers simulated on loopback, in their pages' shapes.
#![forbid(unsafe_code)]

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
pub mod outcome;
pub mod progress;
pub mod providers;
pub mod queue_admin;
pub mod report;
pub mod retry;
pub mod run;
pub mod safety;
pub mod sandbox;
pub mod sink;
pub mod verify;
pub mod worker;

//! offboard: removes people from the organizations of SaaS providers, in bulk and on events.
//!
//! A job's way, as the folders read: [`doors`] → [`job`] → [`lane`] → [`providers`] →
//! [`outcome`] → [`sink`].
//!
//! - [`doors`]: where jobs come in: the CSV file, RabbitMQ (the whole wire format: topology,
//!   messages, deliveries read, confirmed publishing, dead letters), the HTTP intake (Okta, SCIM),
//!   operators' control commands, the outcomes exchange.
//! - [`job`]: raw jobs as read, id formats, targets, and validation, the only way to a job.
//! - [`safety`]: the blast-radius guard, protected accounts, the worker's window hold and the
//!   automatic doors' quarantine.
//! - [`lane`]: per provider entry: the registry ([`lane::Lanes`]), the one paced, retried,
//!   classified request, pacing, circuit, member lists and preflight, a removal's attempt.
//! - [`retry`]: the one classification of answers, and the backoff schedule.
//! - [`providers`]: one adapter per provider API page, the HTTP client, credentials, the answer.
//! - [`outcome`]: what became of a job: the outcome, its typed reason, the record, the tally.
//! - [`reconcile`]: members sorted against a roster: kept, orphans, protected.
//! - [`schedule`]: removals due later: the log's entries, what they fold to, the delay tiers.
//! - [`sink`]: the one outcome path: audit log, report, metrics, tally, then the door may ack.
//! - [`metrics`]: the Prometheus registry; [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`run`]: a CSV file through the lanes now, with its progress and closing table;
//!   [`worker`]: the lanes on the broker's queues, the gate; [`verify`]: a report asked again.
//! - [`commands`]: the command line, one thin file per command (anyhow lives only there);
//!   [`console`]: messages for people.
//! - [`config`]: the TOML configuration with environment overrides, producing what the others take.
//! - [`sandbox`]: the five providers simulated on loopback, in their pages' shapes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod commands;
pub mod config;
pub mod console;
pub mod doors;
pub mod job;
pub mod lane;
pub mod metrics;
pub mod outcome;
pub mod providers;
pub mod reconcile;
pub mod retry;
pub mod run;
pub mod safety;
pub mod sandbox;
pub mod schedule;
pub mod sink;
pub mod verify;
pub mod worker;

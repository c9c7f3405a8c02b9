//! The config's tables besides the provider entries: `[http]`, `[audit]`, `[safety]`,
//! `[metrics]`, `[amqp]`, `[worker]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[http]`: how requests reach the providers, for every entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// An explicit proxy for every provider request (`http://proxy.corp.example:3128`), without
    /// credentials in it. Unset: the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` variables.
    /// `NO_PROXY` is honoured either way.
    pub proxy: Option<String>,
    /// Environment variable holding the proxy's user name (Basic auth).
    pub proxy_username_env: Option<String>,
    /// Environment variable holding the proxy's password.
    pub proxy_password_env: Option<String>,
    /// File holding the proxy's password (first line).
    pub proxy_password_file: Option<PathBuf>,
    /// A PEM bundle of CA certificates trusted besides the system's (a private CA, a
    /// TLS-inspecting proxy).
    pub ca_file: Option<PathBuf>,
    /// Bytes: the largest member list answer read (a 50,000-member organization is a few MB).
    /// Default 268435456 (256 MiB). A larger answer fails the lookup with this key's name.
    pub max_list_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            proxy: None,
            proxy_username_env: None,
            proxy_password_env: None,
            proxy_password_file: None,
            ca_file: None,
            max_list_bytes: crate::providers::client::DEFAULT_LIST_CAP,
        }
    }
}

/// `[audit]`: the append-only audit log of every request and final outcome.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Default: beside the report, `<report name>.audit.jsonl`. `--audit` wins.
    pub path: Option<PathBuf>,
}

impl AuditSettings {
    /// The audit log's path for a report at `report`, unless one was given.
    pub fn path_for(&self, given: Option<&Path>, report: &Path) -> PathBuf {
        given
            .map(Path::to_owned)
            .or_else(|| self.path.clone())
            .unwrap_or_else(|| report.with_extension("audit.jsonl"))
    }
}

/// `[safety]`: rails for a tool whose every action is hard to undo.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    /// `run` and `enqueue` refuse a file with more removable jobs than this unless
    /// `--allow-removals N` names the exact count. Default 500 (as Entra Connect's
    /// accidental-deletion prevention).
    pub max_removals_per_run: u64,
    /// Accounts never removed: emails, ids, glob patterns (`svc-*@acme.example`), any provider,
    /// without regard to case. Their jobs end `skipped_protected` before any request.
    pub protected: Vec<String>,
    /// The worker holds a provider's lane (stops consuming; messages stay queued) after this many
    /// removals within `window`, until `offboard hold release PROVIDER`. Default 500.
    pub max_removals_per_window: usize,
    /// The rolling window, as `30m`, `1h`, `1d`. Default `1h`.
    pub window: String,
    /// How long a person pushed by an identity system (Okta, SCIM, a person-level message) waits
    /// before their jobs reach the lanes, so that a burst is seen whole. Default `60s`; may be `0s`.
    pub settle: String,
    /// Past this many people within `window` through the automatic doors, every person not yet
    /// sent is quarantined until an operator approves (`offboard quarantine approve --count N`)
    /// or rejects. Default 50.
    pub max_people_per_window: usize,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_removals_per_run: 500,
            protected: Vec::new(),
            max_removals_per_window: 500,
            window: "1h".into(),
            settle: "60s".into(),
            max_people_per_window: 50,
        }
    }
}

impl Safety {
    pub fn window(&self) -> Duration {
        humantime::parse_duration(&self.window).expect("checked at load")
    }

    pub fn settle(&self) -> Duration {
        humantime::parse_duration(&self.settle).expect("checked at load")
    }

    /// The quarantine's limits.
    pub fn quarantine(&self) -> crate::safety::quarantine::Limits {
        crate::safety::quarantine::Limits {
            settle: self.settle(),
            window: self.window(),
            max_people: self.max_people_per_window,
        }
    }

    /// What [`Safety::window`] and the protected patterns rely on, with the key (within
    /// `[safety]`) that is wrong and why.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        match humantime::parse_duration(&self.window) {
            Ok(d) if d.is_zero() => {
                return Err(("window", "must be longer than 0 (e.g. \"1h\")".into()));
            }
            Ok(_) => {}
            Err(e) => {
                return Err((
                    "window",
                    format!(
                        "`{}` is not a duration such as \"30m\" or \"1h\": {e}",
                        self.window
                    ),
                ));
            }
        }
        if let Err(e) = humantime::parse_duration(&self.settle) {
            return Err((
                "settle",
                format!(
                    "`{}` is not a duration such as \"60s\" or \"0s\": {e}",
                    self.settle
                ),
            ));
        }
        if self.max_people_per_window == 0 {
            return Err((
                "max_people_per_window",
                "must be at least 1 (with 0 every person from an identity system would be quarantined)"
                    .into(),
            ));
        }
        if self.protected.iter().any(|p| p.trim().is_empty()) {
            return Err(("protected", "holds an empty pattern".into()));
        }
        crate::safety::Protected::new(&self.protected).map_err(|e| ("protected", e))?;
        if self.max_removals_per_window == 0 {
            return Err((
                "max_removals_per_window",
                "must be at least 1 (a worker with 0 would hold every lane at once)".into(),
            ));
        }
        if self.max_removals_per_run == 0 {
            return Err((
                "max_removals_per_run",
                "must be at least 1 (each run's exact count is approved with --allow-removals N)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `[pacing]`: what the lanes learned of each provider's rate, kept for the next start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    /// The learned rate of every `"auto"` entry, written at the end of a run and every 30 s by
    /// the worker; the next run or worker start begins near it. Empty: nothing is kept.
    /// Default `offboard-pacing.json` in the working directory.
    pub state_file: Option<PathBuf>,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            state_file: Some(PathBuf::from("offboard-pacing.json")),
        }
    }
}

/// `[metrics]`: where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address for the worker (`offboard run` serves only with `--metrics-listen`). Default
    /// 127.0.0.1:9464; in a container, 0.0.0.0:9464.
    pub listen: std::net::SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[amqp]`: where the broker is and what the topology is called. Declared idempotently at start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Amqp {
    /// Broker URL; `OFFBOARD_AMQP_URL` takes precedence. May hold a password: never logged.
    pub url: Option<String>,
    /// Durable direct exchange that routes jobs by provider entry name.
    pub exchange: String,
    /// Each entry's quorum queue is this prefix plus the entry name.
    pub queue_prefix: String,
    /// Where failed and malformed messages go (a fanout exchange and its queue).
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Person-level events, split by the worker into per-provider jobs.
    pub intake_queue: String,
    /// The fanout exchange the intake publishes person events to, bound to `intake_queue`: the
    /// one thing the intake's broker user may write to.
    pub intake_exchange: String,
    /// Fanout exchange for operator commands to every worker (`offboard hold list|release`).
    pub control_exchange: String,
    /// The quarantine's log (a RabbitMQ stream): every person from an automatic door and what
    /// became of them, replayed by whichever worker takes the gate. `<name>.lock` is the gate's
    /// lock (an exclusive queue: one holder at a time).
    pub gate_stream: String,
    /// Where scheduled jobs wait: this queue (the scheduler's, one active consumer) and its
    /// delay tiers `<name>.wait.<k>` (each holding messages 2^k seconds), all quorum queues.
    pub schedule_queue: String,
    /// The schedule's log (a RabbitMQ stream): every job scheduled, cancelled and released,
    /// read by `offboard schedule list` and `cancel` without taking anything out.
    pub schedule_stream: String,
    /// Durable topic exchange every worker publishes each finished job's report line to, with
    /// routing key `<provider>.<outcome>` (`offboard outcomes --follow` prints them).
    pub outcomes_exchange: String,
    /// Deliveries of one message before the broker dead-letters it (a message that keeps killing
    /// the worker ends there instead of looping). Default 5.
    pub delivery_limit: u32,
    /// One active consumer per provider queue, so a provider's rate limit holds across replicas
    /// and a standby takes over when the active one dies. Default true.
    pub single_active_consumer: bool,
    /// Milliseconds: the longest wait between reconnection attempts. Default 30000.
    pub reconnect_max_delay_ms: u64,
    /// The environment variable holding the control secret, shared by workers and operators
    /// (never the intake): set, every control command is signed (HMAC-SHA256) and workers ignore
    /// one that is not. Default `OFFBOARD_CONTROL_SECRET`.
    pub control_secret_env: String,
    /// Or a file holding it (first line).
    pub control_secret_file: Option<PathBuf>,
}

impl Default for Amqp {
    fn default() -> Self {
        Amqp {
            url: None,
            exchange: "offboard.jobs".into(),
            queue_prefix: "offboard.jobs.".into(),
            dead_letter_exchange: "offboard.dead".into(),
            dead_letter_queue: "offboard.dead".into(),
            intake_queue: "offboard.intake".into(),
            intake_exchange: "offboard.events".into(),
            control_exchange: "offboard.control".into(),
            gate_stream: "offboard.gate".into(),
            schedule_queue: "offboard.schedule".into(),
            schedule_stream: "offboard.schedule.log".into(),
            outcomes_exchange: "offboard.outcomes".into(),
            delivery_limit: 5,
            single_active_consumer: true,
            reconnect_max_delay_ms: 30_000,
            control_secret_env: "OFFBOARD_CONTROL_SECRET".into(),
            control_secret_file: None,
        }
    }
}

impl Amqp {
    /// The broker URL: `OFFBOARD_AMQP_URL` (read with the other overrides when the config is
    /// loaded), else `amqp.url`.
    pub fn url(&self) -> Option<String> {
        self.url.clone().filter(|u| !u.is_empty())
    }

    /// The control secret, if one is given: the file's first line, else the environment
    /// variable's value. An error names the file that cannot be read.
    pub fn control_secret(&self) -> Result<Option<secrecy::SecretString>, String> {
        let value = match &self.control_secret_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("amqp.control_secret_file {}: {e}", file.display()))?;
                text.lines().next().unwrap_or_default().trim().to_owned()
            }
            None => std::env::var(&self.control_secret_env).unwrap_or_default(),
        };
        Ok((!value.is_empty()).then(|| value.into()))
    }

    pub fn queue(&self, entry: &str) -> String {
        format!("{}{entry}", self.queue_prefix)
    }
}

/// `[schedule]`: removals due later (`not_before`, `last_day` columns and message fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// The IANA time zone of `last_day` rows that give no `time_zone` (e.g. `Europe/Berlin`).
    /// Unset: such a row is invalid.
    pub time_zone: Option<String>,
    /// Shifts every due time (`"-2h"`, `"+7d"`: calendar days in the row's zone), as Entra's
    /// `offsetInDays`. Unset: none.
    pub offset: Option<String>,
}

impl Schedule {
    /// The policy validation applies; the error names the key.
    pub fn policy(&self) -> Result<crate::job::SchedulePolicy, (String, String)> {
        crate::job::SchedulePolicy::new(self.time_zone.as_deref(), self.offset.as_deref()).map_err(
            |e| {
                let (key, reason) = e.split_once(": ").unwrap_or(("time_zone", &e));
                (key.to_owned(), reason.to_owned())
            },
        )
    }
}

/// `[reconcile]`: sorting every member against a roster (`offboard reconcile`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconcile {
    /// The least share of an organization's members (protected ones aside) the roster must match
    /// to be trusted there; under it the organization's orphans are refused. Default 0.5.
    pub min_match: f64,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile { min_match: 0.5 }
    }
}

/// `[worker]`: the consumer's own settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Worker {
    /// The JSON Lines report (appended to; jobs already in it are not run again). `--report` wins.
    pub report: PathBuf,
    /// Seconds jobs in flight may take to finish after SIGTERM/SIGINT. Default 30.
    pub grace_period_s: u64,
    /// Milliseconds a redelivered job waits, then looks in the report again, before it runs: the
    /// replica that lost it may be finishing a request it had sent. Longer than the providers'
    /// slowest answer keeps every job recorded once across replicas. Default 2000.
    pub redelivery_grace_ms: u64,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            report: PathBuf::from("offboard-worker.report.jsonl"),
            grace_period_s: 30,
            redelivery_grace_ms: 2000,
        }
    }
}

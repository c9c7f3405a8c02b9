//! Configuration: one TOML file, overridable by environment variables, checked in full at startup.
//!
//! Credentials are never in the file: it names the environment variable or file that holds each
//! one, and [`Settings::resolve`] reads them into [`secrecy`] wrappers that never print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::job::ProviderKind;
use crate::providers::auth::TokenBody;
use crate::retry::{OnConflict, Policy};

/// Prefix of the environment variables that override keys: `OFFBOARD__` then the key path joined
/// by `__`, e.g. `OFFBOARD__PROVIDERS__FACTORY__RATE_PER_SECOND=2.5`.
pub const ENV_PREFIX: &str = "OFFBOARD__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("{file}: `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// One table per provider entry; several entries may share a kind.
    pub providers: BTreeMap<String, Entry>,
    /// The broker, for `offboard worker`, `enqueue` and `dlq`.
    #[serde(default)]
    pub amqp: Amqp,
    #[serde(default)]
    pub worker: Worker,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub safety: Safety,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub http: HttpSettings,
}

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

/// What [`Settings::resolve`] read: every entry's credential, and the HTTP settings with the
/// proxy's credentials.
pub struct Resolved {
    pub credentials: BTreeMap<String, Credential>,
    /// Shared by every entry; each entry sets its own timeout.
    pub http: crate::providers::client::HttpSpec,
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
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_removals_per_run: 500,
            protected: Vec::new(),
            max_removals_per_window: 500,
            window: "1h".into(),
        }
    }
}

impl Safety {
    pub fn window(&self) -> Duration {
        humantime::parse_duration(&self.window).expect("checked at load")
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
    /// Fanout exchange for operator commands to every worker (`offboard hold list|release`).
    pub control_exchange: String,
    /// Deliveries of one message before the broker dead-letters it (a message that keeps killing
    /// the worker ends there instead of looping). Default 5.
    pub delivery_limit: u32,
    /// One active consumer per provider queue, so a provider's rate limit holds across replicas
    /// and a standby takes over when the active one dies. Default true.
    pub single_active_consumer: bool,
    /// Milliseconds: the longest wait between reconnection attempts. Default 30000.
    pub reconnect_max_delay_ms: u64,
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
            control_exchange: "offboard.control".into(),
            delivery_limit: 5,
            single_active_consumer: true,
            reconnect_max_delay_ms: 30_000,
        }
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
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            report: PathBuf::from("offboard-worker.report.jsonl"),
            grace_period_s: 30,
        }
    }
}

impl Amqp {
    /// The broker URL: `OFFBOARD_AMQP_URL` (read with the other overrides when the config is
    /// loaded), else `amqp.url`.
    pub fn url(&self) -> Option<String> {
        self.url.clone().filter(|u| !u.is_empty())
    }

    pub fn queue(&self, entry: &str) -> String {
        format!("{}{entry}", self.queue_prefix)
    }
}

/// One provider entry: `[providers.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: ProviderKind,
    /// Default: the provider's public API (see the example config).
    #[serde(default)]
    pub base_url: Option<String>,

    /// Environment variable holding a Bearer token (Factory, Telnyx; Aitronos and Cognee JWTs).
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding a Bearer token (first line; surrounding white space ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding an API key (Aitronos `X-API-Key`, Cognee `X-Api-Key`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Aerospike: the OAuth2 token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub client_id_env: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Aerospike: `form` (OAuth2's encoding, default) or `json` (as Aerospike's docs show).
    #[serde(default)]
    pub token_body: TokenBody,

    /// Requests per second, fractions allowed (0.5 = one every two seconds). Default 5.
    #[serde(default = "d::rate")]
    pub rate_per_second: f64,
    /// Requests that may go at once after a quiet spell. Default 5.
    #[serde(default = "d::burst")]
    pub burst: u32,
    /// Requests outstanding at once. Default 8.
    #[serde(default = "d::in_flight")]
    pub max_in_flight: u32,
    /// Milliseconds before a request is abandoned (and retried as a timeout). Default 10000.
    #[serde(default = "d::timeout_ms")]
    pub timeout_ms: u64,

    /// Attempts for transient failures (5xx, timeouts, connection errors), the first included. Default 5.
    #[serde(default = "d::max_attempts")]
    pub max_attempts: u32,
    /// Milliseconds: first backoff step. Default 250.
    #[serde(default = "d::base_delay_ms")]
    pub base_delay_ms: u64,
    /// Milliseconds: largest backoff step. Default 30000.
    #[serde(default = "d::max_delay_ms")]
    pub max_delay_ms: u64,
    /// Seconds since a job's first attempt past which no retry is scheduled. Default 300.
    #[serde(default = "d::max_elapsed_s")]
    pub max_elapsed_s: u64,
    /// `retry` (default) or `fail` on a 409.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Retries after 409s when `on_conflict = "retry"`. Default 3.
    #[serde(default = "d::conflict_retries")]
    pub max_conflict_retries: u32,
    /// Seconds a job may spend waiting on 429s in all; not counted in `max_attempts`. Default 900.
    #[serde(default = "d::rate_limit_wait_s")]
    pub max_rate_limit_wait_s: u64,
    /// Consecutive 401/403 answers that open the lane's circuit (stop sending). Default 3.
    #[serde(default = "d::circuit_after")]
    pub circuit_after: u32,
    /// The organization (Aitronos `org_*`) or tenant (Cognee UUID) this entry manages: used for
    /// rows that leave `organization` empty and for rows addressed to every provider (`*`).
    #[serde(default)]
    pub organization: Option<String>,
    /// This entry's own blast-radius limit for `run` and `enqueue`, beside `safety.max_removals_per_run`.
    #[serde(default)]
    pub max_removals_per_run: Option<u64>,
}

mod d {
    pub fn rate() -> f64 {
        5.0
    }
    pub fn burst() -> u32 {
        5
    }
    pub fn in_flight() -> u32 {
        8
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn base_delay_ms() -> u64 {
        250
    }
    pub fn max_delay_ms() -> u64 {
        30_000
    }
    pub fn max_elapsed_s() -> u64 {
        300
    }
    pub fn conflict_retries() -> u32 {
        3
    }
    pub fn rate_limit_wait_s() -> u64 {
        900
    }
    pub fn circuit_after() -> u32 {
        3
    }
}

/// Where a credential comes from, checked against the entry's kind.
#[derive(Debug, Clone)]
pub enum CredentialSpec {
    Bearer(Source),
    ApiKey(Source),
    OAuth {
        token_url: String,
        client_id: Source,
        client_secret: Source,
        body: TokenBody,
    },
}

#[derive(Debug, Clone)]
pub enum Source {
    Env(String),
    File(PathBuf),
}

pub use crate::providers::auth::Credential;

impl Settings {
    /// Reads a TOML file and the `OFFBOARD__*` environment overrides, then checks every value.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::figment(
            Figment::from(Toml::file_exact(path)),
            &path.display().to_string(),
        )
    }

    /// The same from TOML text (the embedded sandbox config, tests).
    pub fn from_toml(text: &str, name: &str) -> Result<Settings, ConfigError> {
        Self::figment(Figment::from(Toml::string(text)), name)
    }

    fn figment(f: Figment, file: &str) -> Result<Settings, ConfigError> {
        // OFFBOARD_AMQP_URL, the broker's URL (it may hold a password, so it is kept out of the
        // file), is `amqp.url`, over the file and over OFFBOARD__AMQP__URL.
        let settings: Settings = f
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(
                Env::raw()
                    .only(&["OFFBOARD_AMQP_URL"])
                    .map(|_| "amqp.url".into()),
            )
            .extract()
            .map_err(|e| ConfigError::Parse {
                file: file.to_owned(),
                source: Box::new(e),
            })?;
        settings.check(file)?;
        Ok(settings)
    }

    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            reason,
        };
        if let Some(proxy) = &self.http.proxy {
            check_url(proxy).map_err(|r| invalid("http.proxy".into(), r))?;
            if url::Url::parse(proxy)
                .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
            {
                return Err(invalid(
                    "http.proxy".into(),
                    "must not hold credentials: use proxy_username_env and proxy_password_env or proxy_password_file".into(),
                ));
            }
        } else if self.http.proxy_username_env.is_some()
            || self.http.proxy_password_env.is_some()
            || self.http.proxy_password_file.is_some()
        {
            return Err(invalid(
                "http.proxy".into(),
                "proxy credentials are set but no proxy is".into(),
            ));
        }
        if self.http.proxy_password_env.is_some() && self.http.proxy_password_file.is_some() {
            return Err(invalid(
                "http.proxy_password_file".into(),
                "set proxy_password_env or proxy_password_file, not both".into(),
            ));
        }
        if self.http.max_list_bytes < 64 * 1024 {
            return Err(invalid(
                "http.max_list_bytes".into(),
                format!("must be at least 65536, got {}", self.http.max_list_bytes),
            ));
        }
        if self.providers.is_empty() {
            return Err(invalid(
                "providers".into(),
                "no provider entry is configured".into(),
            ));
        }
        for (name, e) in &self.providers {
            let key = |k: &str| format!("providers.{name}.{k}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    format!("providers.{name}"),
                    "entry names use lowercase letters, digits, `_` and `-` (they appear in CSV rows, metrics and queue names)".into(),
                ));
            }
            if !(e.rate_per_second.is_finite() && e.rate_per_second > 0.0) {
                return Err(invalid(
                    key("rate_per_second"),
                    format!("must be a number above 0, got {}", e.rate_per_second),
                ));
            }
            let positive = [
                ("burst", e.burst as u64),
                ("max_in_flight", e.max_in_flight as u64),
                ("timeout_ms", e.timeout_ms),
                ("max_attempts", e.max_attempts as u64),
                ("max_delay_ms", e.max_delay_ms),
                ("circuit_after", e.circuit_after as u64),
            ];
            for (k, v) in positive {
                if v == 0 {
                    return Err(invalid(key(k), "must be at least 1".into()));
                }
            }
            if e.base_delay_ms > e.max_delay_ms {
                return Err(invalid(
                    key("base_delay_ms"),
                    format!("is above max_delay_ms ({})", e.max_delay_ms),
                ));
            }
            let base = e.base_url();
            check_url(&base).map_err(|r| invalid(key("base_url"), r))?;
            let spec = e.credential_spec().map_err(|(k, r)| invalid(key(k), r))?;
            if let Some(org) = &e.organization {
                let ok = match e.kind {
                    ProviderKind::Aitronos => {
                        crate::job::PrefixedId::parse("organization", "org_", org).is_ok()
                    }
                    ProviderKind::Cognee => crate::job::Uuid::parse("organization", org).is_ok(),
                    _ => false,
                };
                if !ok {
                    return Err(invalid(
                        key("organization"),
                        format!(
                            "`{org}` is not an organization {} manages (an org_* id for aitronos, a tenant UUID for cognee; the key picks it for the others)",
                            e.kind
                        ),
                    ));
                }
            }
            if let CredentialSpec::OAuth { token_url, .. } = &spec {
                check_url(token_url).map_err(|r| invalid(key("token_url"), r))?;
            }
        }
        Ok(())
    }

    /// The blast-radius limits, for [`crate::safety::check`] (entries in lane order).
    pub fn limits(&self) -> crate::safety::Limits {
        crate::safety::Limits {
            per_run: self.safety.max_removals_per_run,
            per_entry: self
                .providers
                .iter()
                .map(|(name, e)| (name.clone(), e.max_removals_per_run))
                .collect(),
        }
    }

    /// The directory validation looks entries up in, protecting `safety.protected`.
    pub fn directory(&self) -> crate::job::Directory {
        let protected =
            crate::safety::Protected::new(&self.safety.protected).expect("checked at load");
        let mut d =
            crate::job::Directory::new(self.providers.iter().map(|(n, e)| (n.as_str(), e.kind)))
                .protecting(protected);
        for (name, e) in &self.providers {
            if let Some(org) = &e.organization {
                d = d.managing(name, org);
            }
        }
        d
    }

    /// Reads every entry's credential through `env` (the process environment, or the sandbox's).
    pub fn resolve(
        &self,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, e) in &self.providers {
            let spec = e.credential_spec().map_err(|(k, r)| ConfigError::Invalid {
                file: file.to_owned(),
                key: format!("providers.{name}.{k}"),
                reason: r,
            })?;
            let read = |key: &str, s: &Source| {
                read_source(s, env).map_err(|reason| ConfigError::Invalid {
                    file: file.to_owned(),
                    key: format!("providers.{name}.{key}"),
                    reason,
                })
            };
            let cred = match spec {
                CredentialSpec::Bearer(s) => Credential::Bearer(read(source_key("token", &s), &s)?),
                CredentialSpec::ApiKey(s) => {
                    Credential::ApiKey(read(source_key("api_key", &s), &s)?)
                }
                CredentialSpec::OAuth {
                    token_url,
                    client_id,
                    client_secret,
                    body,
                } => Credential::OAuth {
                    token_url,
                    client_id: read("client_id_env", &client_id)?,
                    client_secret: read("client_secret_env", &client_secret)?,
                    body,
                },
            };
            out.insert(name.clone(), cred);
        }
        Ok(Resolved {
            credentials: out,
            http: self.http_spec(file, env)?,
        })
    }

    /// The HTTP settings every entry's client starts from, with the proxy's credentials read.
    fn http_spec(
        &self,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<crate::providers::client::HttpSpec, ConfigError> {
        use crate::providers::client::{HttpSpec, ProxySpec};
        let h = &self.http;
        let invalid = |key: &str, reason| ConfigError::Invalid {
            file: file.to_owned(),
            key: format!("http.{key}"),
            reason,
        };
        let proxy = match &h.proxy {
            None => None,
            Some(url) => {
                let username = match &h.proxy_username_env {
                    Some(var) => Some(
                        read_source(&Source::Env(var.clone()), env)
                            .map_err(|r| invalid("proxy_username_env", r))?
                            .expose_secret()
                            .to_owned(),
                    ),
                    None => None,
                };
                let password = match (&h.proxy_password_env, &h.proxy_password_file) {
                    (Some(var), _) => Some(
                        read_source(&Source::Env(var.clone()), env)
                            .map_err(|r| invalid("proxy_password_env", r))?,
                    ),
                    (None, Some(path)) => Some(
                        read_source(&Source::File(path.clone()), env)
                            .map_err(|r| invalid("proxy_password_file", r))?,
                    ),
                    (None, None) => None,
                };
                Some(ProxySpec {
                    url: url.clone(),
                    username,
                    password,
                })
            }
        };
        let mut spec = HttpSpec::new(Duration::from_millis(d::timeout_ms()));
        spec.proxy = proxy;
        spec.ca_file = h.ca_file.clone();
        spec.max_list_bytes = h.max_list_bytes;
        Ok(spec)
    }
}

fn source_key(stem: &str, s: &Source) -> &'static str {
    match (stem, s) {
        ("token", Source::Env(_)) => "token_env",
        ("token", Source::File(_)) => "token_file",
        (_, Source::Env(_)) => "api_key_env",
        (_, Source::File(_)) => "api_key_file",
    }
}

fn read_source(s: &Source, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretString, String> {
    let value = match s {
        Source::Env(var) => {
            env(var).ok_or_else(|| format!("environment variable `{var}` is not set"))?
        }
        Source::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credential file `{}`: {e}", path.display()))?,
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(match s {
            Source::Env(var) => format!("environment variable `{var}` is empty"),
            Source::File(path) => format!("credential file `{}` is empty", path.display()),
        });
    }
    Ok(SecretString::from(value.to_owned()))
}

fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
            if u.query().is_some() || u.fragment().is_some() {
                Err(format!("`{url}` must not carry a query or fragment"))
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(format!("`{url}` is not an http(s) URL")),
        Err(e) => Err(format!("`{url}` is not a URL: {e}")),
    }
}

impl Entry {
    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| crate::providers::default_base_url(self.kind).to_owned())
    }

    /// Which credential keys this kind takes, and exactly one way of giving it.
    fn credential_spec(&self) -> Result<CredentialSpec, (&'static str, String)> {
        let kind = self.kind;
        let token = one("token", self.token_env.as_ref(), self.token_file.as_ref())?;
        let api_key = one(
            "api_key",
            self.api_key_env.as_ref(),
            self.api_key_file.as_ref(),
        )?;
        let oauth_keys = [
            ("token_url", self.token_url.is_some()),
            ("client_id_env", self.client_id_env.is_some()),
            ("client_secret_env", self.client_secret_env.is_some()),
        ];
        let takes_api_key = matches!(kind, ProviderKind::Aitronos | ProviderKind::Cognee);
        if kind != ProviderKind::Aerospike {
            if let Some((k, _)) = oauth_keys.iter().find(|(_, set)| *set) {
                return Err((k, format!("{kind} does not use OAuth client credentials")));
            }
        }
        match kind {
            ProviderKind::Aerospike => {
                if token.is_some() || api_key.is_some() {
                    return Err((
                        if token.is_some() { "token_env" } else { "api_key_env" },
                        "aerospike authenticates with token_url, client_id_env and client_secret_env".into(),
                    ));
                }
                let missing = |k: &'static str| (k, format!("{k} is required for aerospike"));
                Ok(CredentialSpec::OAuth {
                    token_url: self.token_url.clone().ok_or_else(|| missing("token_url"))?,
                    client_id: Source::Env(
                        self.client_id_env
                            .clone()
                            .ok_or_else(|| missing("client_id_env"))?,
                    ),
                    client_secret: Source::Env(
                        self.client_secret_env
                            .clone()
                            .ok_or_else(|| missing("client_secret_env"))?,
                    ),
                    body: self.token_body,
                })
            }
            _ => match (token, api_key) {
                (Some(_), Some(_)) => Err((
                    "api_key_env",
                    "give either a token or an API key, not both".into(),
                )),
                (Some(t), None) => Ok(CredentialSpec::Bearer(t)),
                (None, Some(k)) if takes_api_key => Ok(CredentialSpec::ApiKey(k)),
                (None, Some(_)) => Err((
                    "api_key_env",
                    format!(
                        "{kind} takes a Bearer token (token_env or token_file), not an API key"
                    ),
                )),
                (None, None) if takes_api_key => Err((
                    "api_key_env",
                    "no credential: set api_key_env, api_key_file, token_env or token_file".into(),
                )),
                (None, None) => Err((
                    "token_env",
                    "no credential: set token_env or token_file".into(),
                )),
            },
        }
    }

    /// What the provider adapter needs of this entry: kind, base URL, credential, and the shared
    /// HTTP settings with this entry's timeout. Providers never read the config.
    pub fn provider_spec(
        &self,
        credential: Credential,
        http: &crate::providers::HttpSpec,
    ) -> crate::providers::ProviderSpec {
        let mut http = http.clone();
        http.timeout = Duration::from_millis(self.timeout_ms);
        crate::providers::ProviderSpec {
            kind: self.kind,
            base_url: self.base_url(),
            credential,
            http,
        }
    }

    pub fn policy(&self) -> Policy {
        Policy {
            max_attempts: self.max_attempts,
            base_delay: Duration::from_millis(self.base_delay_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
            max_elapsed: Duration::from_secs(self.max_elapsed_s),
            on_conflict: self.on_conflict,
            max_conflict_retries: self.max_conflict_retries,
            max_rate_limit_wait: Duration::from_secs(self.max_rate_limit_wait_s),
        }
    }
}

fn one(
    stem: &'static str,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<Source>, (&'static str, String)> {
    match (env, file) {
        (Some(_), Some(_)) => Err((
            if stem == "token" {
                "token_file"
            } else {
                "api_key_file"
            },
            format!("set {stem}_env or {stem}_file, not both"),
        )),
        (Some(v), None) => Ok(Some(Source::Env(v.clone()))),
        (None, Some(p)) => Ok(Some(Source::File(p.clone()))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    /// Loads inside figment's Jail, which serializes the tests that touch the environment.
    fn load(text: &str) -> Result<Settings, String> {
        let mut out = None;
        figment::Jail::expect_with(|_| {
            out = Some(Settings::from_toml(text, "test.toml").map_err(|e| e.to_string()));
            Ok(())
        });
        out.expect("ran")
    }

    const GOOD: &str = r#"
        [providers.factory]
        kind = "factory"
        token_env = "F_TOKEN"
        rate_per_second = 0.5

        [providers.telnyx-eu]
        kind = "telnyx"
        base_url = "https://api.telnyx.eu"
        token_file = "/run/secrets/telnyx"

        [providers.aerospike]
        kind = "aerospike"
        token_url = "https://auth.control.aerospike.cloud/oauth/token"
        client_id_env = "A_ID"
        client_secret_env = "A_SECRET"
        token_body = "json"
    "#;

    #[test]
    fn a_good_file_loads_with_defaults() {
        let s = load(GOOD).unwrap();
        let f = &s.providers["factory"];
        assert_eq!(f.rate_per_second, 0.5);
        assert_eq!(f.burst, 5);
        assert_eq!(f.base_url(), "https://api.factory.ai");
        assert_eq!(s.providers["telnyx-eu"].base_url(), "https://api.telnyx.eu");
        assert_eq!(s.providers["aerospike"].token_body, TokenBody::Json);
    }

    #[test]
    fn unknown_keys_kinds_and_bad_values_name_file_and_key() {
        let e =
            load("[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nrate = 3\n").unwrap_err();
        assert!(e.contains("test.toml") && e.contains("rate"), "{e}");
        let e = load("[providers.f]\nkind = \"slack\"\ntoken_env = \"X\"\n").unwrap_err();
        assert!(e.contains("slack"), "{e}");
        let e = load("[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nrate_per_second = 0\n")
            .unwrap_err();
        assert!(
            e.contains("providers.f.rate_per_second") && e.contains("above 0"),
            "{e}"
        );
        let e =
            load("[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nburst = -1\n").unwrap_err();
        assert!(e.contains("burst"), "{e}");
        let e =
            load("[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nbase_url = \"ftp://x\"\n")
                .unwrap_err();
        assert!(e.contains("providers.f.base_url"), "{e}");
    }

    #[test]
    fn credentials_must_fit_the_kind() {
        let e = load("[providers.f]\nkind = \"factory\"\n").unwrap_err();
        assert!(
            e.contains("providers.f.token_env") && e.contains("no credential"),
            "{e}"
        );
        let e = load("[providers.f]\nkind = \"factory\"\napi_key_env = \"K\"\n").unwrap_err();
        assert!(e.contains("Bearer"), "{e}");
        let e = load("[providers.a]\nkind = \"aerospike\"\ntoken_url = \"https://x/t\"\nclient_id_env = \"I\"\n").unwrap_err();
        assert!(e.contains("client_secret_env"), "{e}");
        let e = load("[providers.c]\nkind = \"cognee\"\napi_key_env = \"K\"\ntoken_env = \"T\"\n")
            .unwrap_err();
        assert!(e.contains("not both"), "{e}");
        assert!(load("[providers.c]\nkind = \"cognee\"\napi_key_env = \"K\"\n").is_ok());
    }

    #[test]
    fn an_entry_may_name_the_organization_it_manages_where_rows_name_one() {
        assert!(load("[providers.a]\nkind = \"aitronos\"\napi_key_env = \"K\"\norganization = \"org_acme\"\n").is_ok());
        let e = load(
            "[providers.a]\nkind = \"aitronos\"\napi_key_env = \"K\"\norganization = \"acme\"\n",
        )
        .unwrap_err();
        assert!(e.contains("providers.a.organization"), "{e}");
        let e = load(
            "[providers.f]\nkind = \"factory\"\ntoken_env = \"K\"\norganization = \"org_acme\"\n",
        )
        .unwrap_err();
        assert!(e.contains("the key picks it"), "{e}");
    }

    #[test]
    fn the_shipped_configs_load() {
        for file in ["offboard.example.toml", "sandbox.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(file);
            let mut out = None;
            figment::Jail::expect_with(|_| {
                out = Some(Settings::load(&path).map_err(|e| e.to_string()));
                Ok(())
            });
            let s = out.unwrap().unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(s.providers.len(), 5, "{file}");
        }
    }

    #[test]
    fn a_missing_variable_or_file_is_named() {
        let s = load(GOOD).unwrap();
        let env =
            |k: &str| (k == "F_TOKEN" || k == "A_ID" || k == "A_SECRET").then(|| "v".to_owned());
        let e = s.resolve("test.toml", &env).err().unwrap().to_string();
        assert!(
            e.contains("providers.telnyx-eu.token_file") && e.contains("/run/secrets/telnyx"),
            "{e}"
        );
        let only_file =
            load("[providers.f]\nkind = \"factory\"\ntoken_env = \"F_TOKEN\"\n").unwrap();
        let e = only_file
            .resolve("test.toml", &|_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`F_TOKEN` is not set"), "{e}");
    }

    #[test]
    fn http_keys_are_checked_and_proxy_credentials_read_from_the_environment() {
        let base = "[providers.f]\nkind = \"factory\"\ntoken_env = \"F_TOKEN\"\n";
        let e = load(&format!(
            "[http]\nproxy = \"http://u:p@proxy:3128\"\n{base}"
        ))
        .unwrap_err();
        assert!(e.contains("http.proxy") && e.contains("credentials"), "{e}");
        let e = load(&format!("[http]\nproxy_username_env = \"U\"\n{base}")).unwrap_err();
        assert!(e.contains("no proxy"), "{e}");
        let e = load(&format!("[http]\nmax_list_bytes = 10\n{base}")).unwrap_err();
        assert!(e.contains("http.max_list_bytes"), "{e}");
        let s = load(&format!(
            "[http]\nproxy = \"http://proxy:3128\"\nproxy_username_env = \"U\"\nproxy_password_env = \"P\"\nca_file = \"/etc/ca.pem\"\n{base}"
        ))
        .unwrap();
        let env = |k: &str| match k {
            "F_TOKEN" => Some("t".to_owned()),
            "U" => Some("me".to_owned()),
            _ => None,
        };
        let e = s.resolve("test.toml", &env).err().unwrap().to_string();
        assert!(
            e.contains("http.proxy_password_env") && e.contains("`P`"),
            "{e}"
        );
        let env = |k: &str| Some(format!("{k}-value"));
        let r = s.resolve("test.toml", &env).unwrap();
        let proxy = r.http.proxy.unwrap();
        assert_eq!(proxy.url, "http://proxy:3128");
        assert_eq!(proxy.username.as_deref(), Some("U-value"));
        assert_eq!(proxy.password.unwrap().expose_secret(), "P-value");
        assert_eq!(
            r.http.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
    }

    #[test]
    fn environment_overrides_any_key() {
        // figment's Jail isolates the process environment for the closure.
        figment::Jail::expect_with(|jail| {
            jail.set_env("OFFBOARD__PROVIDERS__FACTORY__RATE_PER_SECOND", "12.5");
            jail.set_env("OFFBOARD__PROVIDERS__FACTORY__ON_CONFLICT", "fail");
            let s = Settings::from_toml(GOOD, "test.toml").map_err(|e| e.to_string())?;
            assert_eq!(s.providers["factory"].rate_per_second, 12.5);
            assert_eq!(s.providers["factory"].on_conflict, OnConflict::Fail);
            Ok(())
        });
    }

    #[test]
    fn the_broker_url_comes_from_offboard_amqp_url_over_the_file() {
        let text = format!("[amqp]\nurl = \"amqp://file:5672/%2f\"\n{GOOD}");
        figment::Jail::expect_with(|jail| {
            let s = Settings::from_toml(&text, "test.toml").map_err(|e| e.to_string())?;
            assert_eq!(s.amqp.url().as_deref(), Some("amqp://file:5672/%2f"));
            jail.set_env("OFFBOARD_AMQP_URL", "amqp://env:5672/%2f");
            let s = Settings::from_toml(&text, "test.toml").map_err(|e| e.to_string())?;
            assert_eq!(s.amqp.url().as_deref(), Some("amqp://env:5672/%2f"));
            Ok(())
        });
    }
}

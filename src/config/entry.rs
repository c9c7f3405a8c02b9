//! One provider entry, `[providers.NAME]`: its kind, base URL, credential, pacing and retries,
//! and the specs it produces for the provider and the lane.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::ProviderKind;
use crate::providers::auth::TokenBody;
use crate::retry::{OnConflict, Policy};

use super::Credential;

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

    /// Requests per second, fractions allowed (0.5 = one every two seconds): a ceiling the lane
    /// starts at and never passes, slowing down under it when throttled. `"auto"`: the lane finds
    /// the provider's rate from its answers. Default 5.
    #[serde(default = "d::rate")]
    pub rate_per_second: Rate,
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

/// `rate_per_second`: a number, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RateText", into = "RateText")]
pub enum Rate {
    Fixed(f64),
    Auto,
}

/// How `rate_per_second` is written: a number, or text (`"auto"`, or a number from the
/// environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RateText {
    Number(f64),
    Text(String),
}

impl TryFrom<RateText> for Rate {
    type Error = String;
    fn try_from(t: RateText) -> Result<Rate, String> {
        match t {
            RateText::Number(n) => Ok(Rate::Fixed(n)),
            RateText::Text(s) if s.trim().eq_ignore_ascii_case("auto") => Ok(Rate::Auto),
            RateText::Text(s) => s
                .trim()
                .parse()
                .map(Rate::Fixed)
                .map_err(|_| format!("`{s}` is neither a number nor \"auto\"")),
        }
    }
}

impl From<Rate> for RateText {
    fn from(r: Rate) -> RateText {
        match r {
            Rate::Fixed(n) => RateText::Number(n),
            Rate::Auto => RateText::Text("auto".into()),
        }
    }
}

pub(super) mod d {
    pub fn rate() -> super::Rate {
        super::Rate::Fixed(5.0)
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

impl Entry {
    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| crate::providers::default_base_url(self.kind).to_owned())
    }

    /// Which credential keys this kind takes, and exactly one way of giving it.
    pub(super) fn credential_spec(&self) -> Result<CredentialSpec, (&'static str, String)> {
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

pub(super) fn one(
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

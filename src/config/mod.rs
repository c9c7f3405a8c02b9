//! Configuration: one TOML file, overridable by environment variables, checked in full at startup.
//!
//! Credentials are never in the file: it names the environment variable or file that holds each
//! one, and [`Settings::resolve`] reads them into [`secrecy`] wrappers that never print.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::job::ProviderKind;

mod entry;
mod intake;
mod sections;

pub use entry::{CredentialSpec, Entry, Rate, Source};
pub use intake::{
    Intake, IntakeMode, IntakeSecrets, IntakeTarget, OKTA_EVENT_TYPES, OktaHook, Scim,
};
pub use sections::{
    Amqp, AuditSettings, HttpSettings, Metrics, Pacing, Reconcile, Safety, Schedule, Worker,
};

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
    #[serde(default)]
    pub intake: Intake,
    #[serde(default)]
    pub pacing: Pacing,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub reconcile: Reconcile,
}

/// What [`Settings::resolve`] read: every entry's credential, and the HTTP settings with the
/// proxy's credentials.
pub struct Resolved {
    pub credentials: BTreeMap<String, Credential>,
    /// Shared by every entry; each entry sets its own timeout.
    pub http: crate::providers::client::HttpSpec,
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
        self.safety
            .check()
            .map_err(|(key, reason)| invalid(format!("safety.{key}"), reason))?;
        if !(0.0..=1.0).contains(&self.reconcile.min_match) {
            return Err(invalid(
                "reconcile.min_match".into(),
                format!("must be between 0 and 1, got {}", self.reconcile.min_match),
            ));
        }
        self.schedule
            .policy()
            .map_err(|(key, reason)| invalid(format!("schedule.{key}"), reason))?;
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
            if let Rate::Fixed(r) = e.rate_per_second {
                if !(r.is_finite() && r > 0.0) {
                    return Err(invalid(
                        key("rate_per_second"),
                        format!("must be a number above 0 or \"auto\", got {r}"),
                    ));
                }
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
        let entries: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        self.intake
            .check(&entries)
            .map_err(|(key, reason)| invalid(key, reason))?;
        Ok(())
    }

    /// Reads the intake's secrets (Okta's shared secret, the SCIM token) through `env`. No
    /// provider credential is read: the intake needs none.
    pub fn intake_secrets(
        &self,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IntakeSecrets, ConfigError> {
        let (okta, scim) = self.intake.sources();
        let read = |key: &str, s: Option<Source>| {
            s.map(|s| {
                read_source(&s, env).map_err(|reason| ConfigError::Invalid {
                    file: file.to_owned(),
                    key: format!("intake.{key}"),
                    reason,
                })
            })
            .transpose()
        };
        Ok(IntakeSecrets {
            okta: read("okta.secret_env", okta)?,
            scim: read("scim.token_env", scim)?,
        })
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
                .protecting(protected)
                .scheduling(self.schedule.policy().expect("checked at load"));
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
        let mut spec = HttpSpec::new(Duration::from_millis(entry::d::timeout_ms()));
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

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;
    use crate::providers::auth::TokenBody;
    use crate::retry::OnConflict;

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
        assert_eq!(f.rate_per_second, Rate::Fixed(0.5));
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
        let s = load(
            "[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nrate_per_second = \"auto\"\n",
        )
        .unwrap();
        assert_eq!(s.providers["f"].rate_per_second, Rate::Auto);
        let e = load(
            "[providers.f]\nkind = \"factory\"\ntoken_env = \"X\"\nrate_per_second = \"fast\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("rate_per_second") && e.contains("`fast` is neither a number nor \"auto\""),
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
    fn safety_is_checked_at_load_naming_the_key() {
        let with = |safety: &str| load(&format!("{GOOD}\n[safety]\n{safety}\n"));
        for (safety, key, words) in [
            ("window = \"0s\"", "safety.window", "longer than 0"),
            (
                "window = \"soon\"",
                "safety.window",
                "`soon` is not a duration",
            ),
            (
                "protected = [\"[\"]",
                "safety.protected",
                "`[` is not a pattern",
            ),
            ("protected = [\" \"]", "safety.protected", "empty"),
            (
                "max_removals_per_window = 0",
                "safety.max_removals_per_window",
                "at least 1",
            ),
            (
                "max_removals_per_run = 0",
                "safety.max_removals_per_run",
                "at least 1",
            ),
            (
                "settle = \"a minute\"",
                "safety.settle",
                "`a minute` is not a duration",
            ),
            (
                "max_people_per_window = 0",
                "safety.max_people_per_window",
                "at least 1",
            ),
        ] {
            let e = with(safety).unwrap_err();
            assert!(
                e.contains("test.toml") && e.contains(key) && e.contains(words),
                "{safety}: {e}"
            );
        }
        let s = with("window = \"30m\"\nprotected = [\"svc-*@acme.example\"]").unwrap();
        assert_eq!(s.safety.window(), std::time::Duration::from_secs(1800));
        assert_eq!(
            s.safety.settle(),
            std::time::Duration::from_secs(60),
            "the default"
        );
        let s = with("settle = \"0s\"").unwrap();
        assert!(s.safety.settle().is_zero(), "0 is allowed");
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
            assert_eq!(s.providers["factory"].rate_per_second, Rate::Fixed(12.5));
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

//! `[intake]`: the HTTP door identity systems push deprovisioning to (Okta Event Hooks, SCIM 2.0).
//! It holds no provider credential: only the secrets its senders present, and the broker's URL.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::entry::Source;

/// `[intake]`. Set `listen` to serve it from `offboard worker` too; `offboard intake` always does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intake {
    /// Where to listen. Default 127.0.0.1:8080 for `offboard intake`; unset, `offboard worker`
    /// serves no intake.
    pub listen: Option<SocketAddr>,
    /// A PEM certificate chain and its key, to terminate TLS here (rustls). Unset: plain HTTP,
    /// for a reverse proxy that terminates TLS in front.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Bytes: the largest request body read. Default 1048576 (1 MiB; Okta batches hundreds of
    /// events in one POST).
    pub max_body_bytes: usize,
    /// Milliseconds the broker has to confirm a publish before the sender is answered 503 (and
    /// retries). Default 2000, under Okta's 3 s.
    pub publish_timeout_ms: u64,
    /// Milliseconds a request may take from its headers to its answer, body included; past it
    /// the answer is 408 and the sender retries. Default 10000.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 with `Retry-After: 1` at once. Default 64.
    pub max_concurrent_requests: usize,
    /// What every person pushed here is removed from. Default: every provider entry, by email.
    pub targets: Vec<IntakeTarget>,
    /// `live`, or `shadow` for a new connection: people are counted, quarantined past the
    /// threshold and recorded with the jobs they would become (`not_attempted`, reason
    /// `shadow`), and nothing is sent. Default live.
    pub mode: IntakeMode,
    /// Okta Event Hooks at `/hooks/okta`; unset, that path answers 404.
    pub okta: Option<OktaHook>,
    /// SCIM 2.0 at `/scim/v2`; unset, that path answers 404.
    pub scim: Option<Scim>,
}

impl Default for Intake {
    fn default() -> Self {
        Intake {
            listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_body_bytes: 1 << 20,
            publish_timeout_ms: 2000,
            request_timeout_ms: 10_000,
            max_concurrent_requests: 64,
            mode: IntakeMode::Live,
            targets: vec![IntakeTarget {
                provider: crate::job::EVERY_PROVIDER.into(),
                organization: None,
            }],
            okta: None,
            scim: None,
        }
    }
}

/// `[intake] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntakeMode {
    #[default]
    Live,
    Shadow,
}

/// One provider entry (or `*`, every entry) a pushed person is removed from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeTarget {
    pub provider: String,
    /// For Aitronos and Cognee entries without a configured organization.
    #[serde(default)]
    pub organization: Option<String>,
}

/// `[intake.okta]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OktaHook {
    /// The header Okta sends the secret in (the Event Hook's "Authentication field").
    pub header: String,
    /// The secret (Okta's "Authentication secret"), from the environment or a file.
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Event types that remove the person. Default `user.lifecycle.deactivate` and
    /// `user.lifecycle.delete.initiated`; `user.lifecycle.suspend` and
    /// `application.user_membership.remove` may be added. Others are acknowledged and counted.
    pub event_types: Vec<String>,
}

impl Default for OktaHook {
    fn default() -> Self {
        OktaHook {
            header: "Authorization".into(),
            secret_env: None,
            secret_file: None,
            event_types: vec![
                "user.lifecycle.deactivate".into(),
                "user.lifecycle.delete.initiated".into(),
            ],
        }
    }
}

/// `[intake.scim]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scim {
    /// The Bearer token the identity system presents (Entra's "Secret Token").
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The SQLite database of the users SCIM handed out (created if missing).
    pub database: PathBuf,
}

impl Default for Scim {
    fn default() -> Self {
        Scim {
            token_env: None,
            token_file: None,
            database: PathBuf::from("offboard-scim.sqlite"),
        }
    }
}

/// The event types Okta may send that this door knows how to act on.
pub const OKTA_EVENT_TYPES: [&str; 4] = [
    "user.lifecycle.deactivate",
    "user.lifecycle.delete.initiated",
    "user.lifecycle.suspend",
    "application.user_membership.remove",
];

/// The intake's secrets, read.
pub struct IntakeSecrets {
    pub okta: Option<SecretString>,
    pub scim: Option<SecretString>,
}

impl Intake {
    /// Checks what can be checked without reading secrets; `(key, reason)` on error.
    pub(super) fn check(&self, entries: &[&str]) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((format!("intake.{k}"), r));
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad(
                "tls_key_file",
                "set tls_cert_file and tls_key_file together".into(),
            );
        }
        if self.max_body_bytes < 1024 {
            return bad(
                "max_body_bytes",
                format!("must be at least 1024, got {}", self.max_body_bytes),
            );
        }
        if self.publish_timeout_ms == 0 {
            return bad("publish_timeout_ms", "must be at least 1".into());
        }
        if self.targets.is_empty() {
            return bad(
                "targets",
                "no target: a pushed person would be removed from nothing".into(),
            );
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.provider != crate::job::EVERY_PROVIDER && !entries.contains(&t.provider.as_str()) {
                return bad(
                    &format!("targets[{i}].provider"),
                    format!(
                        "`{}` is not a provider entry (configured: {}, or `*` for all)",
                        t.provider,
                        entries.join(", ")
                    ),
                );
            }
        }
        if let Some(okta) = &self.okta {
            if okta.header.trim().is_empty()
                || http::HeaderName::from_bytes(okta.header.as_bytes()).is_err()
            {
                return bad(
                    "okta.header",
                    format!("`{}` is not an HTTP header name", okta.header),
                );
            }
            super::entry::one(
                "secret",
                okta.secret_env.as_ref(),
                okta.secret_file.as_ref(),
            )
            .map_err(|(_, r)| ("intake.okta.secret_file".to_owned(), r))?
            .ok_or_else(|| {
                (
                    "intake.okta.secret_env".to_owned(),
                    "Okta's shared secret is required: set secret_env or secret_file".into(),
                )
            })?;
            if okta.event_types.is_empty() {
                return bad("okta.event_types", "no event type would act".into());
            }
            for t in &okta.event_types {
                if !OKTA_EVENT_TYPES.contains(&t.as_str()) {
                    return bad(
                        "okta.event_types",
                        format!(
                            "`{t}` is not an event type that offboards (known: {})",
                            OKTA_EVENT_TYPES.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(scim) = &self.scim {
            super::entry::one("token", scim.token_env.as_ref(), scim.token_file.as_ref())
                .map_err(|(_, r)| ("intake.scim.token_file".to_owned(), r))?
                .ok_or_else(|| {
                    (
                        "intake.scim.token_env".to_owned(),
                        "the SCIM Bearer token is required: set token_env or token_file".into(),
                    )
                })?;
        }
        Ok(())
    }

    /// The secrets' sources, checked by [`Intake::check`].
    pub(super) fn sources(&self) -> (Option<Source>, Option<Source>) {
        let okta = self.okta.as_ref().and_then(|o| {
            super::entry::one("secret", o.secret_env.as_ref(), o.secret_file.as_ref())
                .ok()
                .flatten()
        });
        let scim = self.scim.as_ref().and_then(|s| {
            super::entry::one("token", s.token_env.as_ref(), s.token_file.as_ref())
                .ok()
                .flatten()
        });
        (okta, scim)
    }
}

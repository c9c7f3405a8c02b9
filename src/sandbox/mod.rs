//! An in-process simulation of the five provider APIs on loopback, for the demo (`offboard run
//! --sandbox`) and for end-to-end tests.
//!
//! One axum server per provider kind, each on its own `127.0.0.1` port with its own state, answering
//! exactly as the provider's API page describes: the removal call, its error bodies, its rate-limit
//! headers and, for Aerospike, the OAuth2 token endpoint. The pages' OpenAPI documents are kept in
//! `tests/fixtures/openapi/`, and `openapi_tests` checks the answers against them.
//!
//! Every server can rate-limit (a GCRA per server, answering 429 with the provider's headers) and
//! inject deterministic faults (503, 429, 409) on the first removal attempt of chosen targets.
//!
//! Members are indexed by user key, by lowercased email and in listing order (email, then user), so
//! that a removal or an exact lookup costs the same in an organization of 20,000 members as in one
//! of five; only substring searches and whole lists walk the members.

mod aerospike;
mod aitronos;
mod cognee;
mod factory;
#[cfg(test)]
mod openapi_tests;
mod options;
mod pace;
mod seed;
mod server;
mod state;
mod telnyx;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::job::ProviderKind;

use options::Fault;
pub use options::{AitronosSearchShape, Faults, Outage, SandboxOptions};
use pace::{Gcra, Window, ceil_secs};
pub use seed::Seed;
use server::{Creds, Server};
pub use state::SANDBOX_OWNER_EMAIL;
use state::{Member, Org, Removal, seeded};
use wire::{
    bearer, created_at, fnv1a, form_pairs, has_organizations, header, key, name_words, now_unix,
    org_key, rfc3339,
};

/// One request that reached a removal or list/search endpoint after auth, with the status it was
/// answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub kind: ProviderKind,
    pub at: Instant,
    /// `"remove"` or `"lookup"` (a list/search call).
    pub operation: &'static str,
    pub organization: Option<String>,
    /// The user removed; for a lookup the searched text, `""` for a full list.
    pub user: String,
    pub status: u16,
}

/// The running sandbox: five servers on loopback. Shuts down on [`Sandbox::shutdown`] or on drop.
pub struct Sandbox {
    ports: HashMap<ProviderKind, u16>,
    servers: HashMap<ProviderKind, Arc<Server>>,
    creds: Creds,
    log: Arc<Mutex<Vec<Logged>>>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds one server per provider kind on `127.0.0.1:0` and serves them in the background.
    pub async fn start(opts: SandboxOptions) -> std::io::Result<Sandbox> {
        let creds = Creds::random();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut sandbox = Sandbox {
            ports: HashMap::new(),
            servers: HashMap::new(),
            creds: creds.clone(),
            log: log.clone(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        for kind in ProviderKind::ALL {
            let secret = match kind {
                ProviderKind::Factory => creds.factory.clone(),
                ProviderKind::Aitronos => creds.aitronos.clone(),
                ProviderKind::Telnyx => creds.telnyx.clone(),
                ProviderKind::Aerospike => creds.aerospike_secret.clone(),
                ProviderKind::Cognee => creds.cognee.clone(),
            };
            let server = Arc::new(Server::new(kind, secret, &opts, log.clone(), &creds));
            let router: Router = match kind {
                ProviderKind::Factory => factory::router(server.clone()),
                ProviderKind::Aitronos => aitronos::router(server.clone()),
                ProviderKind::Telnyx => telnyx::router(server.clone()),
                ProviderKind::Aerospike => aerospike::router(server.clone()),
                ProviderKind::Cognee => cognee::router(server.clone()),
            };
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = listener.local_addr()?.port();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing::warn!(%kind, error = %e, "sandbox server stopped");
                }
            });
            sandbox.ports.insert(kind, port);
            sandbox.servers.insert(kind, server);
            sandbox.stops.push(stop);
            sandbox.tasks.push(task);
        }
        Ok(sandbox)
    }

    fn origin(&self, kind: ProviderKind) -> String {
        format!("http://127.0.0.1:{}", self.ports[&kind])
    }

    /// What a config's `base_url` must be for that kind: `http://127.0.0.1:PORT`, and for
    /// Aerospike `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self, kind: ProviderKind) -> String {
        match kind {
            ProviderKind::Aerospike => format!("{}/v1", self.origin(kind)),
            _ => self.origin(kind),
        }
    }

    /// Aerospike token endpoint: `http://127.0.0.1:PORT/oauth/token` (on the aerospike server).
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.origin(ProviderKind::Aerospike))
    }

    /// Credentials, random per start, as environment-variable name -> value pairs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let c = &self.creds;
        vec![
            ("SANDBOX_FACTORY_TOKEN", c.factory.clone()),
            ("SANDBOX_AITRONOS_API_KEY", c.aitronos.clone()),
            ("SANDBOX_TELNYX_TOKEN", c.telnyx.clone()),
            ("SANDBOX_AEROSPIKE_CLIENT_ID", c.aerospike_id.clone()),
            (
                "SANDBOX_AEROSPIKE_CLIENT_SECRET",
                c.aerospike_secret.clone(),
            ),
            ("SANDBOX_COGNEE_API_KEY", c.cognee.clone()),
        ]
    }

    /// Every request that reached a removal or list/search endpoint (after auth), in arrival order.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.log).clone()
    }

    /// Changes the rate limit `kind` enforces, from now on (a provider lowering its limit
    /// mid-run). Nothing changes for a kind without one.
    pub fn set_limit(&self, kind: ProviderKind, rate: f64, burst: u32) {
        if let Some(g) = self.servers.get(&kind).and_then(|s| s.limiter.as_ref()) {
            g.set(rate, burst);
        }
    }

    /// Every request logged so far, leaving the log empty (benches measuring one run at a time).
    pub fn take_log(&self) -> Vec<Logged> {
        std::mem::take(&mut *lock(&self.log))
    }

    /// Whether that membership still exists (organization ignored for factory/telnyx/aerospike).
    /// `user` is the id the removal takes or the member's email; case-insensitive, uuids compared
    /// canonical.
    pub fn is_member(&self, kind: ProviderKind, organization: Option<&str>, user: &str) -> bool {
        self.servers[&kind]
            .with_org(organization, |org| org.find(user).is_some())
            .unwrap_or(false)
    }

    /// How many members that organization has now (0 when it does not exist), the owner the
    /// sandbox adds where the seed names none aside.
    pub fn member_count(&self, kind: ProviderKind, organization: Option<&str>) -> usize {
        self.servers[&kind]
            .with_org(organization, |org| {
                let added = org
                    .sandbox_owner
                    .as_ref()
                    .is_some_and(|k| org.members.contains_key(k));
                org.members.len() - usize::from(added)
            })
            .unwrap_or(0)
    }

    /// The email the seed gave that member (organization ignored for factory/telnyx/aerospike),
    /// `None` if it was never seeded there. Still answers after the member is removed.
    pub fn email_of(
        &self,
        kind: ProviderKind,
        organization: Option<&str>,
        user: &str,
    ) -> Option<String> {
        self.servers[&kind]
            .with_org(organization, |org| {
                let k = key(user);
                org.members
                    .get(&k)
                    .or_else(|| org.removed.get(&k))
                    .map(|m| m.email.clone())
            })
            .flatten()
    }

    /// Puts a removed member back where the seed had it (owner flag and email included), as if
    /// an administrator re-added them: tests of verification undo removals with it. `user` as for
    /// [`Sandbox::is_member`]. False when that user was not removed from that organization.
    pub fn restore(&self, kind: ProviderKind, organization: Option<&str>, user: &str) -> bool {
        let s = &self.servers[&kind];
        let mut orgs = lock(&s.orgs);
        let Some(org) = orgs.get_mut(&org_key(kind, organization)) else {
            return false;
        };
        let k = org.find_removed(user);
        match k.and_then(|k| org.removed.remove(&k)) {
            Some(m) => {
                org.insert(m);
                true
            }
            None => false,
        }
    }

    /// Number of token grants issued by the aerospike token endpoint.
    pub fn tokens_issued(&self) -> u64 {
        self.servers[&ProviderKind::Aerospike]
            .tokens_issued
            .load(Ordering::Relaxed)
    }

    /// Stops the servers, waiting at most 2 s for open connections to close.
    pub async fn shutdown(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

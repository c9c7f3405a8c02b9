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
mod seed;
mod telnyx;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::job::ProviderKind;

pub use seed::Seed;

/// How the sandbox behaves: who is a member where, rate limits, faults, token lifetime.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub seed: Seed,
    /// Per kind: Some((rate_per_second, burst)) enforced by the server with 429s, None = unlimited.
    pub limits: HashMap<ProviderKind, (f64, u32)>,
    /// Per kind (Telnyx): a fixed window of `n` requests per `window` instead, told on every
    /// answer in `x-ratelimit-limit/-remaining/-reset` (seconds until the window resets), 429
    /// once spent. Takes precedence over `limits`.
    pub windows: HashMap<ProviderKind, (u32, Duration)>,
    pub faults: Faults,
    /// Per kind: an outage that answers every removal attempt the same way (isolation benches).
    pub outages: HashMap<ProviderKind, Outage>,
    /// Lifetime of Aerospike access tokens.
    pub token_ttl: Duration,
    /// Which of its two documented answers Aitronos' member search gives.
    pub aitronos_search: AitronosSearchShape,
    /// Aerospike's member list always checks `limit` (1 to 100, default 10) and `offset` (0 or
    /// more) as its OpenAPI says, and pages by them. `Some(n)`: the server also caps a page at `n`
    /// members (a `limit` above it answers `n`, `meta.limit` saying so); `None`: the spec's 100.
    pub aerospike_page_size: Option<usize>,
    /// Aerospike's member list as its docs say it "currently" is, paging disabled: the full set
    /// whatever a valid `limit`/`offset` say, `meta` saying so (`total` = `limit` = `count`,
    /// `offset` 0). Off: real paging, as the OpenAPI has it.
    pub aerospike_paging_disabled: bool,
    /// Cognee tenants in which the caller lacks `has_user_management_permission`: their user list
    /// and every removal in them answer 403. A tenant that does not exist still answers 404 (the
    /// tenant check comes first).
    pub cognee_forbidden_tenants: Vec<String>,
}

/// The two shapes Aitronos' pages document for `POST /v1/organizations/{org}/users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AitronosSearchShape {
    /// `{"users": [...], "total_users_count", "skip", "take"}` (the search page).
    #[default]
    Users,
    /// `{"members": [...], "total", "skip", "limit"}` (another page).
    Members,
}

/// A provider down for the whole run: every removal attempt gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// 503 with the provider's error body.
    Unavailable,
    /// 429 with the provider's rate-limit headers, asking to wait this long.
    RateLimited(Duration),
}

impl SandboxOptions {
    /// The demo: [`Seed::demo`], limits a bit above the demo client rates (factory 20/s, aitronos
    /// 10/s, telnyx 10/s, aerospike 10/s, cognee 15/s) so that only injected 429s normally show,
    /// [`Faults::demo`], and 4 s tokens so that a refresh shows in a short run.
    pub fn demo() -> Self {
        let limits = HashMap::from([
            (ProviderKind::Factory, (25.0, 10)),
            (ProviderKind::Aitronos, (13.0, 6)),
            (ProviderKind::Telnyx, (13.0, 6)),
            (ProviderKind::Aerospike, (13.0, 6)),
            (ProviderKind::Cognee, (19.0, 8)),
        ]);
        SandboxOptions {
            seed: Seed::demo(),
            limits,
            windows: HashMap::new(),
            faults: Faults::demo(),
            outages: HashMap::new(),
            token_ttl: Duration::from_secs(4),
            aitronos_search: AitronosSearchShape::Users,
            aerospike_page_size: None,
            aerospike_paging_disabled: false,
            cognee_forbidden_tenants: Vec::new(),
        }
    }

    /// No limits, no faults, 300 s tokens, the given seed.
    pub fn plain(seed: Seed) -> Self {
        SandboxOptions {
            seed,
            limits: HashMap::new(),
            windows: HashMap::new(),
            faults: Faults::none(),
            outages: HashMap::new(),
            token_ttl: Duration::from_secs(300),
            aitronos_search: AitronosSearchShape::Users,
            aerospike_page_size: None,
            aerospike_paging_disabled: false,
            cognee_forbidden_tenants: Vec::new(),
        }
    }
}

/// Deterministic injected faults, on the FIRST removal attempt for a target only (so a retry
/// succeeds). A target is picked when `fnv1a(lowercased user) % n == 0`, for n > 0; 0 = off.
/// When several pick the same target, 503 wins over 429, and 429 over 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// 503 with the provider's error body.
    pub unavailable_every: u32,
    /// 429 with the provider's rate-limit headers, asking to wait 1 s.
    pub rate_limited_every: u32,
    /// 409 with the provider's error body.
    pub conflict_every: u32,
}

impl Faults {
    pub fn none() -> Self {
        Faults::default()
    }
    pub fn demo() -> Self {
        Faults {
            unavailable_every: 17,
            rate_limited_every: 37,
            conflict_every: 23,
        }
    }

    fn pick(&self, user_key: &str) -> Option<Fault> {
        let h = fnv1a(user_key.as_bytes());
        let hit = |n: u32| n > 0 && h % u64::from(n) == 0;
        if hit(self.unavailable_every) {
            Some(Fault::Unavailable)
        } else if hit(self.rate_limited_every) {
            Some(Fault::RateLimited(Duration::from_secs(1)))
        } else if hit(self.conflict_every) {
            Some(Fault::Conflict)
        } else {
            None
        }
    }
}

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

#[derive(Debug, Clone)]
struct Creds {
    factory: String,
    aitronos: String,
    telnyx: String,
    aerospike_id: String,
    aerospike_secret: String,
    cognee: String,
}

impl Creds {
    fn random() -> Creds {
        let r = || uuid::Uuid::new_v4().simple().to_string();
        Creds {
            factory: format!("fk-{}", r()),
            aitronos: format!("ak_{}", r()),
            telnyx: format!("KEY{}_{}", r().to_uppercase(), r()),
            aerospike_id: r()[..20].to_owned(),
            aerospike_secret: format!("{}{}", r(), r()),
            cognee: r(),
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Shared server state and helpers for the provider modules.

/// A member as a server holds it.
#[derive(Debug, Clone)]
struct Member {
    /// As seeded.
    user: String,
    owner: bool,
    email: String,
}

impl Member {
    /// The comparison key of the user.
    fn key(&self) -> String {
        key(&self.user)
    }

    /// Where the member sorts in lists: lowercased email, then user key.
    fn order(&self) -> (String, String) {
        (self.email.to_lowercase(), self.key())
    }
}

/// One organization (tenant) of a server: its members, indexed three ways, and the members it
/// had (for [`Sandbox::restore`] and for [`Sandbox::email_of`] after a removal).
#[derive(Debug, Default)]
struct Org {
    /// User key -> member.
    members: HashMap<String, Member>,
    /// Lowercased email -> user keys (several users may share an email).
    by_email: HashMap<String, Vec<String>>,
    /// (lowercased email, user key) of every member: the order lists answer in, and the position
    /// a cursor names.
    order: BTreeSet<(String, String)>,
    /// User key -> member, for members removed since the start.
    removed: HashMap<String, Member>,
    /// The owner the sandbox added (the seed named none), by user key.
    sandbox_owner: Option<String>,
}

impl Org {
    /// Adds (or replaces) a member in every index.
    fn insert(&mut self, m: Member) {
        let k = m.key();
        if let Some(old) = self.members.remove(&k) {
            self.unindex(&old);
        }
        self.removed.remove(&k);
        let (email, _) = m.order();
        self.by_email
            .entry(email.clone())
            .or_default()
            .push(k.clone());
        self.order.insert((email, k.clone()));
        self.members.insert(k, m);
    }

    /// Takes the member out of every index, keeping it as removed.
    fn take(&mut self, k: &str) -> Option<Member> {
        let m = self.members.remove(k)?;
        self.unindex(&m);
        self.removed.insert(k.to_owned(), m.clone());
        Some(m)
    }

    fn unindex(&mut self, m: &Member) {
        let (email, k) = m.order();
        self.order.remove(&(email.clone(), k.clone()));
        if let Some(keys) = self.by_email.get_mut(&email) {
            keys.retain(|x| *x != k);
            if keys.is_empty() {
                self.by_email.remove(&email);
            }
        }
    }

    /// The member whose user key is `user`, else the first whose email is `user`.
    fn find(&self, user: &str) -> Option<&Member> {
        let k = key(user);
        self.members.get(&k).or_else(|| {
            let keys = self.by_email.get(&user.trim().to_lowercase())?;
            keys.first().and_then(|k| self.members.get(k))
        })
    }

    /// The key of the removed member whose user key or email is `user`.
    fn find_removed(&self, user: &str) -> Option<String> {
        let k = key(user);
        if self.removed.contains_key(&k) {
            return Some(k);
        }
        let email = user.trim().to_lowercase();
        self.removed
            .iter()
            .find(|(_, m)| m.email.to_lowercase() == email)
            .map(|(k, _)| k.clone())
    }

    /// Members in listing order.
    fn ordered(&self) -> impl Iterator<Item = &Member> {
        self.order.iter().filter_map(|(_, k)| self.members.get(k))
    }

    /// Members in listing order whose email contains `needle` (already lowercased; every member
    /// when empty). Compares the indexed lowercase emails: no allocation per member.
    fn matching<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.order
            .iter()
            .filter(move |(email, _)| email.contains(needle))
            .filter_map(|(_, k)| self.members.get(k))
    }

    /// Members in listing order strictly after the position `after` (a cursor).
    fn after<'a>(&'a self, after: &(String, String)) -> impl Iterator<Item = &'a Member> + 'a {
        use std::ops::Bound;
        self.order
            .range((Bound::Excluded(after.clone()), Bound::Unbounded))
            .filter_map(|(_, k)| self.members.get(k))
    }
}

/// What a removal found.
#[derive(Debug)]
enum Removal {
    Removed(Member),
    /// The member is an owner: nothing was removed.
    Owner,
    /// The organization (tenant) does not exist.
    NoOrganization,
    /// Not a member; `exists` tells whether the user exists at all (in any organization).
    NotMember {
        exists: bool,
    },
}

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Unavailable,
    RateLimited(Duration),
    Conflict,
}

/// One provider server's state.
struct Server {
    kind: ProviderKind,
    /// The credential: bearer token or API key; for Aerospike the client secret.
    secret: String,
    /// For Aerospike, the client id.
    client_id: String,
    /// Organization key (None where the credential picks it) -> its members.
    orgs: Mutex<HashMap<Option<String>, Org>>,
    /// Keys of every user that exists anywhere (removal from an organization keeps the user).
    known: HashSet<String>,
    /// Organization keys where the caller lacks permission to manage users (Cognee).
    forbidden: HashSet<Option<String>>,
    aitronos_search: AitronosSearchShape,
    aerospike_page_size: Option<usize>,
    aerospike_paging_disabled: bool,
    limiter: Option<Gcra>,
    window: Option<Window>,
    faults: Faults,
    outage: Option<Fault>,
    attempted: Mutex<HashSet<(Option<String>, String)>>,
    log: Arc<Mutex<Vec<Logged>>>,
    token_ttl: Duration,
    /// Aerospike access tokens -> expiry.
    tokens: Mutex<HashMap<String, Instant>>,
    tokens_issued: AtomicU64,
}

impl Server {
    fn new(
        kind: ProviderKind,
        secret: String,
        opts: &SandboxOptions,
        log: Arc<Mutex<Vec<Logged>>>,
        creds: &Creds,
    ) -> Server {
        let (orgs, known) = seeded(kind, &opts.seed);
        let forbidden = match kind {
            ProviderKind::Cognee => opts
                .cognee_forbidden_tenants
                .iter()
                .map(|t| org_key(kind, Some(t)))
                .collect(),
            _ => HashSet::new(),
        };
        Server {
            kind,
            secret,
            client_id: creds.aerospike_id.clone(),
            orgs: Mutex::new(orgs),
            known,
            forbidden,
            aitronos_search: opts.aitronos_search,
            aerospike_page_size: opts.aerospike_page_size,
            aerospike_paging_disabled: opts.aerospike_paging_disabled,
            limiter: opts
                .limits
                .get(&kind)
                .map(|&(rate, burst)| Gcra::new(rate, burst))
                .filter(|_| !opts.windows.contains_key(&kind)),
            window: opts.windows.get(&kind).map(|&(limit, length)| Window {
                limit,
                length,
                state: Mutex::new((Instant::now(), 0)),
            }),
            faults: opts.faults,
            outage: opts.outages.get(&kind).map(|o| match *o {
                Outage::Unavailable => Fault::Unavailable,
                Outage::RateLimited(wait) => Fault::RateLimited(wait),
            }),
            attempted: Mutex::new(HashSet::new()),
            log,
            token_ttl: opts.token_ttl,
            tokens: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
        }
    }

    /// `Some(wait)` when this request is over the server's rate limit.
    fn over_limit(&self) -> Option<Duration> {
        if let Some(w) = &self.window {
            return w.check();
        }
        self.limiter.as_ref().and_then(Gcra::check)
    }

    /// The requests the limiter allows (a second's, or a window's), for headers that name a limit.
    fn limit_per_second(&self) -> u32 {
        if let Some(w) = &self.window {
            return w.limit;
        }
        self.limiter
            .as_ref()
            .map_or(100, |g| g.rate().ceil().max(1.0) as u32)
    }

    /// The window's `x-ratelimit-*` headers, on every answer when there is a window.
    fn window_headers(&self, r: &mut Response) {
        let Some(w) = &self.window else {
            return;
        };
        let (remaining, reset) = w.left();
        let h = r.headers_mut();
        h.insert("x-ratelimit-limit", w.limit.into());
        h.insert("x-ratelimit-remaining", remaining.into());
        h.insert("x-ratelimit-reset", ceil_secs(reset).into());
    }

    /// The outage, on every attempt; else the injected fault for this target, on its first
    /// attempt only.
    fn fault(&self, organization: Option<&str>, user: &str) -> Option<Fault> {
        if self.outage.is_some() {
            return self.outage;
        }
        let target = (org_key(self.kind, organization), key(user));
        let first = lock(&self.attempted).insert(target);
        if first {
            self.faults.pick(&key(user))
        } else {
            None
        }
    }

    /// Runs `f` on the organization, `None` when it does not exist.
    fn with_org<R>(&self, organization: Option<&str>, f: impl FnOnce(&Org) -> R) -> Option<R> {
        lock(&self.orgs)
            .get(&org_key(self.kind, organization))
            .map(f)
    }

    /// Whether the caller lacks permission to manage users in that organization.
    fn forbidden(&self, organization: Option<&str>) -> bool {
        self.forbidden.contains(&org_key(self.kind, organization))
    }

    /// Removes the membership unless the member is an owner.
    fn remove(&self, organization: Option<&str>, user: &str) -> Removal {
        let mut orgs = lock(&self.orgs);
        let Some(org) = orgs.get_mut(&org_key(self.kind, organization)) else {
            return Removal::NoOrganization;
        };
        let k = key(user);
        match org.members.get(&k) {
            Some(m) if m.owner => Removal::Owner,
            Some(_) => Removal::Removed(org.take(&k).expect("present")),
            None => Removal::NotMember {
                exists: self.known.contains(&k),
            },
        }
    }

    /// Appends the answer of a removal to the log and passes it on.
    fn record(&self, organization: Option<&str>, user: &str, resp: Response) -> Response {
        self.log_as("remove", organization, user, resp)
    }

    /// Appends the answer of a list/search call (`search`: the text, "" for a full list).
    fn record_lookup(&self, organization: Option<&str>, search: &str, resp: Response) -> Response {
        self.log_as("lookup", organization, search, resp)
    }

    fn log_as(
        &self,
        operation: &'static str,
        organization: Option<&str>,
        user: &str,
        resp: Response,
    ) -> Response {
        lock(&self.log).push(Logged {
            kind: self.kind,
            at: Instant::now(),
            operation,
            organization: organization.map(str::to_owned),
            user: user.to_owned(),
            status: resp.status().as_u16(),
        });
        resp
    }
}

/// The organizations and known users of one kind, as the seed has them.
fn seeded(kind: ProviderKind, seed: &Seed) -> (HashMap<Option<String>, Org>, HashSet<String>) {
    let mut orgs: HashMap<Option<String>, Org> = HashMap::new();
    let mut known = HashSet::new();
    for e in seed.entries().iter().filter(|e| e.kind == kind) {
        let org = orgs
            .entry(org_key(kind, e.organization.as_deref()))
            .or_default();
        let Some(user) = &e.user else { continue };
        let k = key(user);
        known.insert(k.clone());
        let owner = e.owner || org.members.get(&k).is_some_and(|m| m.owner);
        org.insert(Member {
            user: user.clone(),
            owner,
            email: seed.email_of(kind, user),
        });
    }
    for (organization, n) in seed.bulk(kind) {
        let org = orgs.entry(org_key(kind, organization)).or_default();
        for i in 0..n {
            let user = Seed::many_user(kind, i);
            let k = key(&user);
            known.insert(k.clone());
            if org.members.contains_key(&k) {
                continue;
            }
            org.insert(Member {
                user,
                owner: false,
                email: Seed::many_email(i),
            });
        }
    }
    // Where the credential picks the organization, it always exists. Every organization has an
    // owner, as every real one does (and so no member list is ever empty): where the seed names
    // none, the sandbox adds one, whom `Sandbox::member_count` does not count.
    if !has_organizations(kind) {
        orgs.entry(None).or_default();
    }
    for org in orgs.values_mut() {
        if org.members.values().all(|m| !m.owner) {
            let user = sandbox_owner(kind);
            org.sandbox_owner = Some(key(&user));
            org.insert(Member {
                user,
                owner: true,
                email: SANDBOX_OWNER_EMAIL.to_owned(),
            });
        }
    }
    (orgs, known)
}

/// The email of the owner the sandbox adds to an organization whose seed names none.
pub const SANDBOX_OWNER_EMAIL: &str = "owner@sandbox.example";

/// The id of that owner, in the kind's format.
fn sandbox_owner(kind: ProviderKind) -> String {
    match kind {
        ProviderKind::Factory => SANDBOX_OWNER_EMAIL.to_owned(),
        ProviderKind::Aitronos => "usr_sandboxowner".to_owned(),
        _ => "0ca0ca0c-0000-4000-8000-00000000ffff".to_owned(),
    }
}

/// A fixed window: `limit` requests per `length`, renewed at each window's end.
struct Window {
    limit: u32,
    length: Duration,
    /// The current window's start, and the requests counted in it.
    state: Mutex<(Instant, u32)>,
}

impl Window {
    fn roll(&self, now: Instant) -> MutexGuard<'_, (Instant, u32)> {
        let mut st = lock(&self.state);
        while now.duration_since(st.0) >= self.length {
            st.0 += self.length;
            st.1 = 0;
        }
        st
    }

    /// `None` when allowed (and counted), `Some(wait)` until the window renews.
    fn check(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut st = self.roll(now);
        if st.1 < self.limit {
            st.1 += 1;
            None
        } else {
            Some(st.0 + self.length - now)
        }
    }

    /// What is left of this window, and until when.
    fn left(&self) -> (u32, Duration) {
        let now = Instant::now();
        let st = self.roll(now);
        (self.limit - st.1, st.0 + self.length - now)
    }
}

/// Generic cell rate algorithm: `rate` per second with bursts of `burst`; the limit may change
/// while it runs (a provider lowering it mid-run).
struct Gcra {
    rate: Mutex<f64>,
    /// (interval, tolerance, the theoretical arrival time).
    state: Mutex<(Duration, Duration, Option<Instant>)>,
}

impl Gcra {
    fn params(rate: f64, burst: u32) -> (Duration, Duration) {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        (interval, interval * burst.max(1).saturating_sub(1))
    }

    fn new(rate: f64, burst: u32) -> Gcra {
        let (interval, tolerance) = Self::params(rate, burst);
        Gcra {
            rate: Mutex::new(rate),
            state: Mutex::new((interval, tolerance, None)),
        }
    }

    fn set(&self, rate: f64, burst: u32) {
        let (interval, tolerance) = Self::params(rate, burst);
        *lock(&self.rate) = rate;
        let mut st = lock(&self.state);
        st.0 = interval;
        st.1 = tolerance;
    }

    fn rate(&self) -> f64 {
        *lock(&self.rate)
    }

    /// `None` when allowed (and counted), `Some(wait)` when over the limit.
    fn check(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let (interval, tolerance, tat) = *st;
        let current = tat.map_or(now, |t| t.max(now));
        let ahead = current - now;
        if ahead > tolerance {
            Some(ahead - tolerance)
        } else {
            st.2 = Some(current + interval);
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the kind has organizations in its URLs (else the credential picks it).
fn has_organizations(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Aitronos | ProviderKind::Cognee)
}

fn org_key(kind: ProviderKind, organization: Option<&str>) -> Option<String> {
    if has_organizations(kind) {
        organization.map(key)
    } else {
        None
    }
}

/// The comparison key of a user or organization: canonical for uuids, lowercase otherwise.
fn key(s: &str) -> String {
    let s = s.trim();
    match uuid::Uuid::try_parse(s) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => s.to_ascii_lowercase(),
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every run and every machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whole seconds to wait, rounded up, at least 1.
fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// The bearer token of an `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// Decodes an `application/x-www-form-urlencoded` string (also a query string).
fn form_pairs(s: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `2026-11-22T17:11:55Z`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A creation time fixed per user, somewhere in 2021-2024 (`2022-03-04T05:06:07.000Z`).
fn created_at(user: &str) -> String {
    let t =
        UNIX_EPOCH + Duration::from_secs(1_610_000_000 + fnv1a(key(user).as_bytes()) % 100_000_000);
    rfc3339(t).replace('Z', ".000Z")
}

/// The words of an email's local part, capitalized: `ava.anderson@acme.example` -> `["Ava",
/// "Anderson"]`, `person17@bulk.example` -> `["Person17"]`.
fn name_words(email: &str) -> Vec<String> {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-', '+'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! One provider's server state: its organizations, credentials, faults, rate limit and the log
//! of what it was asked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::Response;

use crate::job::ProviderKind;

use super::{
    AitronosSearchShape, Fault, Faults, Gcra, Logged, Org, Outage, Removal, SandboxOptions, Window,
    ceil_secs, key, lock, org_key, seeded,
};

#[derive(Debug, Clone)]
pub(super) struct Creds {
    pub(super) factory: String,
    pub(super) aitronos: String,
    pub(super) telnyx: String,
    pub(super) aerospike_id: String,
    pub(super) aerospike_secret: String,
    pub(super) cognee: String,
}

impl Creds {
    pub(super) fn random() -> Creds {
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

/// One provider server's state.
pub(super) struct Server {
    pub(super) kind: ProviderKind,
    /// The credential: bearer token or API key; for Aerospike the client secret.
    pub(super) secret: String,
    /// For Aerospike, the client id.
    pub(super) client_id: String,
    /// Organization key (None where the credential picks it) -> its members.
    pub(super) orgs: Mutex<HashMap<Option<String>, Org>>,
    /// Keys of every user that exists anywhere (removal from an organization keeps the user).
    pub(super) known: HashSet<String>,
    /// Organization keys where the caller lacks permission to manage users (Cognee).
    pub(super) forbidden: HashSet<Option<String>>,
    pub(super) aitronos_search: AitronosSearchShape,
    pub(super) aerospike_page_size: Option<usize>,
    pub(super) aerospike_paging_disabled: bool,
    pub(super) limiter: Option<Gcra>,
    pub(super) window: Option<Window>,
    pub(super) faults: Faults,
    pub(super) outage: Option<Fault>,
    pub(super) attempted: Mutex<HashSet<(Option<String>, String)>>,
    pub(super) log: Arc<Mutex<Vec<Logged>>>,
    pub(super) token_ttl: Duration,
    /// Aerospike access tokens -> expiry.
    pub(super) tokens: Mutex<HashMap<String, Instant>>,
    pub(super) tokens_issued: AtomicU64,
}

impl Server {
    pub(super) fn new(
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
    pub(super) fn over_limit(&self) -> Option<Duration> {
        if let Some(w) = &self.window {
            return w.check();
        }
        self.limiter.as_ref().and_then(Gcra::check)
    }

    /// The requests the limiter allows (a second's, or a window's), for headers that name a limit.
    pub(super) fn limit_per_second(&self) -> u32 {
        if let Some(w) = &self.window {
            return w.limit;
        }
        self.limiter
            .as_ref()
            .map_or(100, |g| g.rate().ceil().max(1.0) as u32)
    }

    /// The window's `x-ratelimit-*` headers, on every answer when there is a window.
    pub(super) fn window_headers(&self, r: &mut Response) {
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
    pub(super) fn fault(&self, organization: Option<&str>, user: &str) -> Option<Fault> {
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
    pub(super) fn with_org<R>(
        &self,
        organization: Option<&str>,
        f: impl FnOnce(&Org) -> R,
    ) -> Option<R> {
        lock(&self.orgs)
            .get(&org_key(self.kind, organization))
            .map(f)
    }

    /// Whether the caller lacks permission to manage users in that organization.
    pub(super) fn forbidden(&self, organization: Option<&str>) -> bool {
        self.forbidden.contains(&org_key(self.kind, organization))
    }

    /// Removes the membership unless the member is an owner.
    pub(super) fn remove(&self, organization: Option<&str>, user: &str) -> Removal {
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
    pub(super) fn record(
        &self,
        organization: Option<&str>,
        user: &str,
        resp: Response,
    ) -> Response {
        self.log_as("remove", organization, user, resp)
    }

    /// Appends the answer of a list/search call (`search`: the text, "" for a full list).
    pub(super) fn record_lookup(
        &self,
        organization: Option<&str>,
        search: &str,
        resp: Response,
    ) -> Response {
        self.log_as("lookup", organization, search, resp)
    }

    pub(super) fn log_as(
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

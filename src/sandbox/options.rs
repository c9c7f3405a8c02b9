//! How a sandbox behaves: members, rate limits, faults, outages, token lifetime.

use std::collections::HashMap;
use std::time::Duration;

use crate::job::ProviderKind;

use super::{Seed, fnv1a};

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

    pub(super) fn pick(&self, user_key: &str) -> Option<Fault> {
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

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    Unavailable,
    RateLimited(Duration),
    Conflict,
}

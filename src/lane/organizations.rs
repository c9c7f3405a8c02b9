//! What a lane knows of each organization ("" where the API key picks it): its preflight, the
//! ids never to be removed there, its whole member list kept a while, whether it refused us, and
//! the lock that keeps removals quiet while a whole list is read. State only: the reads that fill
//! it are `members`'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::providers::lookup::Member;

/// What the preflight of one organization (or of the entry, where the key picks it) found.
#[derive(Clone)]
pub(super) enum Proof {
    /// The base URL, credential and permission work.
    Proven,
    /// Nothing may be sent there, and why.
    Failed(String),
}

/// How long a proven preflight stands before the next job proves the organization again: its
/// whole list, read anew, finds who became protected (or the owner) since.
pub const PROOF_TTL: Duration = Duration::from_secs(3600);

/// How long a whole member list serves lookups before it is read again.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(60);

/// One organization's whole-list reads: one at a time, and no removal there while one is read.
#[derive(Default)]
pub(super) struct Reading {
    pub(super) one: tokio::sync::Mutex<()>,
    /// Removals hold it shared while they are admitted and sent; a whole list read holds it
    /// alone, so no removal shifts its pages while it is read.
    pub(super) quiet: tokio::sync::RwLock<()>,
}

/// A preflight and when it began.
type ProofSlot = (Instant, Arc<tokio::sync::OnceCell<Proof>>);

/// A whole member list, when its read began, and the list.
type CachedList = (Instant, Arc<Vec<Member>>);

#[derive(Default)]
pub(super) struct Organizations {
    /// The preflight of each organization, and when it began: run by the first job (or caller)
    /// that needs it, again once a proof is older than [`PROOF_TTL`]; every other waits for it.
    proofs: Mutex<HashMap<String, ProofSlot>>,
    /// Ids never to be removed, found in each organization's whole lists (lowercase id -> why):
    /// every read adds to them, none takes away.
    protected_ids: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Organizations that refused us (a 403 scoped to them): their jobs are not sent.
    refused: Mutex<HashMap<String, String>>,
    /// Whole member lists, for lookups and absence checks.
    lists: Mutex<HashMap<String, CachedList>>,
    /// Each organization's whole-list reads (see [`Reading`]).
    reading: Mutex<HashMap<String, Arc<Reading>>>,
}

/// The key of an organization in the maps.
fn key(organization: Option<&str>) -> String {
    organization.unwrap_or("").to_ascii_lowercase()
}

impl Organizations {
    /// The preflight of `organization`: the one under way or done, or a new one when there is
    /// none or the proof is older than [`PROOF_TTL`].
    pub(super) fn proof(&self, organization: Option<&str>) -> Arc<tokio::sync::OnceCell<Proof>> {
        let mut proofs = self.proofs.lock().expect("proofs lock");
        let slot = proofs
            .entry(key(organization))
            .or_insert_with(|| (Instant::now(), Default::default()));
        let stale = matches!(slot.1.get(), Some(Proof::Proven)) && slot.0.elapsed() >= PROOF_TTL;
        if stale {
            *slot = (Instant::now(), Default::default());
        }
        slot.1.clone()
    }

    /// Forgets every preflight, so the next job proves its organization again.
    pub(super) fn forget_proofs(&self) {
        self.proofs.lock().expect("proofs lock").clear();
    }

    /// Why the member `id` of `organization` may never be removed, if a whole list read there
    /// found so (a protected email, the owner).
    pub(super) fn protected_id(&self, organization: Option<&str>, id: &str) -> Option<String> {
        self.protected_ids
            .lock()
            .expect("protected ids lock")
            .get(&key(organization))?
            .get(&id.to_ascii_lowercase())
            .cloned()
    }

    /// The whole-list reads of `organization` (see [`Reading`]).
    pub(super) fn reading(&self, organization: Option<&str>) -> Arc<Reading> {
        self.reading
            .lock()
            .expect("reading lock")
            .entry(key(organization))
            .or_default()
            .clone()
    }

    /// The kept whole list of `organization`, if its read began at or after `not_before` and it
    /// is younger than [`LIST_CACHE_TTL`].
    pub(super) fn list(
        &self,
        organization: Option<&str>,
        not_before: Option<Instant>,
    ) -> Option<Arc<Vec<Member>>> {
        let lists = self.lists.lock().expect("lists lock");
        let (at, list) = lists.get(&key(organization))?;
        (at.elapsed() < LIST_CACHE_TTL && not_before.is_none_or(|t| *at >= t)).then(|| list.clone())
    }

    /// Keeps a whole list whose read began at `started`, with the protected ids it showed.
    pub(super) fn keep_list(
        &self,
        organization: Option<&str>,
        started: Instant,
        list: Arc<Vec<Member>>,
        protected: HashMap<String, String>,
    ) {
        self.protected_ids
            .lock()
            .expect("protected ids lock")
            .entry(key(organization))
            .or_default()
            .extend(protected);
        self.lists
            .lock()
            .expect("lists lock")
            .insert(key(organization), (started, list));
    }

    /// Closes `organization` for `why`; false when it was closed already.
    pub(super) fn refuse(&self, organization: Option<&str>, why: String) -> bool {
        let mut refused = self.refused.lock().expect("refused lock");
        match refused.entry(key(organization)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(why);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }

    /// Why `organization` refused us, if it did.
    pub(super) fn refused(&self, organization: Option<&str>) -> Option<String> {
        self.refused
            .lock()
            .expect("refused lock")
            .get(&key(organization))
            .cloned()
    }
}

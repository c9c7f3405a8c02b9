//! Organizations and their members, indexed so that a removal or an exact lookup costs the same
//! in an organization of 20,000 as in one of five; who each sandbox seeds where.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::job::ProviderKind;

use super::{Seed, has_organizations, key, org_key};

/// The email of the owner the sandbox adds to an organization whose seed names none.
pub const SANDBOX_OWNER_EMAIL: &str = "owner@sandbox.example";

// ---------------------------------------------------------------------------------------------
// Shared server state and helpers for the provider modules.

/// A member as a server holds it.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// As seeded.
    pub(super) user: String,
    pub(super) owner: bool,
    pub(super) email: String,
}

impl Member {
    /// The comparison key of the user.
    pub(super) fn key(&self) -> String {
        key(&self.user)
    }

    /// Where the member sorts in lists: lowercased email, then user key.
    pub(super) fn order(&self) -> (String, String) {
        (self.email.to_lowercase(), self.key())
    }
}

/// One organization (tenant) of a server: its members, indexed three ways, and the members it
/// had (for [`Sandbox::restore`] and for [`Sandbox::email_of`] after a removal).
#[derive(Debug, Default)]
pub(super) struct Org {
    /// User key -> member.
    pub(super) members: HashMap<String, Member>,
    /// Lowercased email -> user keys (several users may share an email).
    pub(super) by_email: HashMap<String, Vec<String>>,
    /// (lowercased email, user key) of every member: the order lists answer in, and the position
    /// a cursor names.
    pub(super) order: BTreeSet<(String, String)>,
    /// User key -> member, for members removed since the start.
    pub(super) removed: HashMap<String, Member>,
    /// The owner the sandbox added (the seed named none), by user key.
    pub(super) sandbox_owner: Option<String>,
}

impl Org {
    /// Adds (or replaces) a member in every index.
    pub(super) fn insert(&mut self, m: Member) {
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
    pub(super) fn take(&mut self, k: &str) -> Option<Member> {
        let m = self.members.remove(k)?;
        self.unindex(&m);
        self.removed.insert(k.to_owned(), m.clone());
        Some(m)
    }

    pub(super) fn unindex(&mut self, m: &Member) {
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
    pub(super) fn find(&self, user: &str) -> Option<&Member> {
        let k = key(user);
        self.members.get(&k).or_else(|| {
            let keys = self.by_email.get(&user.trim().to_lowercase())?;
            keys.first().and_then(|k| self.members.get(k))
        })
    }

    /// The key of the removed member whose user key or email is `user`.
    pub(super) fn find_removed(&self, user: &str) -> Option<String> {
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
    pub(super) fn ordered(&self) -> impl Iterator<Item = &Member> {
        self.order.iter().filter_map(|(_, k)| self.members.get(k))
    }

    /// Members in listing order whose email contains `needle` (already lowercased; every member
    /// when empty). Compares the indexed lowercase emails: no allocation per member.
    pub(super) fn matching<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.order
            .iter()
            .filter(move |(email, _)| email.contains(needle))
            .filter_map(|(_, k)| self.members.get(k))
    }

    /// Members in listing order strictly after the position `after` (a cursor).
    pub(super) fn after<'a>(
        &'a self,
        after: &(String, String),
    ) -> impl Iterator<Item = &'a Member> + 'a {
        use std::ops::Bound;
        self.order
            .range((Bound::Excluded(after.clone()), Bound::Unbounded))
            .filter_map(|(_, k)| self.members.get(k))
    }
}

/// What a removal found.
#[derive(Debug)]
pub(super) enum Removal {
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

/// The organizations and known users of one kind, as the seed has them.
pub(super) fn seeded(
    kind: ProviderKind,
    seed: &Seed,
) -> (HashMap<Option<String>, Org>, HashSet<String>) {
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

/// The id of that owner, in the kind's format.
pub(super) fn sandbox_owner(kind: ProviderKind) -> String {
    match kind {
        ProviderKind::Factory => SANDBOX_OWNER_EMAIL.to_owned(),
        ProviderKind::Aitronos => "usr_sandboxowner".to_owned(),
        _ => "0ca0ca0c-0000-4000-8000-00000000ffff".to_owned(),
    }
}

//! Who is a member where, and the demo data: [`Seed::demo`] and `examples/reorg.csv` come from one
//! deterministic generator, so that they always agree.

use std::collections::HashMap;

use crate::job::ProviderKind;

use super::key;

/// Members per kind and organization, and owners (members who cannot be removed).
///
/// For Factory, Telnyx and Aerospike the credential picks the organization: the organization given
/// for them is ignored.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    entries: Vec<Entry>,
    /// (kind, user key) -> email, where one was given (the demo, [`Seed::member_with_email`]).
    emails: HashMap<(ProviderKind, String), String>,
    /// Generated members, as (kind, organization, n): persons 0..n of [`Seed::many`], made when
    /// the sandbox starts, so that a seed of 20,000 members is cheap to build and to clone.
    bulk: Vec<(ProviderKind, Option<String>, usize)>,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) kind: ProviderKind,
    pub(super) organization: Option<String>,
    /// None: the organization exists, with nobody added by this entry.
    pub(super) user: Option<String>,
    pub(super) owner: bool,
}

impl Seed {
    /// The demo organizations, consistent with `examples/reorg.csv`.
    pub fn demo() -> Seed {
        let mut seed = Seed::default()
            .organization(ProviderKind::Aitronos, AITRONOS_ORG)
            .organization(ProviderKind::Cognee, &cognee_tenant())
            .organization(ProviderKind::Cognee, &cognee_other_tenant());
        for row in demo_rows() {
            let Ok(kind) = row.provider.parse::<ProviderKind>() else {
                continue;
            };
            let org = Some(row.organization.as_str()).filter(|o| !o.is_empty());
            seed = match row.role {
                Role::Member => seed.member(kind, org, &row.user),
                Role::Owner => seed.owner(kind, org, &row.user),
                Role::NonMember | Role::Bad | Role::Duplicate => seed,
            };
            if let Some(email) = row.email {
                seed.emails.insert((kind, key(&row.user)), email);
            }
        }
        // Owners nobody asks to remove, and the user who is only in another Cognee tenant (whose
        // email the CSV's non-member row already gave).
        let seed = seed
            .owner(
                ProviderKind::Aitronos,
                Some(AITRONOS_ORG),
                &aitronos_id(9_000),
            )
            .owner(ProviderKind::Telnyx, None, &uuid_for(Tag::Telnyx, 9_000))
            .owner(
                ProviderKind::Cognee,
                Some(&cognee_other_tenant()),
                &uuid_for(Tag::Cognee, 9_001),
            )
            .member(
                ProviderKind::Cognee,
                Some(&cognee_other_tenant()),
                &cognee_elsewhere(),
            );
        seed.with_email(ProviderKind::Aitronos, &aitronos_id(9_000), &email(70))
            .with_email(
                ProviderKind::Telnyx,
                &uuid_for(Tag::Telnyx, 9_000),
                &email(71),
            )
            .with_email(
                ProviderKind::Cognee,
                &uuid_for(Tag::Cognee, 9_001),
                &email(72),
            )
    }

    /// A member who can be removed.
    pub fn member(mut self, kind: ProviderKind, organization: Option<&str>, user: &str) -> Seed {
        self.push(kind, organization, Some(user), false);
        self
    }

    /// A member who can be removed, with the email that list/search endpoints show and match.
    /// The email belongs to the user at that kind (every organization of it).
    pub fn member_with_email(
        self,
        kind: ProviderKind,
        organization: Option<&str>,
        user: &str,
        email: &str,
    ) -> Seed {
        self.member(kind, organization, user)
            .with_email(kind, user, email)
    }

    fn with_email(mut self, kind: ProviderKind, user: &str, email: &str) -> Seed {
        self.emails
            .insert((kind, key(user)), email.trim().to_owned());
        self
    }

    /// A member who cannot be removed (Aitronos 403, Telnyx 403, Cognee 400, Factory and Aerospike 403).
    pub fn owner(mut self, kind: ProviderKind, organization: Option<&str>, user: &str) -> Seed {
        self.push(kind, organization, Some(user), true);
        self
    }

    /// Adds generated persons 0..n to one organization of a kind (the organization is created if
    /// need be; ignored for factory/telnyx/aerospike), for realistic sizes: 20,000 members and
    /// more. Person i is [`Seed::many_user`]`(kind, i)` with email [`Seed::many_email`]`(i)`; the
    /// same person in every organization of the kind, never an owner. A user the seed also adds
    /// otherwise keeps the other entry's email and owner flag.
    pub fn many(mut self, kind: ProviderKind, organization: Option<&str>, n: usize) -> Seed {
        self.push(kind, organization, None, false);
        self.bulk.push((kind, organization.map(str::to_owned), n));
        self
    }

    /// The user (the id the removal takes) of generated person `i` of a kind: the email for
    /// Factory, `usr_` and 12 base-36 characters for Aitronos, a v4 uuid otherwise. Deterministic,
    /// and distinct from every demo user.
    pub fn many_user(kind: ProviderKind, i: usize) -> String {
        let i = i as u64;
        match kind {
            ProviderKind::Factory => Seed::many_email(i as usize),
            ProviderKind::Aitronos => usr_id(Tag::BulkAitronos, i),
            ProviderKind::Telnyx => uuid_for(Tag::BulkTelnyx, i),
            ProviderKind::Aerospike => uuid_for(Tag::BulkAerospike, i),
            ProviderKind::Cognee => uuid_for(Tag::BulkCognee, i),
        }
    }

    /// The email of generated person `i`: `person{i}@bulk.example`.
    pub fn many_email(i: usize) -> String {
        format!("person{i}@bulk.example")
    }

    /// The generated members of a kind, as (organization, n).
    pub(super) fn bulk(&self, kind: ProviderKind) -> impl Iterator<Item = (Option<&str>, usize)> {
        self.bulk
            .iter()
            .filter(move |(k, _, _)| *k == kind)
            .map(|(_, o, n)| (o.as_deref(), *n))
    }

    /// An organization (tenant) that exists, with no members yet.
    pub fn organization(mut self, kind: ProviderKind, organization: &str) -> Seed {
        self.push(kind, Some(organization), None, false);
        self
    }

    fn push(
        &mut self,
        kind: ProviderKind,
        organization: Option<&str>,
        user: Option<&str>,
        owner: bool,
    ) {
        self.entries.push(Entry {
            kind,
            organization: organization.map(str::to_owned),
            user: user.map(str::to_owned),
            owner,
        });
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The user's email: as given, the user itself where it is an email (Factory), else
    /// `<user key>@members.example` (lowercase, deterministic).
    pub(super) fn email_of(&self, kind: ProviderKind, user: &str) -> String {
        if let Some(e) = self.emails.get(&(kind, key(user))) {
            return e.clone();
        }
        let k = key(user);
        if k.contains('@') {
            return k;
        }
        format!("{k}@members.example")
    }
}

// ---------------------------------------------------------------------------------------------
// The demo generator.

pub(super) const AITRONOS_ORG: &str = "org_acme";
#[cfg(test)]
pub(super) const REASON: &str = "reorg 2026-11";
#[cfg(test)]
pub(super) const REQUESTED_BY: &str = "it-ops@acme.example";

/// What a demo row is meant to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A member: ends removed.
    Member,
    /// Well-formed, but not a member: ends already absent.
    NonMember,
    /// The Cognee tenant owner: ends failed (400).
    Owner,
    /// Refused by validation.
    Bad,
    /// An exact copy of an earlier row.
    Duplicate,
}

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) provider: String,
    pub(super) user: String,
    pub(super) organization: String,
    pub(super) transfer_to: String,
    pub(super) job_id: String,
    pub(super) role: Role,
    pub(super) email: Option<String>,
}

#[derive(Clone, Copy)]
enum Tag {
    Aitronos = 2,
    Telnyx = 3,
    Aerospike = 4,
    Cognee = 5,
    Tenant = 6,
    BulkAitronos = 7,
    BulkTelnyx = 8,
    BulkAerospike = 9,
    BulkCognee = 10,
}

const FIRST: [&str; 20] = [
    "ava", "ben", "chloe", "daniel", "elena", "felix", "grace", "hugo", "isla", "jonas", "kira",
    "liam", "maya", "noah", "olivia", "pablo", "quinn", "rosa", "samir", "tara",
];
const LAST: [&str; 20] = [
    "anderson", "brooks", "castillo", "dubois", "eriksen", "fischer", "garcia", "hoffmann", "ito",
    "jensen", "kowalski", "larsen", "moreau", "nakamura", "okafor", "patel", "quintero", "rossi",
    "schmidt", "tanaka",
];
const DEPARTMENTS: [&str; 4] = ["dept_eng001", "dept_platform", "dept_sales02", "dept_ops"];

/// Members per provider in the CSV (each provider also has one non-member row).
const PER_PROVIDER: u64 = 58;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A random-looking but fixed v4 UUID for (tag, index).
fn uuid_for(tag: Tag, i: u64) -> String {
    let hi = splitmix(((tag as u64) << 32) | i);
    let lo = splitmix(hi ^ 0x5151_5151);
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn aitronos_id(i: u64) -> String {
    usr_id(Tag::Aitronos, i)
}

/// `usr_` and 12 base-36 characters, fixed for (tag, index).
fn usr_id(tag: Tag, i: u64) -> String {
    format!("usr_{}", base36(splitmix(((tag as u64) << 32) | i), 12))
}

/// The last `len` base-36 digits of `x`, least significant first.
pub(super) fn base36(mut x: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect()
}

fn email(i: u64) -> String {
    let first = FIRST[(i % 20) as usize];
    let last = LAST[((i + 7 * (i / 20)) % 20) as usize];
    format!("{first}.{last}@acme.example")
}

fn cognee_tenant() -> String {
    uuid_for(Tag::Tenant, 0)
}
fn cognee_other_tenant() -> String {
    uuid_for(Tag::Tenant, 1)
}
/// A Cognee user who exists, but in the other tenant only.
fn cognee_elsewhere() -> String {
    uuid_for(Tag::Cognee, 9_002)
}

/// Every row of `examples/reorg.csv`, in file order.
pub(super) fn demo_rows() -> Vec<Row> {
    let row =
        |provider: &str, user: String, organization: &str, role: Role, email: Option<String>| Row {
            provider: provider.to_owned(),
            user,
            organization: organization.to_owned(),
            transfer_to: String::new(),
            job_id: String::new(),
            role,
            email,
        };
    let tenant = cognee_tenant();
    let mut lanes: Vec<Vec<Row>> = Vec::new();
    for kind in ProviderKind::ALL {
        let mut lane = Vec::new();
        for i in 0..PER_PROVIDER {
            let mail = email(i);
            let r = match kind {
                ProviderKind::Factory => row("factory", mail, "", Role::Member, None),
                ProviderKind::Aitronos => {
                    let mut r = row(
                        "aitronos",
                        aitronos_id(i),
                        AITRONOS_ORG,
                        Role::Member,
                        Some(mail),
                    );
                    if i % 4 == 1 {
                        r.transfer_to = DEPARTMENTS[(i / 4 % 4) as usize].to_owned();
                    }
                    r
                }
                ProviderKind::Telnyx => row(
                    "telnyx",
                    uuid_for(Tag::Telnyx, i),
                    "",
                    Role::Member,
                    Some(mail),
                ),
                ProviderKind::Aerospike => row(
                    "aerospike",
                    uuid_for(Tag::Aerospike, i),
                    "",
                    Role::Member,
                    Some(mail),
                ),
                ProviderKind::Cognee => row(
                    "cognee",
                    uuid_for(Tag::Cognee, i),
                    &tenant,
                    Role::Member,
                    Some(mail),
                ),
            };
            lane.push(r);
        }
        // One row per provider whose user is not (or no longer) a member.
        let (at, absent) = match kind {
            ProviderKind::Factory => (11, row("factory", email(64), "", Role::NonMember, None)),
            ProviderKind::Aitronos => (
                23,
                row(
                    "aitronos",
                    aitronos_id(1_000),
                    AITRONOS_ORG,
                    Role::NonMember,
                    Some(email(65)),
                ),
            ),
            ProviderKind::Telnyx => (
                35,
                row(
                    "telnyx",
                    uuid_for(Tag::Telnyx, 1_000),
                    "",
                    Role::NonMember,
                    Some(email(66)),
                ),
            ),
            ProviderKind::Aerospike => (
                47,
                row(
                    "aerospike",
                    uuid_for(Tag::Aerospike, 1_000),
                    "",
                    Role::NonMember,
                    Some(email(67)),
                ),
            ),
            ProviderKind::Cognee => (
                52,
                row(
                    "cognee",
                    cognee_elsewhere(),
                    &tenant,
                    Role::NonMember,
                    Some(email(68)),
                ),
            ),
        };
        lane.insert(at, absent);
        if kind == ProviderKind::Cognee {
            lane.insert(
                30,
                row(
                    "cognee",
                    uuid_for(Tag::Cognee, 9_000),
                    &tenant,
                    Role::Owner,
                    Some(email(69)),
                ),
            );
        }
        lanes.push(lane);
    }
    // Interleave the providers, as a reorg spreadsheet sorted by person would.
    let mut rows = Vec::new();
    let longest = lanes.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for lane in &lanes {
            if let Some(r) = lane.get(i) {
                rows.push(r.clone());
            }
        }
    }
    // Deliberately bad rows.
    let bad = [
        (40, row("slack", email(3), "", Role::Bad, None)),
        (
            95,
            row("factory", "jonas.jensen".to_owned(), "", Role::Bad, None),
        ),
        (
            150,
            row(
                "aitronos",
                "k3j9x2m4q8w1".to_owned(),
                AITRONOS_ORG,
                Role::Bad,
                None,
            ),
        ),
        (
            210,
            row("cognee", uuid_for(Tag::Cognee, 2_000), "", Role::Bad, None),
        ),
    ];
    for (at, r) in bad {
        rows.insert(at, r);
    }
    for (n, r) in rows.iter_mut().enumerate() {
        r.job_id = format!("reorg-2611-{:04}", n + 1);
    }
    let mut dup = rows[30].clone();
    assert_eq!(dup.role, Role::Member);
    dup.role = Role::Duplicate;
    rows.insert(260, dup);
    rows
}

/// The text of `examples/reorg.csv`.
#[cfg(test)]
pub(super) fn demo_csv() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // The columns of a removal due now: the demo schedules nothing.
    w.write_record(&crate::doors::csv::COLUMNS[..7])
        .expect("write to memory");
    for r in demo_rows() {
        w.write_record([
            r.provider.as_str(),
            &r.user,
            &r.organization,
            &r.transfer_to,
            &r.job_id,
            REASON,
            REQUESTED_BY,
        ])
        .expect("write to memory");
    }
    String::from_utf8(w.into_inner().expect("flush to memory")).expect("utf-8")
}

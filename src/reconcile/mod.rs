//! Who still has access who should not: every member of every organization sorted against a
//! roster of the people who should keep access. Pure: the member lists come from the lanes'
//! strict readers (`offboard reconcile` reads them), the roster from a CSV.
//!
//! A member is `protected` (it matches `safety.protected`, or its list marks it the owner: never
//! proposed), `kept` (on the roster: by email at any provider, or by the provider's own id at that
//! entry and organization), or an `orphan`. A roster that matches too few of an organization's
//! members looks like the wrong file, and is refused for it rather than trusted.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::providers::lookup::Member;
use crate::safety::Protected;

/// How a member stands against the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Kept,
    Orphan,
    Protected,
}

/// The people who should keep access.
#[derive(Debug, Default)]
pub struct Roster {
    emails: HashSet<String>,
    /// (entry, organization, user id), lowercased, for members known by id at one provider.
    ids: HashSet<(String, String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
}

impl Roster {
    /// Reads a roster CSV: `email` required on every row; optional `provider`, `organization`
    /// and `user` name a member known by id at one entry. A row without an email, or a header
    /// without the column, is refused naming the line.
    pub fn read(path: &Path) -> Result<Roster, RosterError> {
        let bad = |reason: String| RosterError::Bad {
            path: path.display().to_string(),
            reason,
        };
        // As the CSV door reads: lines end at LF (a CR before it is trimmed), so every error
        // names the file's true line.
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .terminator(csv::Terminator::Any(b'\n'))
            .flexible(true)
            .from_reader(text.as_slice());
        // The file's true line of a record, from its byte offset (the csv crate's own count is
        // that of the blank lines before it).
        let (mut seen, mut lines) = (0usize, 1u64);
        let mut line_at = |byte: usize| {
            // A record's position may be that of blank lines before it.
            let mut byte = byte.min(text.len());
            while byte < text.len() && matches!(text[byte], b'\n' | b'\r') {
                byte += 1;
            }
            if byte > seen {
                lines += text[seen..byte].iter().filter(|&&b| b == b'\n').count() as u64;
                seen = byte;
            }
            lines
        };
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| bad(format!("cannot read the header row: {e}")))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            .collect();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let email = column("email").ok_or_else(|| {
            bad(format!(
                "the header has no `email` column (found: {})",
                headers.join(", ")
            ))
        })?;
        for h in &headers {
            if !["email", "provider", "organization", "user"].contains(&h.as_str()) {
                return Err(bad(format!(
                    "the header has a column a roster does not have: `{h}` (it has: email, provider, organization, user)"
                )));
            }
        }
        let (provider, organization, user) =
            (column("provider"), column("organization"), column("user"));
        let mut roster = Roster::default();
        for record in reader.records() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let line = line_at(record.position().map_or(0, |p| p.byte() as usize));
            if record.iter().all(str::is_empty) {
                continue;
            }
            if record.len() != headers.len() {
                return Err(bad(format!(
                    "line {line}: {} fields where the header has {}",
                    record.len(),
                    headers.len()
                )));
            }
            let get = |i: Option<usize>| {
                i.and_then(|i| record.get(i))
                    .map(|v| v.trim().to_lowercase())
                    .filter(|v| !v.is_empty())
            };
            let Some(e) = get(Some(email)).filter(|e| e.contains('@')) else {
                return Err(bad(format!(
                    "line {line}: `email` is empty or not an email address"
                )));
            };
            roster.emails.insert(e);
            if let (Some(p), Some(u)) = (get(provider), get(user)) {
                roster
                    .ids
                    .insert((p, get(organization).unwrap_or_default(), u));
            }
        }
        Ok(roster)
    }

    /// A roster of these people, by email (the SCIM store's active users): anything that is not
    /// an email address names nobody here.
    pub fn of_emails(emails: impl IntoIterator<Item = String>) -> Roster {
        Roster {
            emails: emails
                .into_iter()
                .map(|e| e.trim().to_lowercase())
                .filter(|e| e.contains('@'))
                .collect(),
            ids: HashSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.emails.is_empty()
    }

    /// How `member` of `entry`'s `organization` stands.
    pub fn classify(
        &self,
        protected: &Protected,
        entry: &str,
        organization: Option<&str>,
        member: &Member,
    ) -> Class {
        if member.owner
            || protected.matches(&member.email).is_some()
            || protected.matches(&member.id).is_some()
        {
            return Class::Protected;
        }
        let email = member.email.trim().to_lowercase();
        let id = (
            entry.to_lowercase(),
            organization.unwrap_or_default().to_lowercase(),
            member.id.to_lowercase(),
        );
        if self.emails.contains(&email) || self.ids.contains(&id) {
            Class::Kept
        } else {
            Class::Orphan
        }
    }
}

/// One organization's members sorted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub kept: u64,
    pub orphan: u64,
    pub protected: u64,
}

impl Counts {
    pub fn add(&mut self, class: Class) {
        match class {
            Class::Kept => self.kept += 1,
            Class::Orphan => self.orphan += 1,
            Class::Protected => self.protected += 1,
        }
    }

    /// Why the roster looks wrong for this organization, if it does: it matches fewer than
    /// `min_match` of the members it could match (all but the protected).
    pub fn doubt(&self, min_match: f64) -> Option<String> {
        let could = self.kept + self.orphan;
        if could == 0 {
            return None;
        }
        let share = self.kept as f64 / could as f64;
        (share < min_match).then(|| {
            format!(
                "the roster matches {} of its {could} members ({:.0}%), under reconcile.min_match ({:.0}%): is it this company's roster?",
                self.kept,
                share * 100.0,
                min_match * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(text: &str) -> Result<Roster, RosterError> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        Roster::read(f.path())
    }

    #[test]
    fn members_are_kept_by_email_or_by_id_protected_before_anything_else_else_orphans() {
        let r = roster(
            "email,provider,organization,user\nAda@Acme.example,,,\nbo@acme.example,aitronos,org_acme,usr_bo\n",
        )
        .unwrap();
        let protected = Protected::new(&["svc-*@acme.example".to_owned()]).unwrap();
        let m = |id: &str, email: &str| Member::new(id.into(), email.into());
        let c = |entry, org, member: &Member| r.classify(&protected, entry, org, member);
        assert_eq!(
            c("factory", None, &m("ada@acme.example", "ada@acme.example")),
            Class::Kept
        );
        assert_eq!(
            c(
                "aitronos",
                Some("org_acme"),
                &m("usr_bo", "other@acme.example")
            ),
            Class::Kept,
            "by id at that entry and organization"
        );
        assert_eq!(
            c(
                "aitronos",
                Some("org_else"),
                &m("usr_bo", "other@acme.example")
            ),
            Class::Orphan,
            "the id names one organization"
        );
        assert_eq!(
            c("telnyx", None, &m("x1", "svc-ci@acme.example")),
            Class::Protected
        );
        let mut owner = m("x2", "ada@acme.example");
        owner.owner = true;
        assert_eq!(c("telnyx", None, &owner), Class::Protected);
        assert_eq!(
            c("telnyx", None, &m("x3", "eve@acme.example")),
            Class::Orphan
        );
    }

    #[test]
    fn a_roster_without_emails_or_with_other_columns_is_refused_naming_what() {
        let e = roster("name\nAda\n").unwrap_err().to_string();
        assert!(e.contains("no `email` column"), "{e}");
        let e = roster("email,department\na@b.co,it\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`department`"), "{e}");
        let e = roster("email\na@b.co\n\nnot-an-email\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4"), "{e}");
        assert!(roster("email\n").unwrap().is_empty());
    }

    #[test]
    fn a_roster_matching_too_few_members_is_doubted() {
        let mut c = Counts::default();
        for _ in 0..193 {
            c.add(Class::Kept);
        }
        for _ in 0..7 {
            c.add(Class::Orphan);
        }
        c.add(Class::Protected);
        assert_eq!(c.doubt(0.5), None);
        let other = Counts {
            kept: 3,
            orphan: 197,
            protected: 1,
        };
        let why = other.doubt(0.5).unwrap();
        assert!(why.contains("3 of its 200 members (2%)"), "{why}");
        assert_eq!(Counts::default().doubt(0.5), None);
    }
}

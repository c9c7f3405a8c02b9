//! Member lists and searches: what every adapter's strict reader produces, and the shared part
//! that pages and counts. Each adapter reads its own page's shape in its own file (which wrapper,
//! which fields, which record is a member); nothing here decides what a record is.
//!
//! A list is evidence only when it is read exactly as its page promises: every record with its id
//! and its email, every page once, the count agreeing with the total the answer states, and a
//! whole list never empty (an organization has at least its owner, and the member our credential
//! belongs to). Anything else is [`Unreadable`], a failure with the provider's words, never an
//! absence. Matching an email is ours, exact and case-insensitive.

use std::collections::HashSet;

/// One member as a search or list answer shows it: the id the removal takes, and the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub email: String,
    /// The page marks this member as the organization's owner (Telnyx's `organization_owner`,
    /// Aerospike's `OrgOwner`): never removed.
    pub owner: bool,
}

impl Member {
    pub fn new(id: String, email: String) -> Member {
        Member {
            id,
            email,
            owner: false,
        }
    }
}

/// Where a list read stands: the page index from 0, and the provider's own continuation (a
/// cursor, an offset) when it gives one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub page: u32,
    pub token: Option<String>,
}

impl Cursor {
    /// The page after this one, continuing at `token`.
    pub fn next(&self, token: Option<String>) -> Cursor {
        Cursor {
            page: self.page + 1,
            token,
        }
    }

    /// The continuation as a number (an offset or a skip), 0 on the first page.
    pub fn offset(&self) -> u64 {
        self.token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }
}

/// One page of a search or list answer, read strictly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// Where the next page starts, if the answer says another follows.
    pub next: Option<Cursor>,
    /// How many members the whole list (or search) holds, where the answer says so.
    pub total: Option<u64>,
}

/// Why an answer in a 2xx cannot be read as a member list: the words name the field or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl Unreadable {
    pub fn new(words: impl Into<String>) -> Unreadable {
        Unreadable(words.into())
    }
}

/// The most pages one list read follows: reaching it leaves the list unread, never cut.
pub const MAX_PAGES: u32 = 100_000;

/// The body parsed as the page's own wrapper `T`, or why not (serde names the field and where).
pub fn parse<'b, T: serde::Deserialize<'b>>(body: &'b [u8]) -> Result<T, Unreadable> {
    serde_json::from_slice(body).map_err(|e| Unreadable(format!("not the documented shape: {e}")))
}

/// A record's required text field, or why the list is unreadable: `what` is the record's place
/// (`users[3]`), `field` the page's name for it.
pub fn required(value: Option<String>, what: &str, field: &str) -> Result<String, Unreadable> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(Unreadable(format!("{what} has an empty `{field}`"))),
        None => Err(Unreadable(format!("{what} has no `{field}`"))),
    }
}

/// A member from a record's id (the page's `id_field`, the one the removal takes) and email,
/// both required; `what` is the record's place (`users[3]`).
pub fn member(
    what: &str,
    (id, id_field): (Option<String>, &str),
    email: Option<String>,
) -> Result<Member, Unreadable> {
    Ok(Member::new(
        required(id, what, id_field)?,
        required(email, what, "email")?,
    ))
}

/// The members of one list read, page by page, and the proof that the read is complete.
#[derive(Debug)]
pub struct Collect {
    members: Vec<Member>,
    ids: HashSet<String>,
    /// The total the first page stated; every later page must state the same.
    total: Option<u64>,
    pages: u32,
    /// A whole list (not a search): an empty one proves nothing.
    whole: bool,
}

impl Collect {
    /// A read of the whole list (`whole`) or of a search's answers.
    pub fn new(whole: bool) -> Collect {
        Collect {
            members: Vec::new(),
            ids: HashSet::new(),
            total: None,
            pages: 0,
            whole,
        }
    }

    /// Adds one page: `Ok(Some(cursor))` to read next, `Ok(None)` once the read is complete and
    /// proven so, `Err` when what was read cannot be proof (a member seen twice, a total that
    /// changes or disagrees with the count, the page cap, an empty whole list).
    pub fn add(&mut self, page: MemberPage) -> Result<Option<Cursor>, Unreadable> {
        self.pages += 1;
        let at = self.pages;
        match (self.total, page.total) {
            (Some(was), Some(now)) if was != now => {
                return Err(Unreadable(format!(
                    "the list's total changed from {was} to {now} while it was read (page {at}): it cannot be proven complete"
                )));
            }
            (None, Some(now)) => self.total = Some(now),
            _ => {}
        }
        for m in page.members {
            if !self.ids.insert(m.id.to_ascii_lowercase()) {
                return Err(Unreadable(format!(
                    "member {} appears twice (page {at}): the server did not page as asked, so the list cannot be proven complete",
                    m.id
                )));
            }
            self.members.push(m);
        }
        let read = self.members.len() as u64;
        if let Some(total) = self.total {
            if read > total {
                return Err(Unreadable(format!(
                    "{read} members read, more than the total of {total} the answer states"
                )));
            }
        }
        match page.next {
            Some(_) if self.pages >= MAX_PAGES => Err(Unreadable(format!(
                "the list goes on past {MAX_PAGES} pages: it is not read to the end"
            ))),
            Some(next) => Ok(Some(next)),
            None => {
                if let Some(total) = self.total.filter(|t| *t != read) {
                    return Err(Unreadable(format!(
                        "the list ended after {read} members, but the answer states a total of {total}"
                    )));
                }
                if self.whole && read == 0 {
                    return Err(Unreadable::new(
                        "the whole member list is empty, which no organization is (it has at least its owner and the member our credential belongs to): wrong base URL or organization?",
                    ));
                }
                Ok(None)
            }
        }
    }

    /// The members read.
    pub fn into_members(self) -> Vec<Member> {
        self.members
    }
}

/// What an email resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one member has this email: its id, and whether the page marks it the owner.
    Found { id: String, owner: bool },
    /// No member has exactly this email.
    NoMember,
    /// Several members have exactly this email: nothing may be removed.
    Ambiguous(Vec<String>),
}

/// Exact, case-insensitive matching over the members seen.
pub fn resolve<'a>(email: &str, members: impl IntoIterator<Item = &'a Member>) -> Resolution {
    let email = email.trim();
    let mut found: Vec<&Member> = members
        .into_iter()
        .filter(|m| m.email.trim().eq_ignore_ascii_case(email))
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    match found.as_slice() {
        [] => Resolution::NoMember,
        [m] => Resolution::Found {
            id: m.id.clone(),
            owner: m.owner,
        },
        many => Resolution::Ambiguous(many.iter().map(|m| m.id.clone()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, email: &str) -> Member {
        Member::new(id.into(), email.into())
    }

    fn page(ids: &[&str], more: bool, total: Option<u64>) -> MemberPage {
        MemberPage {
            members: ids.iter().map(|i| m(i, &format!("{i}@x.z"))).collect(),
            next: more.then(|| Cursor::default().next(None)),
            total,
        }
    }

    #[test]
    fn a_page_read_again_makes_the_list_unreadable() {
        let mut all = Collect::new(true);
        assert!(all.add(page(&["a", "b"], true, None)).unwrap().is_some());
        assert!(all.add(page(&["c"], true, None)).unwrap().is_some());
        // The server ignored the offset: the first page again.
        let e = all.add(page(&["a", "b"], true, None)).unwrap_err();
        assert!(e.0.contains("member a appears twice"), "{e}");
    }

    #[test]
    fn the_count_must_agree_with_the_stated_total() {
        let mut short = Collect::new(true);
        short.add(page(&["a", "b"], true, Some(5))).unwrap();
        let e = short.add(page(&["c"], false, Some(5))).unwrap_err();
        assert!(e.0.contains("total of 5"), "{e}");

        let mut changed = Collect::new(true);
        changed.add(page(&["a", "b"], true, Some(4))).unwrap();
        let e = changed.add(page(&["c"], true, Some(3))).unwrap_err();
        assert!(e.0.contains("changed from 4 to 3"), "{e}");

        let mut over = Collect::new(true);
        let e = over.add(page(&["a", "b"], true, Some(1))).unwrap_err();
        assert!(e.0.contains("more than the total"), "{e}");

        let mut ok = Collect::new(true);
        ok.add(page(&["a", "b"], true, Some(3))).unwrap();
        assert_eq!(ok.add(page(&["c"], false, Some(3))).unwrap(), None);
        assert_eq!(ok.into_members().len(), 3);
    }

    #[test]
    fn an_empty_whole_list_is_unreadable_an_empty_search_is_not() {
        let e = Collect::new(true)
            .add(page(&[], false, Some(0)))
            .unwrap_err();
        assert!(e.0.contains("empty"), "{e}");
        assert_eq!(Collect::new(false).add(page(&[], false, Some(0))), Ok(None));
    }

    #[test]
    fn the_page_cap_leaves_the_list_unread() {
        let mut all = Collect::new(true);
        all.pages = MAX_PAGES - 1;
        let e = all.add(page(&["a"], true, None)).unwrap_err();
        assert!(e.0.contains("past"), "{e}");
    }

    #[test]
    fn a_required_field_is_named_when_missing_or_empty() {
        assert_eq!(
            required(Some("x".into()), "users[0]", "email"),
            Ok("x".into())
        );
        let e = required(None, "users[3]", "email").unwrap_err();
        assert_eq!(e.0, "users[3] has no `email`");
        let e = required(Some(" ".into()), "data[1]", "id").unwrap_err();
        assert_eq!(e.0, "data[1] has an empty `id`");
    }

    #[test]
    fn only_an_exact_match_counts_whatever_the_case() {
        let mut owner = m("0", "boss@acme.example");
        owner.owner = true;
        let members = [
            m("1", "ann@acme.example"),
            m("2", "joann@acme.example"),
            m("3", "ann@acme.example.org"),
            owner,
        ];
        assert_eq!(
            resolve("Ann@Acme.Example", &members),
            Resolution::Found {
                id: "1".into(),
                owner: false
            }
        );
        assert_eq!(
            resolve("boss@acme.example", &members),
            Resolution::Found {
                id: "0".into(),
                owner: true
            }
        );
        assert_eq!(
            resolve("nobody@acme.example", &members),
            Resolution::NoMember
        );
        let twice = [m("1", "ann@acme.example"), m("9", "ANN@acme.example")];
        assert_eq!(
            resolve("ann@acme.example", &twice),
            Resolution::Ambiguous(vec!["1".into(), "9".into()])
        );
        // The same member seen twice is one member.
        let same = [m("1", "ann@acme.example"), m("1", "ann@acme.example")];
        assert!(matches!(
            resolve("ann@acme.example", &same),
            Resolution::Found { .. }
        ));
    }
}

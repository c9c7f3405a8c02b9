//! Member lists and searches: the shared part of the providers' list endpoints. Each adapter builds
//! its own request and knows its own shape and paging; reading members and matching an email are
//! shared here. Matching is ours, exact and case-insensitive, because every provider's search
//! matches partially.

use serde::Deserialize;

/// One member as a search or list answer shows it: the id the removal takes, and the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub email: String,
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
}

/// One page of a search or list answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// Where the next page starts, if the answer says another follows.
    pub next: Option<Cursor>,
}

/// The most pages one list read follows: a guard against an API that never says "last page".
pub const MAX_PAGES: u32 = 100_000;

/// Adds one page to the members read so far and says where to read next, if anywhere. A page
/// whose first member was already read is the same page again (a server ignoring the paging it
/// was asked for): it ends the read instead of looping or counting anyone twice.
pub fn extend(members: &mut Vec<Member>, page: MemberPage) -> Option<Cursor> {
    if let Some(first) = page.members.first() {
        if members.iter().any(|m| m.id == first.id) {
            return None;
        }
    }
    members.extend(page.members);
    page.next.filter(|n| n.page < MAX_PAGES)
}

/// What an email resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Found(String),
    /// No member has exactly this email: the person is not (or no longer) a member.
    NoMember,
    /// Several members have exactly this email: nothing may be removed.
    Ambiguous(Vec<String>),
}

/// Exact, case-insensitive matching over the members seen.
pub fn resolve<'a>(email: &str, members: impl IntoIterator<Item = &'a Member>) -> Resolution {
    let email = email.trim();
    let mut ids: Vec<String> = members
        .into_iter()
        .filter(|m| m.email.trim().eq_ignore_ascii_case(email))
        .map(|m| m.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Resolution::NoMember,
        1 => Resolution::Found(ids.pop().expect("one")),
        _ => Resolution::Ambiguous(ids),
    }
}

/// Which field of a member record holds the id the removal takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdField {
    /// `id` (Telnyx, Aerospike, Cognee, Factory).
    Id,
    /// `user_id`: Aitronos lists `id` (the membership, `orguser_*`) beside `user_id` (`usr_*`).
    UserId,
}

/// A member in any of the pages' shapes. Both id fields are read, so a record holding both (as
/// Aitronos' documented search answer does) is not refused as a duplicate field; every other field
/// (names, roles, dates) is skipped without being kept.
#[derive(Deserialize)]
pub(super) struct AnyMember {
    #[serde(default)]
    id: Option<IdText>,
    #[serde(default)]
    user_id: Option<IdText>,
    #[serde(default)]
    email: Option<String>,
}

/// An id as the pages write it: a string, or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdText {
    Text(String),
    Number(serde_json::Number),
}

/// An id as text, when it is one.
fn id_text(v: Option<IdText>) -> Option<String> {
    match v? {
        IdText::Text(s) if !s.trim().is_empty() => Some(s),
        IdText::Text(_) => None,
        IdText::Number(n) => Some(n.to_string()),
    }
}

/// The members with an email. None when a member with an email has no id in `field`: such a list
/// cannot prove anyone absent, so it is unreadable rather than quietly short.
pub(super) fn members(list: Vec<AnyMember>, field: IdField) -> Option<Vec<Member>> {
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let Some(email) = m.email.filter(|e| !e.trim().is_empty()) else {
            continue;
        };
        let id = match field {
            IdField::Id => id_text(m.id),
            IdField::UserId => id_text(m.user_id),
        }?;
        out.push(Member { id, email });
    }
    Some(out)
}

/// A list answer: a bare array, or an object holding it under `members`, `users` or `data`, with
/// whatever paging fields the page documents. Fields are kept apart (no serde aliases), so a body
/// that carries two of them is still read.
pub(super) enum AnyList {
    Bare(Vec<AnyMember>),
    Wrapped(Wrapped),
}

#[derive(Deserialize, Default)]
pub(super) struct Wrapped {
    #[serde(default)]
    pub members: Option<Vec<AnyMember>>,
    #[serde(default)]
    pub users: Option<Vec<AnyMember>>,
    #[serde(default)]
    pub data: Option<Vec<AnyMember>>,
    /// Aitronos' documented search answer.
    #[serde(default)]
    pub total_users_count: Option<u64>,
    /// Aitronos' other page.
    #[serde(default)]
    pub total: Option<u64>,
    /// Aerospike `{count, meta: {total, limit, offset}}`; Telnyx `meta: {total_pages, ...}`.
    #[serde(default)]
    pub meta: Option<Meta>,
    /// Factory `pagination: {hasMore, nextCursor}`.
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Deserialize, Default)]
pub(super) struct Meta {
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub total_pages: Option<u32>,
}

#[derive(Deserialize, Default)]
pub(super) struct Pagination {
    #[serde(default, rename = "hasMore")]
    pub has_more: Option<bool>,
    #[serde(default, rename = "nextCursor")]
    pub next_cursor: Option<String>,
}

impl AnyList {
    /// Reads the body by its first character, typed all the way down: an untagged enum would
    /// first copy the whole answer (megabytes for a large organization) into a generic tree.
    pub(super) fn read(body: &[u8]) -> Option<AnyList> {
        match body.iter().find(|b| !b.is_ascii_whitespace())? {
            b'[' => serde_json::from_slice(body).ok().map(AnyList::Bare),
            b'{' => serde_json::from_slice(body).ok().map(AnyList::Wrapped),
            _ => None,
        }
    }

    /// The list and the paging fields around it. None when the object holds no list at all.
    pub(super) fn split(self) -> Option<(Vec<AnyMember>, Wrapped)> {
        match self {
            AnyList::Bare(list) => Some((list, Wrapped::default())),
            AnyList::Wrapped(mut w) => {
                let list = w.members.take().or(w.users.take()).or(w.data.take())?;
                Some((list, w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, email: &str) -> Member {
        Member {
            id: id.into(),
            email: email.into(),
        }
    }

    #[test]
    fn a_page_read_again_ends_the_read() {
        let page = |ids: &[&str], more: bool| MemberPage {
            members: ids.iter().map(|i| m(i, &format!("{i}@x.z"))).collect(),
            next: more.then(|| Cursor::default().next(None)),
        };
        let mut all = Vec::new();
        assert!(extend(&mut all, page(&["a", "b"], true)).is_some());
        assert!(extend(&mut all, page(&["c"], true)).is_some());
        // The server ignored the offset: the first page again.
        assert!(extend(&mut all, page(&["a", "b"], true)).is_none());
        assert_eq!(all.len(), 3, "nobody counted twice");
        assert!(extend(&mut all, page(&["d"], false)).is_none());
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn only_an_exact_match_counts_whatever_the_case() {
        let members = [
            m("1", "ann@acme.example"),
            m("2", "joann@acme.example"),
            m("3", "ann@acme.example.org"),
        ];
        assert_eq!(
            resolve("Ann@Acme.Example", &members),
            Resolution::Found("1".into())
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
        // The same member seen on two pages is one member.
        let same = [m("1", "ann@acme.example"), m("1", "ann@acme.example")];
        assert_eq!(
            resolve("ann@acme.example", &same),
            Resolution::Found("1".into())
        );
    }

    #[test]
    fn both_id_fields_are_read_and_the_right_one_is_taken() {
        let body = br#"{"users":[{"id":"orguser_1","user_id":"usr_1","email":"x@y.z"}],"total_users_count":1}"#;
        let (list, w) = AnyList::read(body).unwrap().split().unwrap();
        assert_eq!(w.total_users_count, Some(1));
        assert_eq!(
            members(list, IdField::UserId).unwrap(),
            vec![m("usr_1", "x@y.z")]
        );
        let (list, _) = AnyList::read(body).unwrap().split().unwrap();
        assert_eq!(
            members(list, IdField::Id).unwrap(),
            vec![m("orguser_1", "x@y.z")]
        );
        // A member with an email but without the id the removal takes: the list is unreadable.
        let (list, _) = AnyList::read(br#"{"members":[{"id":"orguser_1","email":"x@y.z"}]}"#)
            .unwrap()
            .split()
            .unwrap();
        assert_eq!(members(list, IdField::UserId), None);
    }

    #[test]
    fn lists_come_bare_or_wrapped() {
        let (list, _) = AnyList::read(br#"[{"id":"a","email":"x@y.z","role":"member"}]"#)
            .unwrap()
            .split()
            .unwrap();
        assert_eq!(members(list, IdField::Id).unwrap(), vec![m("a", "x@y.z")]);
        let (list, w) = AnyList::read(
            br#"{"count":1,"meta":{"total":3,"limit":1,"offset":0},"members":[{"id":"a","email":"x@y.z"}]}"#,
        )
        .unwrap()
        .split()
        .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(w.meta.unwrap().total, Some(3));
        assert!(AnyList::read(b"not json").is_none());
        assert!(
            AnyList::read(br#"{"detail":"Not Found"}"#)
                .unwrap()
                .split()
                .is_none(),
            "an error body is not an empty list"
        );
    }
}

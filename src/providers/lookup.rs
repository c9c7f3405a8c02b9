//! Finding a member's id from an email: the shared part of the providers' member search and list
//! endpoints. Each adapter builds its own request and reads its own page; matching is ours, exact and
//! case-insensitive, because every provider's search matches partially.

use serde::Deserialize;

/// One member as a search or list answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub email: String,
}

/// One page of a search or list answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// Whether another page follows.
    pub more: bool,
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

/// A member in any of the shapes the pages use: `id` or `user_id`, and `email`.
#[derive(Deserialize)]
pub(super) struct AnyMember {
    #[serde(default, alias = "user_id")]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl AnyMember {
    fn member(self) -> Option<Member> {
        Some(Member {
            id: self.id?,
            email: self.email?,
        })
    }
}

/// A list answer: a bare array, or an object holding it under `members`, `users` or `data`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum AnyList {
    Bare(Vec<AnyMember>),
    Wrapped {
        #[serde(alias = "users", alias = "data")]
        members: Vec<AnyMember>,
    },
}

impl AnyList {
    pub(super) fn members(self) -> Vec<Member> {
        let list = match self {
            AnyList::Bare(l) | AnyList::Wrapped { members: l } => l,
        };
        list.into_iter().filter_map(AnyMember::member).collect()
    }
}

/// Reads a list answer that has no paging (Aerospike, Cognee).
pub(super) fn read_whole_list(body: &[u8]) -> Option<MemberPage> {
    let list: AnyList = serde_json::from_slice(body).ok()?;
    Some(MemberPage {
        members: list.members(),
        more: false,
    })
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
    fn lists_come_bare_or_wrapped_with_id_or_user_id() {
        let bare = read_whole_list(br#"[{"id":"a","email":"x@y.z","role":"member"}]"#).unwrap();
        assert_eq!(bare.members, vec![m("a", "x@y.z")]);
        let wrapped =
            read_whole_list(br#"{"users":[{"user_id":"usr_1","email":"x@y.z"}],"total":1}"#)
                .unwrap();
        assert_eq!(wrapped.members, vec![m("usr_1", "x@y.z")]);
        assert!(read_whole_list(b"not json").is_none());
    }
}

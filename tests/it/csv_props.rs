//! Property tests of the CSV door: whatever rows IT writes, and however a spreadsheet quotes and
//! ends them, each row is read back as written, on its own line number, valid or named invalid.

use std::io::Write;

use offboard::doors::csv::{CsvFile, scan};
use offboard::job::{Directory, ProviderKind};
use proptest::prelude::*;

fn directory() -> Directory {
    Directory::new(ProviderKind::ALL.iter().map(|k| (k.as_str(), *k)))
}

/// A field as a spreadsheet might write it: quoted or not, padded with spaces or not.
fn write_field(out: &mut String, value: &str, quote: bool, pad: bool) {
    let needs = value.contains([',', '"', '\n']);
    if quote || needs {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        if pad {
            out.push(' ');
        }
        out.push_str(value);
        if pad {
            out.push(' ');
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    provider: String,
    user: String,
    organization: String,
    reason: String,
    valid: bool,
}

fn row() -> impl Strategy<Value = Row> {
    let good = prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8})?@[a-z]{1,8}\\.example".prop_map(|u| (
            "factory",
            u,
            String::new()
        )),
        ("[a-z0-9]{4,12}", "[a-z0-9]{2,6}").prop_map(|(u, o)| (
            "aitronos",
            format!("usr_{u}"),
            format!("org_{o}")
        )),
        "[a-f0-9-]{8,36}".prop_map(|u| ("telnyx", u, String::new())),
        any::<u128>().prop_map(|n| (
            "aerospike",
            uuid::Uuid::from_u128(n).to_string(),
            String::new()
        )),
        (any::<u128>(), any::<u128>()).prop_map(|(u, t)| (
            "cognee",
            uuid::Uuid::from_u128(u).to_string(),
            uuid::Uuid::from_u128(t).to_string()
        )),
    ]
    .prop_map(|(p, u, o)| (p.to_owned(), u, o, true));
    let bad = prop_oneof![
        "[a-z]{3,8}".prop_map(|u| ("factory".to_owned(), u, String::new(), false)),
        "[a-z0-9]{4,8}".prop_map(|u| ("aitronos".to_owned(), u, "org_x".to_owned(), false)),
        "[a-z]{3,8}".prop_map(|p| (
            format!("x{p}"),
            "a@b.example".to_owned(),
            String::new(),
            false
        )),
        Just((
            "aerospike".to_owned(),
            "not-a-uuid".to_owned(),
            String::new(),
            false
        )),
    ];
    (prop_oneof![4 => good, 1 => bad], "[ -~]{0,20}").prop_map(
        |((provider, user, organization, valid), reason)| Row {
            provider,
            user,
            organization,
            reason,
            valid,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rows_read_back_on_their_lines(rows in proptest::collection::vec(row(), 1..40), crlf: bool, bom: bool, quote_all: bool, pad: bool) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        if bom { text.push('\u{feff}'); }
        text.push_str("reason,organization,user,provider");
        text.push_str(eol);
        // Line numbers move with quoted newlines; track where each row starts.
        let mut line = 2u64;
        let mut starts = vec![];
        for r in &rows {
            starts.push(line);
            write_field(&mut text, &r.reason, quote_all, false);
            text.push(',');
            write_field(&mut text, &r.organization, quote_all, pad);
            text.push(',');
            write_field(&mut text, &r.user, quote_all, pad);
            text.push(',');
            write_field(&mut text, &r.provider, quote_all, pad);
            text.push_str(eol);
            line += 1 + r.reason.matches('\n').count() as u64;
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let csv = CsvFile::open(f.path()).unwrap();
        let mut invalid = vec![];
        let plan = scan(&csv, &directory(), 5, |r| invalid.push(r)).unwrap();
        prop_assert_eq!(plan.rows, rows.len() as u64);

        // Which rows should be invalid: the bad ones, and repeats of an earlier valid row.
        let mut seen = std::collections::HashSet::new();
        let mut want_invalid = vec![];
        for (r, start) in rows.iter().zip(&starts) {
            let key = (r.provider.clone(), r.organization.to_lowercase(), r.user.to_lowercase());
            if !r.valid || !seen.insert(key) {
                want_invalid.push(*start);
            }
        }
        let got: Vec<u64> = invalid.iter().map(|r| r.line).collect();
        prop_assert_eq!(&got, &want_invalid, "invalid rows by line");
        prop_assert_eq!(plan.removable() + plan.invalid, rows.len() as u64);
        for r in &invalid {
            let row = &rows[starts.iter().position(|s| *s == r.line).unwrap()];
            prop_assert_eq!(r.user.as_deref(), Some(row.user.as_str()), "fields trimmed and unquoted");
        }
    }
}

//! The README and the guide in `docs/` stay true to the tree: every relative link and anchor
//! resolves, every key of the example config is in the configuration reference, and no page speaks
//! of issue numbers a user never saw. Each check is a function over text, shown to fail on a
//! planted mistake.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README.md and every page of docs/, as (path from the root, text).
fn pages() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_owned(), read("README.md"))];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for p in docs {
        let rel = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
        out.push((rel.clone(), read(&rel)));
    }
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// A heading's anchor as GitHub (and most forges) make it: lowercase, punctuation dropped but `-`
/// and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter_map(|l| {
            let hashes = l.len() - l.trim_start_matches('#').len();
            (1..=6)
                .contains(&hashes)
                .then(|| l[hashes..].strip_prefix(' '))
                .flatten()
                .map(slug)
        })
        .collect()
}

/// Every `](target)` of a text outside code: inline links and images.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// Relative links whose file does not exist, or whose anchor is no heading there.
fn broken_links(
    pages: &[(String, String)],
    exists: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut broken = Vec::new();
    for (path, text) in pages {
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        for link in links(text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                path.clone()
            } else {
                normalize(&dir.join(file))
            };
            let Some(target_text) = exists(&target) else {
                broken.push(format!("{path}: ({link}): no file {target}"));
                continue;
            };
            if let Some(anchor) = anchor {
                if target.ends_with(".md") && !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{path}: ({link}): no heading #{anchor} in {target}"
                    ));
                }
            }
        }
    }
    broken
}

/// `docs/../README.md` → `README.md`.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// Every key of a TOML file as its dotted path, commented-out examples (`# key = …` under a
/// table, `# [table]`) included: a key the example shows only as a comment is still one a user
/// may set. `[providers.NAME]` tables are folded to `providers.NAME`; inline tables in an array
/// (`targets = [{ provider = "*" }]`) give `targets[].provider`.
fn config_keys(toml: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    for raw in toml.lines() {
        let line = raw.trim_start();
        let line = line.strip_prefix('#').map_or(line, str::trim_start);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            let name = name.0.trim();
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._-".contains(c))
            {
                table = match name.split_once('.') {
                    Some(("providers", _)) => "providers.NAME".to_owned(),
                    _ => name.to_owned(),
                };
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let path = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        let value = value.trim();
        if value.starts_with("[{") {
            for field in value.split(['{', ',']).filter_map(|f| f.split_once('=')) {
                let name = field.0.trim();
                if !name.is_empty() {
                    keys.insert(format!("{path}[].{name}"));
                }
            }
        }
        keys.insert(path);
    }
    keys
}

/// Keys of the config that the reference does not name in backticks.
fn undocumented(keys: &BTreeSet<String>, reference: &str) -> Vec<String> {
    keys.iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .cloned()
        .collect()
}

/// Lines that speak of an issue by number: "issue 7", "Issue 15:", "#12".
fn issue_numbers(pages: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in pages {
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let by_word = lower.match_indices("issue").any(|(i, _)| {
                let rest = lower[i + 5..].trim_start_matches('s').trim_start();
                rest.starts_with(|c: char| c.is_ascii_digit())
                    || rest.starts_with('#')
                    || rest.starts_with("no.")
            });
            let by_hash = lower.match_indices('#').any(|(i, _)| {
                let before = lower[..i].chars().last();
                let after = lower[i + 1..].chars().next();
                // `#12` in running text; not an anchor (`(#x)`) or a heading.
                before.is_none_or(|c| c == ' ' || c == '(')
                    && after.is_some_and(|c| c.is_ascii_digit())
            });
            if by_word || by_hash {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

fn on_disk(rel: &str) -> Option<String> {
    let p = Path::new(ROOT).join(rel);
    if p.is_dir() {
        return Some(String::new());
    }
    std::fs::read_to_string(&p)
        .ok()
        .or_else(|| p.exists().then(String::new))
}

#[test]
fn every_relative_link_and_anchor_of_the_guide_resolves() {
    let pages = pages();
    assert!(pages.len() > 10, "the guide's pages were not found");
    let broken = broken_links(&pages, on_disk);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_key_of_the_example_config_is_in_the_reference() {
    let keys = config_keys(&read("config/offboard.example.toml"));
    for expected in [
        "providers.NAME.rate_per_second",
        "amqp.url",
        "intake.targets[].provider",
        "intake.scim.database",
    ] {
        assert!(keys.contains(expected), "{expected} not read: {keys:?}");
    }
    let missing = undocumented(&keys, &read("docs/configuration.md"));
    assert!(
        missing.is_empty(),
        "keys of config/offboard.example.toml not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn no_page_speaks_of_issue_numbers() {
    let found = issue_numbers(&pages());
    assert!(found.is_empty(), "issue numbers:\n{}", found.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_file_and_a_missing_anchor() {
    let pages = vec![
        (
            "README.md".to_owned(),
            "# Top\n[a](docs/a.md) [b](docs/b.md) [c](docs/a.md#gone) [d](#top) [e](https://x.example/y)\n```\n[f](nowhere.md)\n```\n".to_owned(),
        ),
        (
            "docs/a.md".to_owned(),
            "# A page, with (punctuation)!\n[up](../README.md#top) [self](#a-page-with-punctuation)\n".to_owned(),
        ),
    ];
    let files = pages.clone();
    let exists = |p: &str| files.iter().find(|(f, _)| f == p).map(|(_, t)| t.clone());
    let broken = broken_links(&pages, exists);
    assert_eq!(broken.len(), 2, "{broken:#?}");
    assert!(broken[0].contains("no file docs/b.md"), "{broken:#?}");
    assert!(broken[1].contains("no heading #gone"), "{broken:#?}");
}

#[test]
fn the_key_check_finds_an_undocumented_key() {
    let toml = "[providers.factory]\nkind = \"factory\"\n# token_file = \"/x\"   # a note = not a key\n\n[intake]\n# listen = \"0.0.0.0:1\"\ntargets = [{ provider = \"*\", organization = \"o\" }]\n# [intake.okta]\n# header = \"Authorization\"\n";
    let keys = config_keys(toml);
    let want: BTreeSet<String> = [
        "providers.NAME.kind",
        "providers.NAME.token_file",
        "intake.listen",
        "intake.targets",
        "intake.targets[].provider",
        "intake.targets[].organization",
        "intake.okta.header",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys, want);
    let reference = "`providers.NAME.kind` `intake.listen` `intake.targets` `intake.targets[].provider` `intake.targets[].organization` `intake.okta.header`";
    assert_eq!(
        undocumented(&keys, reference),
        ["providers.NAME.token_file"]
    );
}

#[test]
fn the_issue_check_finds_numbers_and_leaves_anchors_alone() {
    let pages = vec![(
        "docs/x.md".to_owned(),
        "Results against the targets of issue 7\n## Issue 15: pacing\nas asked in #12\nfine: [x](#section-2) and colour #fff and issues we know\n".to_owned(),
    )];
    let found = issue_numbers(&pages);
    assert_eq!(found.len(), 3, "{found:#?}");
}

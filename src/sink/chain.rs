//! A SHA-256 chain over a JSON Lines log, so an edited, removed or inserted line shows: every line
//! carries `"prev"`, the hash of the line before it as written, and the first line of a log is a
//! `chain` line whose `prev` is anchored to its run's id. The hash of the last line (the head) is
//! what a ticket records: a log whose head matches it has not been changed since.

use std::io::{self, BufRead};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The hash a log's first line links to: the run's id, hashed.
pub fn anchor(run: &str) -> [u8; 32] {
    Sha256::digest(format!("offboard-chain-v1:{run}").as_bytes()).into()
}

/// The hash of one line as written, without its newline.
pub fn hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line.strip_suffix(b"\n").unwrap_or(line)).into()
}

/// The chain as the writer extends it.
#[derive(Debug, Clone)]
pub struct Chain {
    prev: [u8; 32],
}

impl Chain {
    /// A chain after `prev` (the last line's hash, or a run's [`anchor`]).
    pub fn after(prev: [u8; 32]) -> Chain {
        Chain { prev }
    }

    /// The chain of the log at `path` continued by run `run`: after its last line, or anchored
    /// to `run` when the log is empty or new. The first line to write is then [`Chain::opening`].
    pub fn resume(path: &Path, run: &str) -> io::Result<Chain> {
        let last = match std::fs::File::open(path) {
            Ok(f) => io::BufReader::new(f)
                .split(b'\n')
                .filter_map(|l| l.ok())
                .filter(|l| !l.is_empty())
                .last(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Chain::after(match last {
            Some(line) => hash(&line),
            None => anchor(run),
        }))
    }

    /// The line a run writes first: its id, so the anchor of a new log can be checked.
    pub fn opening(run: &str, time: &str) -> Vec<u8> {
        let mut v =
            serde_json::to_vec(&serde_json::json!({"kind": "chain", "run": run, "time": time}))
                .expect("serializable");
        v.push(b'\n');
        v
    }

    /// `line` (one JSON object and its newline) with `"prev"` put first, and the chain moved on
    /// past it.
    pub fn link(&mut self, line: &[u8]) -> Vec<u8> {
        let body = line.strip_prefix(b"{").unwrap_or(line);
        let mut out = Vec::with_capacity(line.len() + 76);
        out.extend_from_slice(b"{\"prev\":\"");
        out.extend_from_slice(hex::encode(self.prev).as_bytes());
        out.extend_from_slice(if body.starts_with(b"}") {
            b"\""
        } else {
            b"\","
        });
        out.extend_from_slice(body);
        self.prev = hash(&out);
        out
    }

    /// The hash of the last line linked: the log's head.
    pub fn head(&self) -> String {
        hex::encode(self.prev)
    }
}

/// What the chain of a log says: its head, and the lines written before the chain began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub head: String,
    /// Lines before the first chained one (logs of versions before the chain).
    pub unchained: u64,
}

/// Checks the chain of a log's lines (numbered from 1): every chained line's `prev` is the hash of
/// the line before it, and a log whose first line is chained starts with a `chain` line anchored
/// to its run. `Err` names the first line that does not fit, and why.
pub fn check(lines: &[(u64, Vec<u8>)]) -> Result<Checked, (u64, String)> {
    #[derive(serde::Deserialize)]
    struct Linked {
        prev: Option<String>,
        kind: Option<String>,
        run: Option<String>,
    }
    let mut before: Option<&[u8]> = None;
    let mut unchained = 0;
    let mut started = false;
    for (n, line) in lines {
        let linked: Option<Linked> = serde_json::from_slice(line).ok();
        let prev = linked.as_ref().and_then(|l| l.prev.clone());
        let Some(prev) = prev else {
            if started {
                return Err((
                    *n,
                    "it carries no `prev`: a line inserted after the chain began".into(),
                ));
            }
            unchained += 1;
            before = Some(line);
            continue;
        };
        let want = match before {
            Some(b) => hash(b),
            None => {
                let l = linked.as_ref().expect("has prev");
                match (&l.kind, &l.run) {
                    (Some(k), Some(run)) if k == "chain" => anchor(run),
                    _ => {
                        return Err((
                            *n,
                            "the log does not start with its run's `chain` line: lines before it were removed".into(),
                        ));
                    }
                }
            }
        };
        if prev != hex::encode(want) {
            return Err((
                *n,
                match before {
                    Some(_) => format!(
                        "its `prev` is not the hash of line {}: that line was changed, or lines between were removed or inserted",
                        n - 1
                    ),
                    None => "its `prev` is not its run's anchor: the first line was changed".into(),
                },
            ));
        }
        started = true;
        before = Some(line);
    }
    Ok(Checked {
        head: before.map(|b| hex::encode(hash(b))).unwrap_or_default(),
        unchained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<(u64, Vec<u8>)> {
        let mut chain = Chain::after(anchor("run-1"));
        let mut out = vec![(1, chain.link(&Chain::opening("run-1", "t0")))];
        for (i, l) in lines.iter().enumerate() {
            out.push((i as u64 + 2, chain.link(format!("{l}\n").as_bytes())));
        }
        for (_, l) in &mut out {
            l.pop(); // as a reader splits them
        }
        out
    }

    #[test]
    fn a_chain_checks_and_its_head_is_the_last_lines_hash() {
        let lines = log(&[
            r#"{"kind":"request","n":1}"#,
            r#"{"kind":"outcome","n":2}"#,
            "{}",
        ]);
        let checked = check(&lines).unwrap();
        assert_eq!(checked.head, hex::encode(hash(&lines[3].1)));
        assert_eq!(checked.unchained, 0);
        assert!(
            lines[1].1.starts_with(br#"{"prev":""#),
            "{}",
            String::from_utf8_lossy(&lines[1].1)
        );
        assert_eq!(
            &lines[3].1[lines[3].1.len() - 2..],
            b"\"}",
            "an empty object stays valid JSON"
        );
        for (_, l) in &lines {
            serde_json::from_slice::<serde_json::Value>(l).expect("each line is JSON");
        }
    }

    #[test]
    fn an_edited_removed_or_inserted_line_is_named() {
        let lines = log(&[r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
        let mut edited = lines.clone();
        edited[1].1 = String::from_utf8(edited[1].1.clone())
            .unwrap()
            .replace("\"n\":1", "\"n\":9")
            .into_bytes();
        assert_eq!(
            check(&edited).unwrap_err().0,
            3,
            "the line after the edited one"
        );
        let mut removed = lines.clone();
        removed.remove(2);
        assert_eq!(check(&removed).unwrap_err().0, 4);
        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert_eq!(check(&first_gone).unwrap_err().0, 2);
        let mut inserted = lines.clone();
        inserted.insert(2, (99, br#"{"n":5}"#.to_vec()));
        assert_eq!(check(&inserted).unwrap_err().0, 99);
    }
}

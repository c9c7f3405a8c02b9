//! `offboard verify`: proof for auditors that the people a report says are gone are gone.
//!
//! Reads the JSON Lines report of `offboard run` (or of the worker), takes each job's last line,
//! and for every job that ended `removed` or `already_absent` asks its provider, through the same
//! lanes as a run (preflight, pacing, retries, circuit), whether the person is still a member:
//! [`Lane::check_member`], read-only. Each answer goes to an evidence file, one JSON line per
//! person, written by a blocking task and fsynced before it takes its final name; the closing
//! table counts, per provider entry, who is gone, who is still there and who could not be checked.
//!
//! Nothing here builds a removal: a lane's only calls are list and search reads.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::lane::Lane;
use crate::lane::Lanes;
use crate::outcome::{Outcome, Timestamp};

/// Checks one lane runs at once at most (each still paced by the lane).
const MAX_CONCURRENT_CHECKS: u32 = 4;

/// Lines naming people who could not be checked, shown per provider entry; the rest are counted,
/// and every one is in the evidence file.
const UNCHECKED_SHOWN: usize = 100;

/// Why a report could not be verified. Each says it all in one line (no separate source, so
/// that `{:#}` does not repeat the cause).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("report {path}: {error}")]
    Report { path: PathBuf, error: io::Error },
    #[error("report {path}, line {line}: {what}")]
    BadLine {
        path: PathBuf,
        line: u64,
        what: String,
    },
    #[error(
        "report {path} names provider entries the config does not have: {names}; pass the config the run used"
    )]
    UnknownProvider { path: PathBuf, names: String },
    #[error("evidence {path}: {error}")]
    Evidence { path: PathBuf, error: io::Error },
}

/// One person a report says is gone: the job's last line, when it ended `removed` or
/// `already_absent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub job_id: String,
    /// The CSV line the job came from, if any.
    pub line: Option<u64>,
    /// The provider entry's name in the config.
    pub provider: String,
    pub organization: Option<String>,
    /// The user as the row gave it: an id or an email.
    pub user: String,
    /// The id the email was looked up to, when the row named an email.
    pub resolved_user: Option<String>,
    pub outcome: Outcome,
}

impl Person {
    /// Whom to ask the provider about, and whether that is an email: the id the lookup found
    /// where there is one, else the user as the row gave it.
    pub fn subject(&self) -> (&str, bool) {
        match &self.resolved_user {
            Some(id) => (id, false),
            None => (&self.user, self.user.contains('@')),
        }
    }
}

/// The fields of a report line that verification reads.
#[derive(serde::Deserialize)]
struct Line {
    job_id: String,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    resolved_user: Option<String>,
    outcome: Outcome,
}

/// Reads a report: the people to check, in the order of their job's last line. A report holds
/// several lines for a job after resumed runs or redeliveries: the last one counts. Every line
/// must be a report record; the first that is not ends the read, naming its line number.
pub fn read_report(path: &Path) -> Result<Vec<Person>, VerifyError> {
    let report_err = |error| VerifyError::Report {
        path: path.to_owned(),
        error,
    };
    let bad = |line: u64, what: String| VerifyError::BadLine {
        path: path.to_owned(),
        line,
        what,
    };
    let file = File::open(path).map_err(report_err)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    // job id -> (report line of its last record, the person to check if that record says gone)
    let mut last: HashMap<String, (u64, Option<Person>)> = HashMap::new();
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(report_err)? == 0 {
            break;
        }
        n += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| bad(n, "not UTF-8 text".into()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(text).map_err(|e| {
            // serde_json's words end "at line 1 column C": each report line is parsed alone.
            let words = e.to_string();
            let words = words.rsplit_once(" at line ").map_or(&*words, |(w, _)| w);
            let words = format!("{words}, column {}", e.column());
            match e.classify() {
                serde_json::error::Category::Data => {
                    bad(n, format!("not a report record ({words})"))
                }
                _ => bad(n, format!("not JSON ({words})")),
            }
        })?;
        let person = if l.outcome.is_done() {
            let missing = |field| {
                bad(
                    n,
                    format!("a `{}` record without {field}", l.outcome.as_str()),
                )
            };
            let provider = l.provider.clone().ok_or_else(|| missing("a provider"))?;
            let user = l.user.clone().ok_or_else(|| missing("a user"))?;
            Some(Person {
                job_id: l.job_id.clone(),
                line: l.line,
                provider,
                organization: l.organization,
                user,
                resolved_user: l.resolved_user,
                outcome: l.outcome,
            })
        } else {
            None
        };
        last.insert(l.job_id, (n, person));
    }
    let mut people: Vec<(u64, Person)> = last
        .into_values()
        .filter_map(|(n, p)| Some((n, p?)))
        .collect();
    people.sort_unstable_by_key(|(n, _)| *n);
    Ok(people.into_iter().map(|(_, p)| p).collect())
}

/// [`read_report`] on a blocking thread.
pub async fn read(path: &Path) -> Result<Vec<Person>, VerifyError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_report(&path))
        .await
        .expect("reading the report does not panic")
}

/// Refuses a report naming provider entries the config does not have (before anything is sent).
pub fn check_providers(report: &Path, people: &[Person], lanes: &Lanes) -> Result<(), VerifyError> {
    let mut unknown: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    for p in people {
        if lanes.directory.lookup(&p.provider).is_none() {
            unknown.entry(&p.provider).or_insert(p.line);
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unknown
        .iter()
        .map(|(name, line)| match line {
            Some(l) => format!("`{name}` (CSV line {l})"),
            None => format!("`{name}`"),
        })
        .collect();
    Err(VerifyError::UnknownProvider {
        path: report.to_owned(),
        names: names.join(", "),
    })
}

/// The default evidence file: beside the report, `<report stem>.verify.jsonl`.
pub fn default_evidence_path(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    report.with_file_name(format!("{stem}.verify.jsonl"))
}

/// One evidence line: what the provider said about one person, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub job_id: String,
    pub line: Option<u64>,
    pub provider: String,
    pub organization: Option<String>,
    /// The user as the report gives it.
    pub user: String,
    /// The id that was checked, where the row named an email that a lookup resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_user: Option<String>,
    pub checked_at: Timestamp,
    /// None when the provider could not be asked.
    pub still_member: Option<bool>,
    /// `member_list` or `search`.
    pub checked_by: Option<&'static str>,
    /// Why the check could not be made.
    pub error: Option<String>,
}

/// The evidence file being written: a `.partial` file beside it, renamed into place once every
/// line is written and fsynced, so a file under the final name is always whole.
pub struct EvidenceFile {
    path: PathBuf,
    partial: PathBuf,
    file: File,
}

impl EvidenceFile {
    /// Creates the file to write (blocking: call before any check, so a path that cannot be
    /// written is refused before anything is asked). Refuses to overwrite `report`.
    pub fn create(path: &Path, report: &Path) -> Result<EvidenceFile, VerifyError> {
        let same = path == report
            || matches!(
                (std::fs::canonicalize(path), std::fs::canonicalize(report)),
                (Ok(a), Ok(b)) if a == b
            );
        if same {
            return Err(VerifyError::Evidence {
                path: path.to_owned(),
                error: io::Error::other("this is the report itself: pass another --evidence"),
            });
        }
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file =
            crate::sink::report::private(File::options().write(true).create(true).truncate(true))
                .open(&partial)
                .map_err(|error| VerifyError::Evidence {
                    path: path.to_owned(),
                    error,
                })?;
        Ok(EvidenceFile {
            path: path.to_owned(),
            partial,
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes every line `rx` brings, then flushes, fsyncs and renames the file into place. On a
    /// write error it goes on draining `rx` (checks never wait on a dead writer), and answers the
    /// first error.
    fn write_all(self, mut rx: mpsc::Receiver<Evidence>) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(64 * 1024, self.file);
        let mut result = Ok(());
        while let Some(e) = rx.blocking_recv() {
            if result.is_ok() {
                result = serde_json::to_writer(&mut out, &e)
                    .map_err(io::Error::from)
                    .and_then(|_| out.write_all(b"\n"));
            }
        }
        result?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.partial, &self.path)?;
        // The rename itself is durable once the directory is synced (best effort: not every
        // platform opens a directory).
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Counts for one provider entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub checked: u64,
    pub still_member: u64,
    pub gone: u64,
    pub unchecked: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.checked += o.checked;
        self.still_member += o.still_member;
        self.gone += o.gone;
        self.unchecked += o.unchecked;
    }
}

/// What verification found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Per provider entry.
    pub counts: BTreeMap<String, Counts>,
    /// Every person still a member, by provider entry and CSV line.
    pub still: Vec<Evidence>,
    /// People who could not be checked, up to [`UNCHECKED_SHOWN`] per provider entry.
    pub unchecked: Vec<Evidence>,
    /// Where the evidence went, or why it could not be written.
    pub evidence: Option<PathBuf>,
    pub evidence_error: Option<VerifyError>,
}

impl Verified {
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.counts.values() {
            t.add(c);
        }
        t
    }

    /// Every person checked is confirmed gone, and the evidence is on disk.
    pub fn success(&self) -> bool {
        let t = self.total();
        t.still_member == 0 && t.unchecked == 0 && self.evidence_error.is_none()
    }

    fn merge(&mut self, o: Verified) {
        for (name, c) in o.counts {
            self.counts.entry(name).or_default().add(&c);
        }
        self.still.extend(o.still);
        self.unchecked.extend(o.unchecked);
    }
}

/// Asks each person's provider whether they are still a member: one task per lane, up to
/// [`MAX_CONCURRENT_CHECKS`] checks at a time within it, each paced by the lane. Every answer
/// goes to `evidence`. `people` must name only entries `lanes` has (see [`check_providers`]).
pub async fn verify(lanes: &Lanes, people: Vec<Person>, evidence: EvidenceFile) -> Verified {
    let (tx, rx) = mpsc::channel::<Evidence>(1024);
    let path = evidence.path().to_owned();
    let writer = tokio::task::spawn_blocking(move || evidence.write_all(rx));

    let mut by_lane: Vec<Vec<Person>> = vec![Vec::new(); lanes.lanes.len()];
    for p in people {
        let (id, _, _) = lanes
            .directory
            .lookup(&p.provider)
            .expect("check_providers ran first");
        by_lane[id.0].push(p);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (lane, people) in lanes.lanes.iter().zip(by_lane) {
        if people.is_empty() {
            continue;
        }
        tasks.spawn(check_lane(lane.clone(), people, tx.clone()));
    }
    drop(tx);
    let mut verified = Verified::default();
    while let Some(done) = tasks.join_next().await {
        verified.merge(done.expect("a lane's checks do not panic"));
    }
    for found in [&mut verified.still, &mut verified.unchecked] {
        found.sort_by(|a, b| {
            (&a.provider, a.line, &a.job_id).cmp(&(&b.provider, b.line, &b.job_id))
        });
    }
    match writer.await.expect("the evidence writer does not panic") {
        Ok(()) => verified.evidence = Some(path),
        Err(error) => verified.evidence_error = Some(VerifyError::Evidence { path, error }),
    }
    verified
}

/// One lane's checks.
async fn check_lane(lane: Arc<Lane>, people: Vec<Person>, tx: mpsc::Sender<Evidence>) -> Verified {
    let people = Arc::new(people);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..lane.max_in_flight().clamp(1, MAX_CONCURRENT_CHECKS) {
        let (lane, people, next, tx) = (lane.clone(), people.clone(), next.clone(), tx.clone());
        workers.spawn(async move {
            let mut found = Verified::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = people.get(i) else {
                    return found;
                };
                let e = check_one(&lane, p).await;
                let c = found.counts.entry(p.provider.clone()).or_default();
                c.checked += 1;
                match e.still_member {
                    Some(true) => {
                        c.still_member += 1;
                        found.still.push(e.clone());
                    }
                    Some(false) => c.gone += 1,
                    None => {
                        c.unchecked += 1;
                        if found.unchecked.len() < UNCHECKED_SHOWN {
                            found.unchecked.push(e.clone());
                        }
                    }
                }
                // The writer drains until every sender is gone, so this only waits on the disk.
                let _ = tx.send(e).await;
            }
        });
    }
    let mut all = Verified::default();
    while let Some(done) = workers.join_next().await {
        all.merge(done.expect("a check does not panic"));
    }
    all.unchecked.truncate(UNCHECKED_SHOWN);
    all
}

async fn check_one(lane: &Lane, p: &Person) -> Evidence {
    let (user, by_email) = p.subject();
    let organization = p.organization.as_deref();
    // The entry (or organization) proves itself first, once, as in a run: one that cannot be
    // reached or refuses the credential fails every check there at once with the reason, instead
    // of each check spending the retry budget on its own.
    let result = match lane.preflight(organization).await {
        Ok(()) => lane.check_member(organization, user, by_email).await,
        Err(reason) => Err(reason),
    };
    let (still_member, checked_by, error) = match result {
        Ok((still, how)) => (Some(still), Some(how), None),
        Err(why) => (None, None, Some(why)),
    };
    Evidence {
        job_id: p.job_id.clone(),
        line: p.line,
        provider: p.provider.clone(),
        organization: p.organization.clone(),
        user: p.user.clone(),
        resolved_user: p.resolved_user.clone(),
        checked_at: Timestamp::now(),
        still_member,
        checked_by,
        error,
    }
}

/// Where a person is, for a line of the closing words.
fn whom(e: &Evidence) -> String {
    let mut s = format!("{} ", e.provider);
    if let Some(o) = &e.organization {
        s.push_str(&format!("organization {o} "));
    }
    let mut about = Vec::new();
    if let Some(id) = &e.resolved_user {
        about.push(format!("id {id}"));
    }
    about.push(format!("job {}", e.job_id));
    if let Some(l) = e.line {
        about.push(format!("line {l}"));
    }
    s.push_str(&format!("user {} ({})", e.user, about.join(", ")));
    s
}

/// The closing words, for stdout: the table per provider entry, then each person still a member
/// and each who could not be checked, with the reason.
pub fn table(report: &Path, v: &Verified) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let t = v.total();
    if t.checked == 0 {
        let _ = writeln!(
            out,
            "{}: no job ended removed or already_absent: nobody to check.",
            report.display()
        );
    }
    let width = v.counts.keys().map(|n| n.len()).max().unwrap_or(0).max(8);
    let _ = writeln!(
        out,
        "{:<width$}  {:>8} {:>13} {:>12} {:>16}",
        "provider", "checked", "still_member", "not_member", "could_not_check"
    );
    let row = |out: &mut String, name: &str, c: &Counts| {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>8} {:>13} {:>12} {:>16}",
            c.checked, c.still_member, c.gone, c.unchecked
        );
    };
    for (name, c) in &v.counts {
        row(&mut out, name, c);
    }
    row(&mut out, "total", &t);
    if !v.still.is_empty() {
        let _ = writeln!(out, "\nStill a member ({}):", v.still.len());
        for e in &v.still {
            let _ = writeln!(out, "  {}", whom(e));
        }
    }
    if t.unchecked > 0 {
        let _ = writeln!(out, "\nCould not check ({}):", t.unchecked);
        for e in &v.unchecked {
            let _ = writeln!(out, "  {}: {}", whom(e), e.error.as_deref().unwrap_or(""));
        }
        let shown = v.unchecked.len() as u64;
        if t.unchecked > shown {
            let _ = writeln!(
                out,
                "  ... and {} more: every one is in the evidence file",
                t.unchecked - shown
            );
        }
    }
    if let Some(p) = &v.evidence {
        let _ = writeln!(out, "\nEvidence: {}", p.display());
    }
    if t.still_member == 0 && t.unchecked == 0 {
        if t.checked > 0 {
            let _ = writeln!(out, "Every person checked is gone.");
        }
    } else {
        let _ = writeln!(
            out,
            "{} still a member, {} could not be checked.",
            t.still_member, t.unchecked
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_line_that_is_not_a_record_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"job_id":"a","line":2,"provider":"telnyx","organization":null,"user":"u1","outcome":"removed"}"#;
        let path = write(
            &dir,
            &format!("{good}\n{good}\n{{\"job_id\":\"b\",\"outc\n{good}\n"),
        );
        let err = read_report(&path).unwrap_err();
        assert!(matches!(err, VerifyError::BadLine { line: 3, .. }), "{err}");
        let said = err.to_string();
        assert!(!said.contains("at line 1"), "{said}");
        assert!(
            said.contains("line 3") && said.contains("not JSON"),
            "{said}"
        );

        let path = write(&dir, &format!("{good}\n{{\"job_id\":\"b\"}}\n"));
        let said = read_report(&path).unwrap_err().to_string();
        assert!(
            said.contains("line 2") && said.contains("not a report record"),
            "{said}"
        );

        let path = write(
            &dir,
            "{\"job_id\":\"c\",\"outcome\":\"removed\",\"user\":\"u\"}\n",
        );
        let said = read_report(&path).unwrap_err().to_string();
        assert!(
            said.contains("line 1") && said.contains("without a provider"),
            "{said}"
        );

        let missing = dir.path().join("missing.jsonl");
        assert!(matches!(
            read_report(&missing),
            Err(VerifyError::Report { .. })
        ));
    }

    #[test]
    fn the_last_line_of_a_job_counts_and_only_gone_people_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |job: &str, line: u64, user: &str, outcome: &str| {
            format!(
                r#"{{"job_id":"{job}","line":{line},"provider":"aitronos","organization":"org_acme","user":"{user}","outcome":"{outcome}","attempts":1,"finished_at":"2026-01-01T00:00:00.000Z"}}"#
            )
        };
        let text = [
            rec("j1", 2, "usr_a", "failed"),
            rec("j2", 3, "usr_b", "removed"),
            rec("j3", 4, "usr_c", "not_attempted"),
            String::new(),
            rec("j1", 2, "usr_a", "removed"),
            rec("j2", 3, "usr_b", "failed"),
            r#"{"job_id":"j4","line":5,"provider":"aitronos","organization":"org_acme","user":"Ann@Acme.example","resolved_user":"usr_d","outcome":"removed"}"#.to_owned(),
            r#"{"job_id":"j5","line":6,"provider":"factory","organization":null,"user":"bo@acme.example","outcome":"already_absent","absence":"no_member"}"#.to_owned(),
            rec("j6", 7, "usr_e", "invalid"),
        ]
        .join("\n");
        let people = read_report(&write(&dir, &text)).unwrap();
        let jobs: Vec<&str> = people.iter().map(|p| p.job_id.as_str()).collect();
        assert_eq!(jobs, ["j1", "j4", "j5"], "{people:#?}");
        assert_eq!(people[0].outcome, Outcome::Removed);
        assert_eq!(people[0].subject(), ("usr_a", false));
        assert_eq!(people[1].subject(), ("usr_d", false), "the looked-up id");
        assert_eq!(people[1].user, "Ann@Acme.example");
        assert_eq!(people[2].subject(), ("bo@acme.example", true));
        assert_eq!(people[2].organization, None);
    }

    #[test]
    fn the_evidence_goes_beside_the_report() {
        assert_eq!(
            default_evidence_path(Path::new("/x/run.report-1.jsonl")),
            Path::new("/x/run.report-1.verify.jsonl")
        );
        assert_eq!(
            default_evidence_path(Path::new("r")),
            Path::new("r.verify.jsonl")
        );
    }
}

//! The audit trail: an append-only JSON Lines log of every request sent and every final outcome,
//! fsync'd in batches by a dedicated thread.
//!
//! Durability: a record is on disk (written and `fdatasync`ed) before [`Audit::outcome`] returns for
//! it, and doors acknowledge a job only after that, so a power loss never loses the record of an
//! acknowledged job. Request entries are written as they come but synced with the next outcome
//! (each sync covers everything written before it), so a power loss can lose only requests written
//! since the last outcome: requests of jobs still in flight.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::job::Job;
use crate::outcome::Record;

/// One line of the audit log. Borrows what it can from the job and its record: two of these are
/// written for every job.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry<'a> {
    /// `request` (one per request sent) or `outcome` (one per job, last).
    pub kind: Cow<'a, str>,
    pub time: Cow<'a, str>,
    pub job_id: Cow<'a, str>,
    pub provider: Cow<'a, str>,
    pub organization: Option<Cow<'a, str>>,
    pub user: Cow<'a, str>,
    pub requested_by: Option<Cow<'a, str>>,
    pub reason: Option<Cow<'a, str>>,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub provider_request_id: Option<Cow<'a, str>>,
    /// For `outcome` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Cow<'a, str>>,
}

/// An operator's decision on a quarantine of the automatic doors (`kind` = `decision`): who
/// released or rejected which people.
#[derive(Debug, Serialize, Deserialize)]
pub struct Decision {
    pub kind: Cow<'static, str>,
    pub time: Cow<'static, str>,
    /// `approved` or `rejected`.
    pub decision: Cow<'static, str>,
    pub quarantine: String,
    pub people: usize,
    pub by: String,
    /// The events (one per person and door) decided on.
    pub events: Vec<String>,
}

impl Decision {
    pub fn new(
        decision: &'static str,
        quarantine: &str,
        people: usize,
        by: &str,
        events: Vec<String>,
    ) -> Decision {
        Decision {
            kind: "decision".into(),
            time: time(),
            decision: decision.into(),
            quarantine: quarantine.to_owned(),
            people,
            by: by.to_owned(),
            events,
        }
    }
}

/// Now, as the report writes times (RFC 3339, milliseconds, UTC).
fn time() -> Cow<'static, str> {
    Cow::Owned(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string())
}

fn borrowed(s: &Option<impl AsRef<str>>) -> Option<Cow<'_, str>> {
    s.as_ref().map(|v| Cow::Borrowed(v.as_ref()))
}

type Line = (Vec<u8>, Option<oneshot::Sender<io::Result<()>>>);

/// The handle lanes and doors append through. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Line>,
}

/// The most entries written between two fsyncs.
const BATCH: usize = 1024;

impl Audit {
    /// Opens (appending) the log at `path` and starts its writer thread, which ends once every
    /// handle is dropped.
    pub fn open(path: &Path) -> io::Result<(Audit, std::thread::JoinHandle<io::Result<()>>)> {
        // A record torn by a crash was never confirmed; the next one starts on a line of its own.
        crate::sink::report::trim_torn_tail(path)?;
        // Every line links to the one before it; this run's first line says its id.
        let run = uuid::Uuid::new_v4().to_string();
        let mut chain = super::chain::Chain::resume(path, &run)?;
        let opening = chain.link(&super::chain::Chain::opening(&run, &time()));
        let file =
            crate::sink::report::private(File::options().create(true).append(true)).open(path)?;
        let (tx, mut rx) = mpsc::channel::<Line>(8192);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(256 * 1024, file);
                out.write_all(&opening)?;
                let mut waiting = Vec::new();
                let mut batch = Vec::with_capacity(BATCH);
                while crate::sink::report::next_batch(&mut rx, BATCH, &mut batch) {
                    let mut result = Ok(());
                    for (line, done) in batch.drain(..) {
                        if result.is_ok() {
                            result = out.write_all(&chain.link(&line));
                        }
                        waiting.extend(done);
                    }
                    // Only outcomes wait for the disk; a batch of requests alone goes to the OS
                    // and is synced with the next outcome (see the module's durability note).
                    if result.is_ok() {
                        result = out.flush();
                    }
                    if result.is_ok() && !waiting.is_empty() {
                        result = out.get_ref().sync_data();
                    }
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                    for w in waiting.drain(..) {
                        let _ = w.send(
                            result
                                .as_ref()
                                .map(|_| ())
                                .map_err(|e| io::Error::new(e.kind(), e.to_string())),
                        );
                    }
                    result?;
                }
                Ok(())
            })?;
        Ok((Audit { tx }, thread))
    }

    fn line(entry: &Entry) -> Vec<u8> {
        let mut v = serde_json::to_vec(entry).expect("serializable");
        v.push(b'\n');
        v
    }

    /// Records a request just answered (or not). Does not wait for the disk.
    pub async fn request(
        &self,
        job: &Job,
        attempt: u32,
        http_status: Option<u16>,
        provider_request_id: Option<&str>,
    ) {
        let entry = Entry {
            kind: "request".into(),
            time: time(),
            job_id: Cow::Borrowed(&job.id),
            provider: Cow::Borrowed(&job.provider),
            organization: job.subject.organization().map(Cow::Owned),
            user: Cow::Owned(job.subject.user()),
            requested_by: borrowed(&job.requested_by),
            reason: borrowed(&job.reason),
            attempt,
            http_status,
            provider_request_id: provider_request_id.map(Cow::Borrowed),
            outcome: None,
        };
        let _ = self.tx.send((Self::line(&entry), None)).await;
    }

    /// Records the outcome of a row that never became a job (nothing was sent for it), from a
    /// blocking thread, without waiting for the disk: the next batch's sync carries it.
    pub fn outcome_blocking(&self, record: &Record) {
        let _ = self
            .tx
            .blocking_send((Self::line(&Self::outcome_entry(record, None)), None));
    }

    fn outcome_entry<'r>(record: &'r Record, job: Option<&'r Job>) -> Entry<'r> {
        Entry {
            kind: "outcome".into(),
            time: time(),
            job_id: Cow::Borrowed(&record.job_id),
            provider: Cow::Borrowed(record.provider.as_deref().unwrap_or_default()),
            organization: borrowed(&record.organization),
            user: Cow::Borrowed(record.user.as_deref().unwrap_or_default()),
            requested_by: job.and_then(|j| borrowed(&j.requested_by)),
            reason: job.and_then(|j| borrowed(&j.reason)),
            attempt: record.attempts,
            http_status: record.http_status,
            provider_request_id: borrowed(&record.provider_request_id),
            outcome: Some(Cow::Borrowed(record.outcome.as_str())),
        }
    }

    /// Records a job's final outcome and waits until it is on disk.
    pub async fn outcome(&self, record: &Record, job: Option<&Job>) -> io::Result<()> {
        let entry = Self::outcome_entry(record, job);
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((Self::line(&entry), Some(tx)))
            .await
            .map_err(|_| io::Error::other("audit writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("audit writer stopped"))?
    }
}

impl Audit {
    /// Records an operator's decision and waits until it is on disk.
    pub async fn decision(&self, d: &Decision) -> io::Result<()> {
        let mut line = serde_json::to_vec(d).expect("serializable");
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((line, Some(tx)))
            .await
            .map_err(|_| io::Error::other("audit writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("audit writer stopped"))?
    }
}

/// What `offboard audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub entries: u64,
    /// The SHA-256 chain: its head, or the first line that does not fit and why.
    pub chain: Result<super::chain::Checked, (u64, String)>,
    /// Lines that are not audit entries (a torn last line after a crash), by line number.
    pub malformed: Vec<u64>,
    /// Jobs with requests but no final outcome: (job id, last attempt).
    pub unfinished: Vec<(String, u32)>,
}

impl Verdict {
    pub fn is_complete(&self) -> bool {
        self.malformed.is_empty() && self.unfinished.is_empty() && self.chain.is_ok()
    }
}

/// Checks an audit log is well formed and complete: every job with a request has an outcome.
pub fn verify(path: &Path) -> io::Result<Verdict> {
    let reader = io::BufReader::new(File::open(path)?);
    let mut v = Verdict {
        entries: 0,
        chain: Ok(super::chain::Checked {
            head: String::new(),
            unchained: 0,
        }),
        malformed: vec![],
        unfinished: vec![],
    };
    let mut started: BTreeMap<String, u32> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut lines = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        lines.push((n, line));
        let line = &lines.last().expect("pushed").1;
        if serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|l| l["kind"] == "chain") {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) if e.kind == "request" => {
                v.entries += 1;
                let a = started.entry(e.job_id.into_owned()).or_default();
                *a = (*a).max(e.attempt);
            }
            Ok(e) if e.kind == "outcome" && e.outcome.is_some() => {
                v.entries += 1;
                finished.insert(e.job_id.into_owned());
            }
            _ if serde_json::from_slice::<Decision>(line).is_ok_and(|d| d.kind == "decision") => {
                v.entries += 1;
            }
            _ => v.malformed.push(n),
        }
    }
    // A torn last line (a crash mid-write) is malformed, said above; it is not a break in the chain.
    if lines
        .last()
        .is_some_and(|(n, _)| v.malformed.last() == Some(n))
    {
        lines.pop();
    }
    v.chain = super::chain::check(&lines);
    v.unfinished = started
        .into_iter()
        .filter(|(id, _)| !finished.contains(id))
        .collect();
    Ok(v)
}

/// The lanes tell the audit log of every removal request as it is answered.
impl crate::lane::RequestLog for Audit {
    fn request<'a>(
        &'a self,
        job: &'a Job,
        attempt: u32,
        http_status: Option<u16>,
        provider_request_id: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(Audit::request(
            self,
            job,
            attempt,
            http_status,
            provider_request_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Directory, ProviderKind, RawJob};
    use crate::outcome::{Outcome, Timestamp};

    fn job(user: &str, id: &str) -> Job {
        let d = Directory::new([("factory", ProviderKind::Factory)]);
        let raw = RawJob {
            provider: Some("factory".into()),
            user: Some(user.into()),
            job_id: Some(id.into()),
            requested_by: Some("it-ops".into()),
            ..RawJob::default()
        };
        d.validate(&raw, Some(2)).unwrap()
    }

    fn record(job: &Job) -> Record {
        Record {
            job_id: job.id.to_string(),
            line: job.line,
            provider: Some("factory".into()),
            organization: None,
            user: Some(job.subject.user()),
            resolved_user: None,
            absence: None,
            outcome: Outcome::Removed,
            reason: None,
            http_status: Some(204),
            attempts: 2,
            provider_request_id: Some("req-1".into()),
            error: None,
            due_at: None,
            started_at: None,
            finished_at: Timestamp::now(),
        }
    }

    #[tokio::test]
    async fn a_complete_log_verifies_and_a_truncated_one_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (audit, thread) = Audit::open(&path).unwrap();
        let (a, b) = (job("a@x.example", "j-a"), job("b@x.example", "j-b"));
        audit.request(&a, 1, Some(503), None).await;
        audit.request(&a, 2, Some(204), Some("req-1")).await;
        audit.outcome(&record(&a), Some(&a)).await.unwrap();
        audit.request(&b, 1, Some(204), None).await;
        audit.outcome(&record(&b), Some(&b)).await.unwrap();
        // The outcome returned only once on disk: readable now, before the writer stops.
        let good = verify(&path).unwrap();
        assert_eq!(good.entries, 5);
        assert!(good.is_complete(), "{good:?}");
        drop(audit);
        thread.join().unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"requested_by\":\"it-ops\"")
                && text.contains("\"provider_request_id\":\"req-1\"")
        );

        // A crash mid-write: the last record torn in half.
        std::fs::write(&path, &text[..text.len() - 40]).unwrap();
        let torn = verify(&path).unwrap();
        assert_eq!(torn.malformed, vec![6], "after the run's chain line");
        assert!(
            torn.chain.is_ok(),
            "a torn last line is no break: {:?}",
            torn.chain
        );
        assert_eq!(torn.unfinished, vec![("j-b".to_owned(), 1)]);
        assert!(!torn.is_complete());
    }
}

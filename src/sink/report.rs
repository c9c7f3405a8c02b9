//! The JSON Lines report: one line per job as it finishes, written by one dedicated thread.
//!
//! Jobs hand their record to [`Sink::record`] and go on; the writer thread drains whatever has
//! queued, writes it in one batch, then flushes, so a crash leaves a valid prefix (at most a torn
//! last line) and the async runtime never blocks on the disk. [`Sink::record_confirmed`] waits for
//! the flush, for doors that may only acknowledge a job once its outcome is on disk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::outcome::{Fate, Live, Observer, Outcome, Record, Summary};

enum Msg {
    Record(Record, Option<oneshot::Sender<io::Result<()>>>),
}

/// The handle jobs record through. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Msg>,
    live: Arc<Live>,
    broken: Arc<AtomicBool>,
    observer: Option<Observer>,
}

impl Sink {
    /// Queues a record; returns once it is queued (the writer applies back-pressure when behind).
    pub async fn record(&self, r: Record) {
        self.count(&r);
        // The writer only stops after every Sink is dropped, so a send cannot fail while we hold one.
        let _ = self.tx.send(Msg::Record(r, None)).await;
    }

    /// The same from a blocking thread (the CSV reader).
    pub fn record_blocking(&self, r: Record) {
        self.count(&r);
        let _ = self.tx.blocking_send(Msg::Record(r, None));
    }

    /// Queues a record and waits until it is written and flushed.
    pub async fn record_confirmed(&self, r: Record) -> io::Result<()> {
        self.count(&r);
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Record(r, Some(tx)))
            .await
            .map_err(|_| io::Error::other("report writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("report writer stopped"))?
    }

    fn count(&self, r: &Record) {
        self.live.add(r);
        if let Some(o) = &self.observer {
            o(r);
        }
    }

    /// The same sink, telling `observer` of every record.
    pub fn observed_by(mut self, observer: Observer) -> Sink {
        self.observer = Some(observer);
        self
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Whether writing has failed: no further removal should be sent, since its outcome could not
    /// be recorded.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }
}

/// The writer thread; `finish` waits for it once every [`Sink`] is dropped.
pub struct Writer {
    thread: std::thread::JoinHandle<io::Result<()>>,
}

/// The most records written between two flushes.
const BATCH: usize = 512;

/// How long a writer waits for more records before writing a batch that is not full.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Fills `batch` for a writer thread: blocks for the next message, then takes what else is
/// queued, up to `max`, lingering once for more. Records come one by one from many jobs: a batch
/// makes one write and one wake-up for many. False once every sender is gone and nothing is left.
pub(crate) fn next_batch<T>(rx: &mut mpsc::Receiver<T>, max: usize, batch: &mut Vec<T>) -> bool {
    let Some(first) = rx.blocking_recv() else {
        return false;
    };
    batch.push(first);
    let mut lingered = false;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) if !lingered => {
                lingered = true;
                std::thread::sleep(LINGER);
            }
            Err(_) => break,
        }
    }
    true
}

/// Options that create a file readable and writable by its owner only (mode 0600): the report and
/// the audit log name the people being let go, which is nobody else's business on a shared host.
/// A file that already exists keeps its mode.
pub fn private(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

impl Writer {
    /// Creates (or appends to, when `append`) the report at `path` and starts its writer thread.
    pub fn start(path: &Path, append: bool) -> io::Result<(Writer, Sink)> {
        if append {
            trim_torn_tail(path)?;
        }
        let file = private(
            File::options()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append),
        )
        .open(path)?;
        let (tx, mut rx) = mpsc::channel::<Msg>(4096);
        let live = Arc::new(Live::default());
        let broken = Arc::new(AtomicBool::new(false));
        let flag = broken.clone();
        let thread = std::thread::Builder::new().name("report-writer".into()).spawn(move || {
            let mut out = BufWriter::with_capacity(64 * 1024, file);
            let mut waiting = Vec::new();
            let mut first_error: Option<io::Error> = None;
            let mut batch = Vec::with_capacity(BATCH);
            while next_batch(&mut rx, BATCH, &mut batch) {
                let mut result = Ok(());
                for Msg::Record(r, done) in batch.drain(..) {
                    if result.is_ok() {
                        result = serde_json::to_writer(&mut out, &r)
                            .map_err(io::Error::from)
                            .and_then(|_| out.write_all(b"\n"));
                    }
                    waiting.extend(done);
                }
                if result.is_ok() {
                    result = out.flush();
                }
                if let Err(e) = &result {
                    flag.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot write the report: no further removal will be sent");
                }
                for w in waiting.drain(..) {
                    let _ = w.send(result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
                }
                if let (Err(e), None) = (result, &first_error) {
                    first_error = Some(e);
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })?;
        Ok((
            Writer { thread },
            Sink {
                tx,
                live,
                broken,
                observer: None,
            },
        ))
    }

    /// Waits for the writer to drain (every [`Sink`] must be dropped first). The counts are the
    /// sink's tally ([`Live::summary`]).
    pub async fn finish(self) -> io::Result<()> {
        tokio::task::spawn_blocking(move || {
            self.thread
                .join()
                .map_err(|_| io::Error::other("report writer panicked"))?
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Cuts a torn last line (a crash mid-write) off a report before appending to it, so the next
/// record starts on a line of its own. The torn record was never confirmed: its job was not
/// acknowledged and runs again.
pub(crate) fn trim_torn_tail(path: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match File::options().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let tail = len.min(1 << 20);
    let mut buf = vec![0; tail as usize];
    f.seek(SeekFrom::Start(len - tail))?;
    f.read_exact(&mut buf)?;
    if buf.last().is_none_or(|b| *b == b'\n') {
        return Ok(());
    }
    let keep = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - tail + i as u64 + 1,
        None if tail == len => 0,
        None => {
            return Err(io::Error::other(
                "the report's last line is over 1 MiB long: not a report?",
            ));
        }
    };
    tracing::warn!(path = %path.display(), bytes = len - keep, "cutting a torn last line off the report");
    f.set_len(keep)
}

#[derive(serde::Deserialize)]
struct Line {
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    user: Option<String>,
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
}

fn lines(path: &Path) -> io::Result<Vec<Line>> {
    match std::fs::read_to_string(path) {
        // A torn last line does not parse and is passed over.
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The (CSV line, provider) pairs an existing report already holds a settled outcome for (see
/// [`Fate`]), with the user it recorded: what a resumed `offboard run` skips, once it
/// checked they are the same rows. (A row for every provider has one pair per provider.)
pub fn settled_lines(path: &Path) -> io::Result<std::collections::HashMap<(u64, String), String>> {
    Ok(lines(path)?
        .into_iter()
        .filter(|l| Fate::of_line(l.outcome, l.reason.as_deref()).settled())
        .filter_map(|l| {
            Some((
                (l.line?, l.provider.unwrap_or_default()),
                l.user.unwrap_or_default(),
            ))
        })
        .collect())
}

/// Counts per provider and outcome over a whole report file. A CSV row recorded more than once
/// (a resumed run tried it again) counts once, as its last line says.
pub fn summarize(path: &Path) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut last: std::collections::HashMap<(u64, String), Outcome> = Default::default();
    for l in lines(path)? {
        let provider = l.provider.unwrap_or_default();
        match l.line {
            Some(line) => {
                last.insert((line, provider), l.outcome);
            }
            None => summary.counts.entry(provider).or_default()[l.outcome.index()] += 1,
        }
    }
    for ((_, provider), outcome) in last {
        summary.counts.entry(provider).or_default()[outcome.index()] += 1;
    }
    Ok(summary)
}

/// The job ids a report holds a settled outcome for (see [`Fate`]), `failed` aside: in
/// the worker a failed job sits in the dead-letter queue, and a replay after a fix must run again.
///
/// Kept in memory by the worker: read once at start, told of every outcome the worker records,
/// and caught up from the report's new lines only (another process appending to the same report,
/// a standby's predecessor) when a redelivered job is not in it. Bounded: past `cap` ids the oldest
/// are forgotten; such a job, redelivered, runs again and reads `already_absent`, the truth.
pub struct SettledIndex {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
    cap: usize,
    path: std::path::PathBuf,
    /// Where the last complete line read ends.
    offset: u64,
}

/// Job ids the worker remembers as settled, by default.
pub const SETTLED_INDEX_CAP: usize = 1_000_000;

impl SettledIndex {
    /// Reads the report at `path` (none yet is an empty index).
    pub fn load(path: &Path, cap: usize) -> io::Result<SettledIndex> {
        let mut index = SettledIndex {
            ids: Default::default(),
            order: Default::default(),
            cap: cap.max(1),
            path: path.to_owned(),
            offset: 0,
        };
        index.catch_up()?;
        Ok(index)
    }

    pub fn contains(&self, job_id: &str) -> bool {
        self.ids.contains(job_id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Remembers `job_id` as settled, forgetting the oldest past the cap.
    pub fn insert(&mut self, job_id: String) {
        if self.ids.contains(&job_id) {
            return;
        }
        self.order.push_back(job_id.clone());
        self.ids.insert(job_id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Reads the lines appended to the report since the last read (a torn last line waits for
    /// the next catch-up). Blocking IO: call it off the async runtime.
    pub fn catch_up(&mut self) -> io::Result<()> {
        use std::io::{BufRead, Seek, SeekFrom};
        #[derive(serde::Deserialize)]
        struct Line {
            job_id: String,
            outcome: Outcome,
            #[serde(default)]
            reason: Option<String>,
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut reader = io::BufReader::new(file);
        reader.seek(SeekFrom::Start(self.offset))?;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            self.offset += n as u64;
            if let Ok(l) = serde_json::from_slice::<Line>(&line) {
                if Fate::of_line(l.outcome, l.reason.as_deref()).remembered(l.outcome) {
                    self.insert(l.job_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Timestamp;

    #[test]
    fn the_settled_index_loads_once_catches_up_and_stays_bounded() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let line = |id: &str, outcome: &str, reason: &str| {
            format!("{{\"job_id\":\"{id}\",\"outcome\":\"{outcome}\",\"reason\":{reason}}}\n")
        };
        std::fs::write(
            &path,
            line("a", "removed", "null") + &line("b", "failed", "\"refused\""),
        )
        .unwrap();
        let mut index = SettledIndex::load(&path, 2).unwrap();
        assert!(index.contains("a"));
        assert!(
            !index.contains("b"),
            "a failed job runs again when replayed"
        );
        // Another process appends; a torn last line waits.
        let mut f = File::options().append(true).open(&path).unwrap();
        f.write_all(line("c", "already_absent", "null").as_bytes())
            .unwrap();
        f.write_all(b"{\"job_id\":\"d\",\"outc").unwrap();
        assert!(!index.contains("c"));
        index.catch_up().unwrap();
        assert!(index.contains("c") && !index.contains("d"));
        f.write_all(b"ome\":\"skipped_protected\"}\n").unwrap();
        index.catch_up().unwrap();
        assert!(index.contains("d"));
        // Bounded: the oldest are forgotten.
        assert_eq!(index.len(), 2);
        assert!(!index.contains("a"));
        index.insert("e".into());
        assert!(index.contains("e") && !index.contains("c"));
    }

    #[test]
    fn a_new_report_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (writer, sink) = Writer::start(&path, true).unwrap();
            drop(sink);
            writer.finish().await.unwrap();
        });
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_size_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..5 {
            tx.try_send(i).unwrap();
        }
        let mut batch = Vec::new();
        assert!(next_batch(&mut rx, 3, &mut batch));
        assert_eq!(batch, vec![0, 1, 2], "at most the batch size");
        batch.clear();
        drop(tx);
        assert!(next_batch(&mut rx, 3, &mut batch));
        assert_eq!(
            batch,
            vec![3, 4],
            "what is left, after the senders are gone"
        );
        batch.clear();
        assert!(!next_batch(&mut rx, 3, &mut batch));
        assert!(batch.is_empty());
    }

    fn rec(provider: &str, outcome: Outcome) -> Record {
        Record {
            job_id: "j".into(),
            line: Some(2),
            provider: Some(provider.into()),
            organization: None,
            user: Some("a@b.co".into()),
            resolved_user: None,
            absence: None,
            outcome,
            reason: None,
            http_status: Some(204),
            attempts: 1,
            provider_request_id: None,
            error: None,
            due_at: None,
            started_at: Some(Timestamp::now()),
            finished_at: Timestamp::now(),
        }
    }

    #[tokio::test]
    async fn appending_after_a_crash_starts_on_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            "{\"job_id\":\"a\",\"outcome\":\"removed\"}\n{\"job_id\":\"b\",\"outc",
        )
        .unwrap();
        let (writer, sink) = Writer::start(&path, true).unwrap();
        sink.record(rec("p", Outcome::Removed)).await;
        drop(sink);
        writer.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines
                .iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert!(SettledIndex::load(&path, 10).unwrap().contains("a"));
    }

    #[tokio::test]
    async fn every_record_is_one_json_line_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let (writer, sink) = Writer::start(&path, false).unwrap();
        for i in 0..1000 {
            sink.record(rec(if i % 2 == 0 { "a" } else { "b" }, Outcome::Removed))
                .await;
        }
        sink.record_confirmed(rec("a", Outcome::Failed))
            .await
            .unwrap();
        // Confirmed means on disk already, before the writer finishes.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1001);
        assert_eq!(sink.live().total(), 1001);
        let summary = sink.live().summary();
        drop(sink);
        writer.finish().await.unwrap();
        assert_eq!(summary.get("a", Outcome::Removed), 500);
        assert_eq!(summary.get("a", Outcome::Failed), 1);
        assert!(!summary.all_done());
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["finished_at"].as_str().unwrap().ends_with('Z'));
            assert!(v.get("job_id").is_some() && v.get("http_status").is_some());
        }
    }
}

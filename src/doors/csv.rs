//! The CSV door: a file IT uploads, streamed, never held in memory.
//!
//! The file is read in several passes over one open handle (so an editor saving a new version
//! mid-run cannot change what we read): a [`scan`] that validates every row, finds duplicates and
//! counts the plan, then one [`feed`] per lane that streams only that lane's rows. Each lane reading
//! its own rows is what keeps a slow provider from holding up the others without buffering the
//! file: the CSV equivalent of one queue per provider.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv::{ReaderBuilder, StringRecord, Trim};
use fastbloom::BloomFilter;
use tokio::sync::mpsc;

use crate::job::{Directory, EVERY_PROVIDER, Invalid, Job, LaneId, RawJob};

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error(
        "{path} changed while it was being read (its size or modification time differ from when it was planned): nothing more is sent from it; run again on a file nobody is editing"
    )]
    Changed { path: PathBuf },
}

/// The columns a row may have, in the order `enqueue` and the demo write them. Any other column is
/// refused unless the user names it to be ignored: a column the tool does not read is a wish it
/// would not honour.
pub const COLUMNS: [&str; 10] = [
    "provider",
    "user",
    "organization",
    "transfer_to",
    "job_id",
    "reason",
    "requested_by",
    "not_before",
    "last_day",
    "time_zone",
];

/// An open CSV file, read in independent passes.
#[derive(Clone)]
pub struct CsvFile {
    path: PathBuf,
    file: Arc<File>,
    headers: StringRecord,
    /// Where the `provider` column is, to skip other lanes' rows before deserializing them.
    provider_column: usize,
    /// Size and modification time when opened. Every pass reads this one handle, so a file
    /// replaced meanwhile changes nothing; one modified in place is caught by
    /// [`CsvFile::unchanged`].
    stamp: (u64, Option<std::time::SystemTime>),
}

/// A file's size and modification time, from its open handle.
fn stamp(file: &File) -> io::Result<(u64, Option<std::time::SystemTime>)> {
    let m = file.metadata()?;
    Ok((m.len(), m.modified().ok()))
}

/// A reader at its own offset of the shared handle (`pread`), so passes do not disturb each other.
/// It keeps a copy of what it read last, to find a record's true line (see [`At::line_of`]).
struct At {
    file: Arc<File>,
    pos: u64,
    last: Vec<u8>,
    last_start: u64,
}

impl At {
    fn new(file: Arc<File>) -> At {
        At {
            file,
            pos: 0,
            last: Vec::new(),
            last_start: 0,
        }
    }

    /// The byte at `at`, from the copy of the last read when it holds it (it nearly always
    /// does), else read from the file.
    fn byte(&self, at: u64) -> Option<u8> {
        let end = self.last_start + self.last.len() as u64;
        if (self.last_start..end).contains(&at) {
            return Some(self.last[(at - self.last_start) as usize]);
        }
        let mut one = [0u8; 1];
        match self.file.read_at(&mut one, at) {
            Ok(1) => Some(one[0]),
            _ => None,
        }
    }

    /// The true line of a record the csv crate places at `byte`, `line`: where blank lines come
    /// before a record, the crate gives the first blank line's position; the record starts after
    /// them.
    fn line_of(&self, byte: u64, line: u64) -> u64 {
        let (mut at, mut line) = (byte, line);
        while let Some(b) = self.byte(at) {
            match b {
                b'\n' => line += 1,
                b'\r' => {}
                _ => break,
            }
            at += 1;
        }
        line
    }
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.last.clear();
        self.last.extend_from_slice(&buf[..n]);
        self.last_start = self.pos;
        self.pos += n as u64;
        Ok(n)
    }
}

/// One row of a pass: its line, and its fields or why it could not be read.
pub type Row<'r> = (u64, Result<RawJob<'r>, Invalid>);

/// Why a header with columns the tool does not read is refused, and what to do.
fn unknown_columns(unknown: &[&str]) -> String {
    let named: Vec<String> = unknown
        .iter()
        .map(|u| match *u {
            "" => "(an empty column name)".to_owned(),
            u => format!("`{u}`"),
        })
        .collect();
    format!(
        "the header has {} this version does not read: {} (it reads: {}); nothing is sent. Remove {}, or pass --ignore-column NAME for each to run without {}",
        if unknown.len() == 1 {
            "a column"
        } else {
            "columns"
        },
        named.join(", "),
        COLUMNS.join(", "),
        if unknown.len() == 1 { "it" } else { "them" },
        if unknown.len() == 1 { "it" } else { "them" },
    )
}

impl CsvFile {
    /// Opens the file and checks its header: `provider` and `user` are required, names are matched
    /// without regard to case or surrounding spaces, and a UTF-8 byte order mark is ignored. A
    /// column that is not one of [`COLUMNS`] is refused: see [`CsvFile::open_ignoring`].
    pub fn open(path: &Path) -> Result<CsvFile, CsvError> {
        Self::open_ignoring(path, &[])
    }

    /// Opens the file as [`CsvFile::open`] does, reading past the columns `ignored` names (as
    /// `--ignore-column` gives them, any case). Any other unknown column refuses the whole file
    /// before anything is sent, naming it: a column the tool does not read is a wish it would
    /// not honour.
    pub fn open_ignoring(path: &Path, ignored: &[String]) -> Result<CsvFile, CsvError> {
        let io_err = |source| CsvError::Io {
            path: path.to_owned(),
            source,
        };
        let file = Arc::new(File::open(path).map_err(io_err)?);
        let stamp = stamp(&file).map_err(io_err)?;
        let mut reader = Self::builder().from_reader(At::new(file.clone()));
        let raw = reader.headers().map_err(|e| CsvError::Header {
            path: path.to_owned(),
            reason: format!("cannot read the header row: {e}"),
        })?;
        let headers: StringRecord = raw
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            .collect();
        for required in ["provider", "user"] {
            if !headers.iter().any(|h| h == required) {
                return Err(CsvError::Header {
                    path: path.to_owned(),
                    reason: format!(
                        "the header has no `{required}` column (found: {}; expected: {})",
                        headers.iter().collect::<Vec<_>>().join(", "),
                        COLUMNS.join(", ")
                    ),
                });
            }
        }
        let unknown: Vec<&str> = headers
            .iter()
            .filter(|h| !COLUMNS.contains(h))
            .filter(|h| !ignored.iter().any(|i| i.trim().eq_ignore_ascii_case(h)))
            .collect();
        if !unknown.is_empty() {
            return Err(CsvError::Header {
                path: path.to_owned(),
                reason: unknown_columns(&unknown),
            });
        }
        for name in &headers {
            if headers.iter().filter(|h| *h == name).count() > 1 && COLUMNS.contains(&name) {
                return Err(CsvError::Header {
                    path: path.to_owned(),
                    reason: format!("the header names column `{name}` twice"),
                });
            }
        }
        let provider_column = headers
            .iter()
            .position(|h| h == "provider")
            .expect("checked above");
        Ok(CsvFile {
            path: path.to_owned(),
            file,
            headers,
            provider_column,
            stamp,
        })
    }

    /// Refuses to go on when the file was modified in place since it was opened: what the guard
    /// approved must be what is sent.
    pub fn unchanged(&self) -> Result<(), CsvError> {
        let now = stamp(&self.file).map_err(|source| CsvError::Io {
            path: self.path.clone(),
            source,
        })?;
        if now == self.stamp {
            Ok(())
        } else {
            Err(CsvError::Changed {
                path: self.path.clone(),
            })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn builder() -> ReaderBuilder {
        let mut b = ReaderBuilder::new();
        // Lines end at LF; trimming removes a CR before it. (The csv crate's CRLF mode counts lines
        // one short, and every invalid row must name its true line.) Flexible only so that we can
        // tell a blank line from a short row ourselves, in `for_each`.
        b.trim(Trim::All)
            .terminator(csv::Terminator::Any(b'\n'))
            .flexible(true)
            .buffer_capacity(64 * 1024);
        b
    }

    /// Calls `f` with every data row, in file order.
    pub fn for_each(&self, f: impl FnMut(Row<'_>)) -> Result<(), CsvError> {
        self.for_each_until(u64::MAX, None, f)
    }

    /// Newlines in the file: an upper bound on its rows (a quoted field may hold newlines too).
    pub fn line_count(&self) -> Result<usize, CsvError> {
        let mut buf = vec![0u8; 256 * 1024];
        let (mut pos, mut lines) = (0u64, 0usize);
        loop {
            let n = self
                .file
                .read_at(&mut buf, pos)
                .map_err(|source| CsvError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(lines);
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
            pos += n as u64;
        }
    }

    /// Calls `f` with every data row that starts at or before line `last`, in file order; with
    /// `only`, just the well-formed rows whose provider is `only` or `*`.
    fn for_each_until(
        &self,
        last: u64,
        only: Option<&str>,
        mut f: impl FnMut(Row<'_>),
    ) -> Result<(), CsvError> {
        let mut reader = Self::builder().from_reader(At::new(self.file.clone()));
        let mut record = StringRecord::new();
        // Skip the header row, then read with our normalized header names.
        reader.headers().map_err(|e| self.fatal(e))?;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record
                        .position()
                        .map_or(0, |p| reader.get_ref().line_of(p.byte(), p.line()));
                    if line > last {
                        return Ok(());
                    }
                    if record.iter().all(str::is_empty) {
                        continue; // a blank line (CRLF files read one as a lone empty field)
                    }
                    if record.len() != self.headers.len() {
                        // A row with a field too many or too few has likely shifted its columns,
                        // and a shifted column could put an id where another belongs.
                        let why = format!(
                            "{} fields where the header has {}",
                            record.len(),
                            self.headers.len()
                        );
                        f((line, Err(Invalid::Unreadable(why))));
                        continue;
                    }
                    if let Some(only) = only {
                        let provider = &record[self.provider_column];
                        if provider != only && provider != EVERY_PROVIDER {
                            continue;
                        }
                    }
                    let raw = record
                        .deserialize::<RawJob<'_>>(Some(&self.headers))
                        .map_err(|e| Invalid::Unreadable(e.to_string()));
                    f((line, raw));
                }
                Err(e) => match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(self.fatal(e)),
                    _ => {
                        let line = e.position().map_or(0, |p| p.line());
                        f((line, Err(Invalid::Unreadable(describe(&e)))));
                    }
                },
            }
        }
    }

    fn fatal(&self, e: csv::Error) -> CsvError {
        CsvError::Io {
            path: self.path.clone(),
            source: io::Error::other(e.to_string()),
        }
    }
}

fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

/// A row that will not run, with what it said, for the report and the dry-run plan.
#[derive(Debug, Clone)]
pub struct InvalidRow {
    pub line: u64,
    pub job_id: Option<String>,
    pub provider: Option<String>,
    pub organization: Option<String>,
    pub user: Option<String>,
    pub reason: Invalid,
}

/// What the file asks for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub rows: u64,
    /// Jobs that will be sent, per lane.
    pub per_lane: Vec<u64>,
    /// Rows that will not run: invalid or duplicate (not protected).
    pub invalid: u64,
    /// Rows naming a protected account.
    pub protected: u64,
    /// (line, lane) of jobs that repeat an earlier row's removal; the lanes skip them.
    pub duplicates: HashSet<(u64, LaneId)>,
    /// The organizations (Aitronos) or tenants (Cognee) each lane's jobs name, for preflight: at
    /// most [`MAX_PLANNED_ORGANIZATIONS`] per lane (the lanes prove any others as they meet them).
    pub organizations: Vec<std::collections::BTreeSet<String>>,
    /// When the file was planned: a job due after it is due later.
    pub cutoff: jiff::Timestamp,
    /// Jobs due later than `cutoff`, per lane (counted in `per_lane` too).
    pub later: Vec<u64>,
    /// The first and last due times of those jobs.
    pub later_span: Option<(jiff::Timestamp, jiff::Timestamp)>,
}

/// The most organizations per lane a plan lists for preflight.
pub const MAX_PLANNED_ORGANIZATIONS: usize = 1000;

impl Plan {
    pub fn removable(&self) -> u64 {
        self.per_lane.iter().sum()
    }

    /// Jobs due later than the plan's cutoff.
    pub fn due_later(&self) -> u64 {
        self.later.iter().sum()
    }

    /// Jobs per lane that are due by the cutoff: what `run --due-only` sends.
    pub fn due_now(&self) -> Vec<u64> {
        self.per_lane
            .iter()
            .zip(&self.later)
            .map(|(all, later)| all - later)
            .collect()
    }

    /// Whether `job` is due later than the cutoff.
    pub fn is_later(&self, job: &Job) -> bool {
        job.due.is_some_and(|d| d > self.cutoff)
    }
}

/// The false-positive rate of the duplicate filter: at 14.4 bits a row, 1.8 MB per million rows.
const FILTER_FALSE_POSITIVES: f64 = 0.001;

/// A row's acknowledgement: nothing to tell. The file stays as it is; its report line is what a
/// resumed run reads to skip the row.
pub struct RowAck;

impl super::Ack for RowAck {
    type Settled = ();
    const WAITS_FOR_DISK: bool = false;

    async fn settled(self, _: &crate::outcome::Record) {}

    async fn unrecorded(self) {}
}

/// Validates every row, finds duplicates, counts the plan. Each invalid row goes to `on_invalid`
/// as it is found; duplicates come last, from the resolve pass.
///
/// Duplicates are found in constant memory per row: the first pass puts each job's 64-bit identity
/// hash in a Bloom filter sized from the file's line count, and keeps only the identities the
/// filter may have seen before (true repeats, plus about 0.1% false positives). If there are any,
/// a resolve pass re-reads the file up to the last such line and settles them exactly: the first
/// occurrence of an identity runs, every later one is a duplicate of it. A 64-bit hash collision
/// (odds about 1 in 10^8 at a million rows) would hold a row back as a duplicate, never send one.
pub fn scan(
    csv: &CsvFile,
    dir: &Directory,
    lanes: usize,
    on_invalid: impl FnMut(InvalidRow),
) -> Result<Plan, CsvError> {
    let expected = csv.line_count()?.max(1024);
    let filter = BloomFilter::with_false_pos(FILTER_FALSE_POSITIVES).expected_items(expected);
    scan_with(csv, dir, lanes, filter, on_invalid)
}

fn scan_with(
    csv: &CsvFile,
    dir: &Directory,
    lanes: usize,
    mut filter: BloomFilter,
    mut on_invalid: impl FnMut(InvalidRow),
) -> Result<Plan, CsvError> {
    let mut plan = Plan {
        per_lane: vec![0; lanes],
        organizations: vec![Default::default(); lanes],
        cutoff: jiff::Timestamp::now(),
        later: vec![0; lanes],
        ..Plan::default()
    };
    // Identities the filter may have seen before, and the last line that added one.
    let mut suspects: HashSet<u64> = HashSet::new();
    let mut last_suspect_line = 0;
    csv.for_each(|(line, raw)| {
        plan.rows += 1;
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                plan.invalid += 1;
                on_invalid(invalid_row(line, e, None, None));
                return;
            }
        };
        // One job, or one per entry for a row addressed to every provider (`*`).
        for (provider, result) in dir.validate_each(&raw, Some(line)) {
            match result {
                Err(e) => {
                    if matches!(e, Invalid::Protected { .. }) {
                        plan.protected += 1;
                    } else {
                        plan.invalid += 1;
                    }
                    on_invalid(invalid_row(line, e, Some(&raw), provider));
                }
                Ok(job) => {
                    let key = job.identity();
                    if filter.insert_hash(key) {
                        suspects.insert(key);
                        last_suspect_line = line;
                    }
                    plan.per_lane[job.lane.0] += 1;
                    if let Some(due) = job.due.filter(|d| *d > plan.cutoff) {
                        plan.later[job.lane.0] += 1;
                        plan.later_span = Some(match plan.later_span {
                            None => (due, due),
                            Some((a, b)) => (a.min(due), b.max(due)),
                        });
                    }
                    if let Some(org) = job.subject.organization() {
                        let orgs = &mut plan.organizations[job.lane.0];
                        if orgs.len() < MAX_PLANNED_ORGANIZATIONS {
                            orgs.insert(org);
                        }
                    }
                }
            }
        }
    })?;
    if suspects.is_empty() {
        return Ok(plan);
    }

    // Resolve: among the suspects only, the first line of each identity runs.
    let mut first: HashMap<u64, u64> = HashMap::with_capacity(suspects.len());
    csv.for_each_until(last_suspect_line, None, |(line, raw)| {
        let Ok(raw) = raw else { return };
        for (provider, result) in dir.validate_each(&raw, Some(line)) {
            let Ok(job) = result else { continue };
            let key = job.identity();
            if !suspects.contains(&key) {
                continue;
            }
            match first.get(&key) {
                None => {
                    first.insert(key, line);
                }
                Some(&first_line) => {
                    plan.per_lane[job.lane.0] -= 1;
                    if plan.is_later(&job) {
                        plan.later[job.lane.0] -= 1;
                    }
                    plan.invalid += 1;
                    plan.duplicates.insert((line, job.lane));
                    on_invalid(invalid_row(
                        line,
                        Invalid::Duplicate { first_line },
                        Some(&raw),
                        provider,
                    ));
                }
            }
        }
    })?;
    Ok(plan)
}

fn invalid_row(
    line: u64,
    reason: Invalid,
    raw: Option<&RawJob<'_>>,
    provider: Option<String>,
) -> InvalidRow {
    let s = |v: Option<&std::borrow::Cow<'_, str>>| {
        v.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty())
    };
    InvalidRow {
        line,
        job_id: raw.and_then(|r| s(r.job_id.as_ref())),
        provider: provider.or_else(|| raw.and_then(|r| s(r.provider.as_ref()))),
        organization: raw.and_then(|r| s(r.organization.as_ref())),
        user: raw.and_then(|r| s(r.user.as_ref())),
        reason,
    }
}

/// Jobs a feed sends at once when its lane is busy.
const CHUNK: usize = 64;

/// One lane's pass: sends that lane's valid, non-duplicate jobs to `tx`, in file order, and stops
/// early if the lane stops listening. Returns how many it sent. Runs on a blocking thread.
///
/// Jobs go in chunks of up to [`CHUNK`], so that a busy lane wakes this thread once a chunk, not
/// once a job; a lane with nothing queued gets each job as soon as it is read.
pub fn feed(
    csv: &CsvFile,
    dir: &Directory,
    lane: LaneId,
    skip: &HashSet<(u64, LaneId)>,
    tx: &mpsc::Sender<Vec<Job>>,
) -> Result<u64, CsvError> {
    let Some(name) = dir.name_of(lane) else {
        return Ok(0);
    };
    let mut sent = 0;
    let mut open = true;
    let mut chunk = Vec::with_capacity(CHUNK);
    // Most rows belong to other lanes: they are skipped before they are deserialized.
    csv.for_each_until(u64::MAX, Some(name), |(line, raw)| {
        let Ok(raw) = raw else { return };
        if !open || skip.contains(&(line, lane)) {
            return;
        }
        if let Ok(job) = dir.validate_as(&raw, Some(line), name) {
            chunk.push(job);
            let starving = tx.capacity() == tx.max_capacity();
            if chunk.len() >= CHUNK || starving {
                let n = chunk.len() as u64;
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if tx.blocking_send(full).is_err() {
                    open = false;
                } else {
                    sent += n;
                }
            }
        }
    })?;
    if open && !chunk.is_empty() {
        let n = chunk.len() as u64;
        if tx.blocking_send(chunk).is_ok() {
            sent += n;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_modified_in_place_after_it_was_opened_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, "provider,user\nfactory,a@b.co\n").unwrap();
        let csv = CsvFile::open(&path).unwrap();
        assert!(csv.unchanged().is_ok());
        // Replaced under its name: the open handle still reads what was planned.
        std::fs::write(dir.path().join("other.csv"), "provider,user\n").unwrap();
        std::fs::rename(dir.path().join("other.csv"), &path).unwrap();
        assert!(csv.unchanged().is_ok());
        let mut n = 0;
        csv.for_each(|_| n += 1).unwrap();
        assert_eq!(n, 1, "the planned rows");
        // Modified in place: refused, naming the file.
        let csv = CsvFile::open(&path).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"factory,c@d.co\n")
            .unwrap();
        let e = csv.unchanged().unwrap_err();
        assert!(matches!(e, CsvError::Changed { .. }), "{e}");
        assert!(e.to_string().contains("rows.csv"), "{e}");
    }
    use crate::job::ProviderKind;
    use crate::outcome::Reason;
    use std::io::Write;

    fn dir() -> Directory {
        Directory::new(ProviderKind::ALL.iter().map(|k| (k.as_str(), *k)))
    }

    fn file(text: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        f
    }

    fn scan_text(text: &[u8]) -> (Plan, Vec<InvalidRow>) {
        let f = file(text);
        let csv = CsvFile::open(f.path()).unwrap();
        let mut bad = vec![];
        let plan = scan(&csv, &dir(), 5, |r| bad.push(r)).unwrap();
        // Duplicates come from the resolve pass, after the other invalid rows.
        bad.sort_by_key(|r| r.line);
        (plan, bad)
    }

    #[test]
    fn false_positives_of_the_filter_never_make_a_duplicate() {
        // 600 rows over 3 lanes, where every 7th row repeats an earlier one, some of them twice.
        let mut text = String::from("provider,user,organization\n");
        for i in 0..600u32 {
            let p = if i % 7 == 6 { i / 3 } else { i };
            match p % 3 {
                0 => text.push_str(&format!("factory,p{p}@x.co,\n")),
                1 => text.push_str(&format!("aitronos,usr_{p},org_1\n")),
                _ => text.push_str(&format!("telnyx,{},\n", uuid::Uuid::from_u128(p.into()))),
            }
        }
        let f = file(text.as_bytes());
        let csv = CsvFile::open(f.path()).unwrap();
        let run = |filter: BloomFilter| {
            let mut bad = vec![];
            let plan = scan_with(&csv, &dir(), 5, filter, |r| bad.push(r)).unwrap();
            let mut bad: Vec<(u64, Invalid)> =
                bad.into_iter().map(|r| (r.line, r.reason)).collect();
            bad.sort_by_key(|b| b.0);
            (plan, bad)
        };
        // A filter of 64 bits answers "maybe seen" for nearly every row; a big one almost never.
        let (tiny, tiny_bad) = run(BloomFilter::with_num_bits(64).expected_items(600));
        let (big, big_bad) = run(BloomFilter::with_false_pos(1e-9).expected_items(600));
        assert_eq!(tiny_bad, big_bad);
        assert_eq!(tiny.per_lane, big.per_lane);
        assert_eq!(tiny.duplicates, big.duplicates);
        assert_eq!(tiny.invalid, big.invalid);
        // And the count is right: the repeats of distinct earlier rows.
        let distinct: HashSet<u32> = (0..600)
            .map(|i| if i % 7 == 6 { i / 3 } else { i })
            .collect();
        assert_eq!(big.removable(), distinct.len() as u64);
        assert_eq!(big.invalid, 600 - distinct.len() as u64);
        assert!(
            big_bad.iter().all(
                |(line, r)| matches!(r, Invalid::Duplicate { first_line } if first_line < line)
            )
        );
    }

    #[test]
    fn a_row_after_blank_lines_names_its_true_line() {
        let text = "provider,user\nfactory,a@b.co\n\n\nslack,x\n";
        let (_, bad) = scan_text(text.as_bytes());
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 5, "{bad:?}");
    }

    #[test]
    fn bom_crlf_quotes_spaces_and_column_order() {
        let text = "\u{feff}User , Provider,organization, REASON\r\n\" a@b.co \" , factory ,,x\r\n\"usr_1\",aitronos,\" org_2 \",y\r\n\r\nslack,x,,\r\n";
        let (plan, bad) = scan_text(text.as_bytes());
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 5, "CRLF lines count once, blank lines too");
        assert_eq!(plan.rows, 3);
        assert_eq!(plan.per_lane[0], 1);
        assert_eq!(plan.per_lane[1], 1);
    }

    #[test]
    fn a_quoted_field_may_hold_commas_and_newlines_and_lines_stay_right() {
        let text =
            "provider,user,reason\nfactory,a@b.co,\"left, for good\nsecond line\"\nslack,x,\n";
        let (plan, bad) = scan_text(text.as_bytes());
        assert_eq!(plan.per_lane[0], 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4, "the quoted newline counts as a line");
        assert_eq!(bad[0].reason, Invalid::UnknownProvider("slack".into()));
    }

    #[test]
    fn every_invalid_kind_names_its_line() {
        let text = "provider,user,organization\n\
            factory,a@b.co,\n\
            slack,a@b.co,\n\
            factory,not-an-email,\n\
            aitronos,usr_1,\n\
            ,a@b.co,\n\
            factory,a@b.co,\n\
            factory,A@B.CO,\n\
            factory,c@d.co\n";
        let (plan, bad) = scan_text(text.as_bytes());
        let got: Vec<(u64, &str)> = bad
            .iter()
            .map(|b| (b.line, Reason::from(&b.reason).as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "unknown_provider"),
                (4, "bad_format"),
                (5, "missing_field"),
                (6, "missing_field"),
                (7, "duplicate"),
                (8, "duplicate"),
                (9, "unreadable_row"),
            ]
        );
        assert_eq!(bad[4].reason, Invalid::Duplicate { first_line: 2 });
        assert_eq!(plan.invalid, 7);
        assert_eq!(plan.removable(), 1);
        assert_eq!(
            plan.duplicates,
            HashSet::from([(7, LaneId(0)), (8, LaneId(0))])
        );
    }

    #[test]
    fn duplicates_are_reported_after_the_other_invalid_rows() {
        // As docs/limits.md says: the resolve pass that settles duplicates runs after the scan.
        let f = file(b"provider,user\nfactory,a@b.co\nfactory,a@b.co\nslack,x\nfactory,bad\n");
        let csv = CsvFile::open(f.path()).unwrap();
        let mut bad = vec![];
        scan(&csv, &dir(), 5, |r| bad.push(r)).unwrap();
        let got: Vec<(u64, &str)> = bad
            .iter()
            .map(|b| (b.line, Reason::from(&b.reason).as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(4, "unknown_provider"), (5, "bad_format"), (3, "duplicate")]
        );
    }

    #[test]
    fn invalid_utf8_is_one_bad_row_not_a_failed_run() {
        let mut text = b"provider,user\nfactory,a@b.co\nfactory,".to_vec();
        text.extend_from_slice(&[0xff, 0xfe]);
        text.extend_from_slice(b"@x.co\nfactory,c@d.co\n");
        let (plan, bad) = scan_text(&text);
        assert_eq!(plan.removable(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
    }

    #[test]
    fn a_column_the_tool_does_not_read_refuses_the_file_naming_it() {
        let f = file(b"provider,user,keep_mailbox,Note\nfactory,a@b.co,yes,x\n");
        let e = CsvFile::open(f.path()).err().expect("refused").to_string();
        assert!(e.contains("`keep_mailbox`, `note`"), "{e}");
        assert!(e.contains("--ignore-column"), "{e}");
        // Named, any case, each one: read past; one left out is still refused.
        let only_one = CsvFile::open_ignoring(f.path(), &["KEEP_MAILBOX".into()]);
        let e = only_one.err().expect("`note` still refused").to_string();
        assert!(e.contains("`note`") && !e.contains("keep_mailbox"), "{e}");
        let both = CsvFile::open_ignoring(f.path(), &["keep_mailbox".into(), " note ".into()]);
        let (plan, bad) = {
            let csv = both.expect("both ignored");
            let mut bad = vec![];
            let plan = scan(&csv, &dir(), 5, |r| bad.push(r)).unwrap();
            (plan, bad)
        };
        assert_eq!((plan.rows, bad.len()), (1, 0), "{bad:?}");
        let trailing = file(b"provider,user,\nfactory,a@b.co,\n");
        let e = CsvFile::open(trailing.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("(an empty column name)"), "{e}");
    }

    #[test]
    fn a_header_without_provider_is_refused() {
        let f = file(b"user,organization\na@b.co,\n");
        let e = CsvFile::open(f.path()).err().unwrap().to_string();
        assert!(e.contains("no `provider` column"), "{e}");
    }

    #[test]
    fn feed_streams_only_its_lane_and_skips_duplicates() {
        let f =
            file(b"provider,user\nfactory,a@b.co\ntelnyx,abc\nfactory,b@b.co\nfactory,a@b.co\n");
        let csv = CsvFile::open(f.path()).unwrap();
        let d = dir();
        let plan = scan(&csv, &d, 5, |_| {}).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let sent = feed(&csv, &d, LaneId(0), &plan.duplicates, &tx).unwrap();
        drop(tx);
        assert_eq!(sent, 2);
        let mut lines = vec![];
        while let Ok(chunk) = rx.try_recv() {
            lines.extend(chunk.iter().map(|j| j.line.unwrap()));
        }
        assert_eq!(lines, vec![2, 4]);
    }
}

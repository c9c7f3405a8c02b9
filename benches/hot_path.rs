//! Micro-benchmarks of the per-job hot path, in process: no provider, no network.
//!
//! - `parse_validate`: one CSV row read with the `csv` crate into a borrowed [`RawJob`] (the reader
//!   settings and header handling of `doors::csv::CsvFile::for_each`) and turned into a [`Job`] by
//!   [`Directory::validate`]: one row kind per provider, a row naming a person by email, a row with
//!   its own `job_id` (no UUID to draw), and an invalid row. Each iteration reads 1,000 copies of
//!   the row through one reader, so the reader's setup is amortized as in a real file. Then the
//!   whole CSV pass `doors::csv::scan` (file reads, parsing, validation, duplicate detection) over
//!   a file of 10,000 distinct rows for the five providers.
//! - `classify`: [`retry::classify`] on representative answers, reading `Retry-After`, and
//!   drawing the first step of a job's backoff schedule ([`Policy::schedule`]).
//! - `report`: one [`Record`] serialized to a JSON line in a reused buffer, and the real
//!   [`Writer`]/[`Sink`] path: 10,000 records queued with `Sink::record_blocking`, then
//!   `Writer::finish`, timed until the writer thread has written and flushed them all to a file
//!   in a temporary directory (starting the writer is not timed: it happens once per run).
//! - `audit`: one audit [`Entry`] serialized; 10,000 `Audit::request` entries until the writer
//!   thread has written them (in batches of up to 1,024; requests alone are not synced, the next
//!   outcome syncs them); and one
//!   `Audit::outcome`, which waits for its own `fdatasync` (bound by the disk, not the CPU).
//!
//! Run: `cargo bench --bench hot_path` (release build; criterion prints each median estimate and
//! throughput). One group: `cargo bench --bench hot_path -- classify`. `cargo test --all-targets`
//! runs every benchmark once, as a smoke test.

use std::borrow::Cow;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use csv::{ReaderBuilder, StringRecord, Trim};
use http::StatusCode;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use offboard::doors::csv::{COLUMNS, CsvFile, scan};
use offboard::job::{Directory, Job, ProviderKind, RawJob};
use offboard::outcome::{ErrorField, Outcome, Record, Timestamp};
use offboard::providers::http::retry_after;
use offboard::providers::{Answer, Hint, ProviderError, Transport};
use offboard::retry::{self, OnConflict, Policy, classify};
use offboard::safety::Protected;
use offboard::sink::audit::{Audit, Entry};
use offboard::sink::report::Writer;

const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
const PERSON: &str = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";

/// The directory of `offboard run` with one entry per provider kind, as `Config::directory`
/// builds it: a managed Aitronos organization and a few protected accounts (so every valid row
/// also pays for the protected-pattern match).
fn directory() -> Directory {
    let protected = [
        "breakglass@acme.example".to_owned(),
        "svc-*@*".to_owned(),
        "usr_owner*".to_owned(),
    ];
    Directory::new(ProviderKind::ALL.iter().map(|k| (k.as_str(), *k)))
        .protecting(Protected::new(&protected).unwrap())
        .managing("aitronos", "org_acme")
}

/// The CSV header of `offboard enqueue` and the demo: every column a row may have.
/// The columns of a removal due now (the rows here schedule nothing).
fn header() -> String {
    COLUMNS[..7].join(",")
}

/// The reader settings of `CsvFile`: trimmed fields, LF line ends, flexible row lengths, 64 KiB.
fn reader(data: &[u8]) -> csv::Reader<&[u8]> {
    ReaderBuilder::new()
        .trim(Trim::All)
        .terminator(csv::Terminator::Any(b'\n'))
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(data)
}

/// Reads every data row of `data` into a borrowed `RawJob` and validates it, as
/// `CsvFile::for_each` and `scan` do per row. Returns (valid, invalid).
fn parse_and_validate(dir: &Directory, data: &[u8]) -> (u64, u64) {
    let mut reader = reader(data);
    // Header names normalized as `CsvFile::open` does (lowercase, trimmed, no BOM).
    let headers: StringRecord = reader
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let mut record = StringRecord::new();
    let (mut ok, mut bad) = (0, 0);
    while reader.read_record(&mut record).unwrap() {
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) || record.len() != headers.len() {
            continue;
        }
        let raw: RawJob<'_> = record.deserialize(Some(&headers)).unwrap();
        match dir.validate(&raw, Some(line)) {
            Ok(job) => {
                black_box(job);
                ok += 1;
            }
            Err(e) => {
                black_box(e);
                bad += 1;
            }
        }
    }
    (ok, bad)
}

fn parse_validate(c: &mut Criterion) {
    const ROWS: usize = 1_000;
    let dir = directory();
    // (name, row fields in COLUMNS order, valid). Rows without a `job_id` get a random UUID v4
    // from validation, as in a real CSV; `factory_with_job_id` shows the cost without that draw.
    let cases: [(&str, String, bool); 8] = [
        (
            "factory_email",
            "factory,ann@acme.example,,,,offboarding,it@acme.example".into(),
            true,
        ),
        (
            "aitronos_usr_id_org",
            "aitronos,usr_2kR9xQ7bLm,org_acme,,,,".into(),
            true,
        ),
        ("telnyx_uuid", format!("telnyx,{PERSON},,,,,"), true),
        ("aerospike_uuid", format!("aerospike,{PERSON},,,,,"), true),
        (
            "cognee_uuid_tenant",
            format!("cognee,{PERSON},{TENANT},,,,"),
            true,
        ),
        (
            "aitronos_by_email",
            "aitronos,Ann@Acme.example,org_acme,,,,".into(),
            true,
        ),
        (
            "factory_with_job_id",
            "factory,ann@acme.example,,,ticket-4711-ann,,".into(),
            true,
        ),
        (
            "invalid_aitronos_id",
            "aitronos,2kR9xQ7bLm,org_acme,,,,".into(),
            false,
        ),
    ];
    let mut g = c.benchmark_group("parse_validate");
    g.throughput(Throughput::Elements(ROWS as u64));
    for (name, row, valid) in cases {
        let mut data = header();
        data.push('\n');
        for _ in 0..ROWS {
            data.push_str(&row);
            data.push('\n');
        }
        let expected = if valid {
            (ROWS as u64, 0)
        } else {
            (0, ROWS as u64)
        };
        assert_eq!(
            parse_and_validate(&dir, data.as_bytes()),
            expected,
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| parse_and_validate(&dir, black_box(data.as_bytes())))
        });
    }

    // The whole scan pass over a file, through the public CSV door.
    const FILE_ROWS: usize = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rows.csv");
    let mut text = header();
    text.push('\n');
    for i in 0..FILE_ROWS {
        let uuid = |k: u128| uuid::Uuid::from_u128((k << 64) | i as u128).to_string();
        let row = match ProviderKind::ALL[i % 5] {
            ProviderKind::Factory => format!("factory,p{i}@acme.example,,,,,"),
            ProviderKind::Aitronos => format!("aitronos,usr_b{i},org_acme,,,,"),
            ProviderKind::Telnyx => format!("telnyx,{},,,,,", uuid(3)),
            ProviderKind::Aerospike => format!("aerospike,{},,,,,", uuid(4)),
            ProviderKind::Cognee => format!("cognee,{},{TENANT},,,,", uuid(5)),
        };
        text.push_str(&row);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let file = CsvFile::open(&path).unwrap();
    let plan = scan(&file, &dir, 5, |r| panic!("invalid row: {r:?}")).unwrap();
    assert_eq!(plan.removable(), FILE_ROWS as u64);
    g.throughput(Throughput::Elements(FILE_ROWS as u64));
    g.sample_size(20);
    g.bench_function("csv_scan_file_10k_mixed", |b| {
        b.iter(|| scan(&file, &dir, 5, |r| drop(black_box(r))).unwrap())
    });
    g.finish();
}

fn answer(status: u16, hint: Hint) -> Result<Answer, Transport> {
    Ok(Answer::new(StatusCode::from_u16(status).unwrap(), hint))
}

/// An error answer as an adapter reads it: the provider's message, its request id, maybe a wait.
fn error_answer(status: u16, hint: Hint, wait: Option<Duration>) -> Result<Answer, Transport> {
    let mut a = Answer::new(StatusCode::from_u16(status).unwrap(), hint);
    a.error = Some(ProviderError {
        code: Some(status.to_string()),
        message: "the provider's error message".into(),
    });
    a.request_id = Some("req_01HZX3".into());
    a.wait = wait;
    Ok(a)
}

fn classify_group(c: &mut Criterion) {
    let cases: [(&str, Result<Answer, Transport>, bool); 9] = [
        ("204_removed", answer(204, Hint::Removed), false),
        ("200_removed", answer(200, Hint::Removed), false),
        ("404_not_a_member", answer(404, Hint::NotAMember), false),
        ("409_conflict", error_answer(409, Hint::None, None), false),
        (
            "429_retry_after",
            error_answer(429, Hint::None, Some(Duration::from_secs(7))),
            false,
        ),
        (
            "503_server_error",
            error_answer(503, Hint::None, None),
            false,
        ),
        (
            "401_refreshable",
            error_answer(401, Hint::TokenExpired, None),
            true,
        ),
        (
            "401_unauthorized",
            error_answer(401, Hint::None, None),
            false,
        ),
        (
            "transport_timeout",
            Err(Transport::Timeout("operation timed out".into())),
            false,
        ),
    ];
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for (name, result, refreshable) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| classify(black_box(result), black_box(*refreshable)))
        });
    }
    // Sanity: the table says what the benchmark names claim.
    assert_eq!(classify(&cases[0].1, false), retry::Decision::Removed);
    assert_eq!(classify(&cases[2].1, false), retry::Decision::AlreadyAbsent);

    let now = SystemTime::now();
    let mut secs = HeaderMap::new();
    secs.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    let mut date = HeaderMap::new();
    let at = httpdate::fmt_http_date(now + Duration::from_secs(30));
    date.insert(RETRY_AFTER, HeaderValue::from_str(&at).unwrap());
    g.bench_function("retry_after_seconds", |b| {
        b.iter(|| retry_after(black_box(&secs), now))
    });
    g.bench_function("retry_after_http_date", |b| {
        b.iter(|| retry_after(black_box(&date), now))
    });

    let policy = Policy {
        max_attempts: 5,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        max_elapsed: Duration::from_secs(300),
        on_conflict: OnConflict::Retry,
        max_conflict_retries: 3,
        max_rate_limit_wait: Duration::from_secs(600),
    };
    g.bench_function("policy_schedule_first_step", |b| {
        b.iter(|| black_box(&policy).schedule().next())
    });
    g.finish();
}

/// A record as a lane writes it for a removal.
fn removed_record(i: usize) -> Record {
    Record {
        job_id: format!("0f8e3c4e-5b7a-4d6e-9c1f-{i:012}"),
        line: Some(i as u64 + 2),
        provider: Some("aitronos".into()),
        organization: Some("org_acme".into()),
        user: Some(format!("usr_b{i}")),
        resolved_user: None,
        absence: None,
        outcome: Outcome::Removed,
        reason: None,
        http_status: Some(204),
        attempts: 1,
        provider_request_id: Some("req_01HZX3K9".into()),
        error: None,
        due_at: None,
        started_at: Some(Timestamp::now()),
        finished_at: Timestamp::now(),
    }
}

/// A record as a lane writes it for a failure, with the provider's error.
fn failed_record() -> Record {
    Record {
        outcome: Outcome::Failed,
        reason: Some(offboard::outcome::Reason::RetriesExhausted),
        http_status: Some(503),
        attempts: 5,
        error: Some(ErrorField {
            code: "retries_exhausted".into(),
            message: "Service temporarily unavailable, please retry".into(),
        }),
        ..removed_record(7)
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes of the file at `path`.
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn report(c: &mut Criterion) {
    let mut g = c.benchmark_group("report");
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(1024);
    for (name, record) in [
        ("record_json_line_removed", removed_record(42)),
        ("record_json_line_failed", failed_record()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                serde_json::to_writer(&mut buf, black_box(&record)).unwrap();
                buf.push(b'\n');
                buf.len()
            })
        });
    }

    const N: usize = 10_000;
    let rt = current_thread();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("report.jsonl");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("writer_sink_10k_records_to_file", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records: Vec<Record> = (0..N).map(removed_record).collect();
                let (writer, sink) = Writer::start(&path, false).unwrap();
                let start = Instant::now();
                for r in records {
                    sink.record_blocking(r);
                }
                let tally = sink.live().clone();
                drop(sink);
                rt.block_on(writer.finish()).unwrap();
                total += start.elapsed();
                assert_eq!(tally.summary().total(Outcome::Removed), N as u64);
            }
            total
        })
    });
    assert!(size(&path) > 0);
    g.finish();
}

fn audit(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    let dir = directory();
    let job: Job = dir
        .validate(
            &RawJob {
                provider: Some(Cow::Borrowed("aitronos")),
                user: Some(Cow::Borrowed("usr_2kR9xQ7bLm")),
                organization: Some(Cow::Borrowed("org_acme")),
                reason: Some(Cow::Borrowed("offboarding")),
                requested_by: Some(Cow::Borrowed("it@acme.example")),
                ..RawJob::default()
            },
            Some(2),
        )
        .unwrap();
    let entry = Entry {
        kind: "request".into(),
        time: "2026-04-20T09:30:00.123Z".into(),
        job_id: Cow::Borrowed(&job.id),
        provider: Cow::Borrowed(&job.provider),
        organization: job.subject.organization().map(Cow::Owned),
        user: Cow::Owned(job.subject.user()),
        requested_by: job.requested_by.as_deref().map(Cow::Borrowed),
        reason: job.reason.as_deref().map(Cow::Borrowed),
        attempt: 1,
        http_status: Some(204),
        provider_request_id: Some("req_01HZX3K9".into()),
        outcome: None,
    };
    let mut buf = Vec::with_capacity(1024);
    g.throughput(Throughput::Elements(1));
    g.bench_function("entry_json_line", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&entry)).unwrap();
            buf.push(b'\n');
            buf.len()
        })
    });

    const N: usize = 10_000;
    let rt = current_thread();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.jsonl");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("request_10k_written", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A fresh log each time: opening reads the last MiB of an existing one.
                let _ = std::fs::remove_file(&path);
                let (audit, thread) = Audit::open(&path).unwrap();
                let start = Instant::now();
                rt.block_on(async {
                    for i in 0..N {
                        audit
                            .request(&job, 1, Some(204), Some("req_01HZX3K9"))
                            .await;
                        black_box(i);
                    }
                });
                drop(audit);
                thread.join().unwrap().unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    assert!(size(&path) > 0);

    let _ = std::fs::remove_file(&path);
    let (log, thread) = Audit::open(&path).unwrap();
    let record = removed_record(1);
    g.throughput(Throughput::Elements(1));
    g.bench_function("outcome_confirmed_fdatasync", |b| {
        b.iter(|| {
            rt.block_on(log.outcome(black_box(&record), Some(&job)))
                .unwrap()
        })
    });
    drop(log);
    thread.join().unwrap().unwrap();
    g.finish();
}

criterion_group!(benches, parse_validate, classify_group, report, audit);
criterion_main!(benches);

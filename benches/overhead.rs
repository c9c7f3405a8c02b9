//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! Run: `cargo bench --bench overhead` (release build). Loopback only.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

/// The i-th person of a provider, as its id and organization.
fn person(kind: ProviderKind, i: usize) -> (Option<&'static str>, String) {
    let uuid = |k: u128| uuid::Uuid::from_u128((k << 64) | i as u128).to_string();
    match kind {
        ProviderKind::Factory => (None, format!("p{i}@bench.example")),
        ProviderKind::Aitronos => (Some("org_bench"), format!("usr_b{i}")),
        ProviderKind::Telnyx => (None, uuid(3)),
        ProviderKind::Aerospike => (None, uuid(4)),
        ProviderKind::Cognee => (Some("7b09cdc3-8948-47f0-aa62-74ac943d6c59"), uuid(5)),
    }
}

fn write_csv(path: &Path, rows: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "provider,user,organization").unwrap();
    for r in 0..rows {
        let kind = ProviderKind::ALL[r % 5];
        let (org, user) = person(kind, r / 5);
        writeln!(f, "{kind},{user},{}", org.unwrap_or("")).unwrap();
    }
}

fn config(sandbox: Option<&Sandbox>) -> String {
    let mut out = String::from("[safety]\nmax_removals_per_run = 100000000\n");
    for kind in ProviderKind::ALL {
        let base = sandbox.map_or("http://127.0.0.1:9".to_owned(), |s| s.base_url(kind));
        let token_url = sandbox.map_or("http://127.0.0.1:9/t".to_owned(), |s| s.token_url());
        let cred = match kind {
            ProviderKind::Factory | ProviderKind::Telnyx => format!(
                "token_env = \"SANDBOX_{}_TOKEN\"",
                kind.as_str().to_uppercase()
            ),
            ProviderKind::Aerospike => format!(
                "token_url = \"{token_url}\"\nclient_id_env = \"SANDBOX_AEROSPIKE_CLIENT_ID\"\nclient_secret_env = \"SANDBOX_AEROSPIKE_CLIENT_SECRET\""
            ),
            _ => format!(
                "api_key_env = \"SANDBOX_{}_API_KEY\"",
                kind.as_str().to_uppercase()
            ),
        };
        out.push_str(&format!(
            "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{base}\"\n{cred}\nrate_per_second = 1000000\nburst = 1000\nmax_in_flight = 64\n\n"
        ));
    }
    out
}

/// Runs the binary, sampling its peak RSS (VmHWM) until it exits. Returns (seconds, peak KiB).
fn measure(args: &[&str], env: &[(&'static str, String)]) -> (f64, u64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (start.elapsed().as_secs_f64(), peak)
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows = std::env::var("OFFBOARD_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000usize);

    // Overhead: a full run of `rows` jobs.
    let mut seed = Seed::default();
    for r in 0..rows {
        let kind = ProviderKind::ALL[r % 5];
        let (org, user) = person(kind, r / 5);
        seed = seed.member(kind, org, &user);
    }
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::plain(seed)))
        .unwrap();
    let csv = dir.path().join("bench.csv");
    write_csv(&csv, rows);
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, config(Some(&sandbox))).unwrap();
    let report = dir.path().join("bench.report.jsonl");
    let env = sandbox.env();
    let (secs, peak) = measure(
        &[
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        &env,
    );
    let done = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"removed\""))
        .count();
    assert_eq!(done, rows, "every job removed");
    println!(
        "overhead: {rows} jobs in {secs:.2} s = {:.0} jobs/s, peak RSS {:.1} MiB",
        rows as f64 / secs,
        peak as f64 / 1024.0
    );
    drop(sandbox);

    // Memory of the scan (validation, duplicates, plan) as the file grows.
    let dry_cfg = dir.path().join("dry.toml");
    std::fs::write(&dry_cfg, config(None)).unwrap();
    let fake: Vec<(&'static str, String)> = [
        "SANDBOX_FACTORY_TOKEN",
        "SANDBOX_TELNYX_TOKEN",
        "SANDBOX_AITRONOS_API_KEY",
        "SANDBOX_COGNEE_API_KEY",
        "SANDBOX_AEROSPIKE_CLIENT_ID",
        "SANDBOX_AEROSPIKE_CLIENT_SECRET",
    ]
    .into_iter()
    .map(|k| (k, "x".to_owned()))
    .collect();
    for n in [10_000usize, 100_000, 1_000_000] {
        let csv = dir.path().join(format!("dry{n}.csv"));
        write_csv(&csv, n);
        let (secs, peak) = measure(
            &[
                "run",
                "--dry-run",
                "--csv",
                csv.to_str().unwrap(),
                "--config",
                dry_cfg.to_str().unwrap(),
            ],
            &fake,
        );
        println!(
            "scan: {n} rows in {secs:.2} s, peak RSS {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
}

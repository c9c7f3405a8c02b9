//! `offboard reconcile` at scale: five providers of 100,000 members each
//! (`OFFBOARD_BENCH_RECONCILE_MEMBERS`) against a fast sandbox, a roster of all but 1% of them.
//! Reported: wall time, the requests sent (against the pages the lists need: nothing read
//! twice), the peak RSS (target: under 256 MB), the orphans found (checked exact).
//!
//! Run: `cargo bench --bench reconcile`. Loopback only.

mod common;

use std::io::Write;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

const ORG: &str = "org_bench";
const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";

fn main() {
    if !common::asked_to_measure() {
        return;
    }
    let members = common::env_usize("OFFBOARD_BENCH_RECONCILE_MEMBERS", 100_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(members));
}

fn email(i: usize) -> String {
    format!("r{i}@bench.example")
}

fn id(kind: ProviderKind, i: usize) -> String {
    match kind {
        ProviderKind::Factory => email(i),
        ProviderKind::Aitronos => format!("usr_r{i}"),
        ProviderKind::Telnyx => format!("tx-{i}"),
        ProviderKind::Aerospike => format!("00000000-0000-4000-8000-{i:012}"),
        ProviderKind::Cognee => format!("00000000-0000-4000-9000-{i:012}"),
    }
}

fn org(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Aitronos => Some(ORG),
        ProviderKind::Cognee => Some(TENANT),
        _ => None,
    }
}

async fn bench(members: usize) {
    let mut seed = Seed::default();
    for kind in ProviderKind::ALL {
        for i in 0..members {
            seed = seed.member_with_email(kind, org(kind), &id(kind, i), &email(i));
        }
    }
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    let text = common::config(Some(&sandbox), |_| common::Pace::UNLIMITED)
        .replace(
            "[providers.aitronos]\n",
            &format!("[providers.aitronos]\norganization = \"{ORG}\"\n"),
        )
        .replace(
            "[providers.cognee]\n",
            &format!("[providers.cognee]\norganization = \"{TENANT}\"\n"),
        )
        .replace(
            "[safety]\n",
            &format!(
                "[safety]\nprotected = [\"{}\"]\n",
                offboard::sandbox::SANDBOX_OWNER_EMAIL
            ),
        );
    std::fs::write(&config, text).unwrap();
    let roster = dir.path().join("roster.csv");
    let missing = members / 100;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&roster).unwrap());
        writeln!(f, "email").unwrap();
        for i in missing..members {
            writeln!(f, "{}", email(i)).unwrap();
        }
        f.flush().unwrap();
    }
    let (report, out) = (dir.path().join("r.jsonl"), dir.path().join("orphans.csv"));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let args = [
        "reconcile".to_owned(),
        "--roster".into(),
        path(&roster),
        "--config".into(),
        path(&config),
        "--report".into(),
        path(&report),
        "--out".into(),
        path(&out),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = sandbox.log().len();
    let run = common::measure(&args, &sandbox.env(), || false);
    assert!(run.succeeded, "reconcile failed");
    let log = sandbox.log();
    let requests = log.len() - before;
    let per_kind: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|k| {
            let n = log[before..].iter().filter(|l| l.kind == *k).count();
            format!("{k} {n}")
        })
        .collect();
    let orphans = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert_eq!(orphans, missing * 5, "exactly the missing ones");
    println!(
        "reconcile: 5 providers x {members} members in {:.1} s, {requests} requests ({}), peak RSS {:.0} MiB, CPU {:.1} s, {orphans} orphans (exact)",
        run.seconds,
        per_kind.join(", "),
        run.peak_mib(),
        run.cpu_seconds
    );
}

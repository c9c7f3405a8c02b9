//! What the benches share: generated people, CSV files, configs and a child `offboard` process
//! whose peak RSS and CPU time are read from the kernel. Everything points at the sandbox on 127.0.0.1.
#![allow(dead_code)] // each bench uses its own part

use std::io::Write;
use std::ops::Range;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, Seed};

/// The i-th person of a provider, as its organization and user.
pub fn person(kind: ProviderKind, i: usize) -> (Option<&'static str>, String) {
    let uuid = |k: u128| uuid::Uuid::from_u128((k << 64) | i as u128).to_string();
    match kind {
        ProviderKind::Factory => (None, format!("p{i}@bench.example")),
        ProviderKind::Aitronos => (Some("org_bench"), format!("usr_b{i}")),
        ProviderKind::Telnyx => (None, uuid(3)),
        ProviderKind::Aerospike => (None, uuid(4)),
        ProviderKind::Cognee => (Some("7b09cdc3-8948-47f0-aa62-74ac943d6c59"), uuid(5)),
    }
}

/// `rows[k]` people of each provider, interleaved round-robin as an export would mix them.
pub fn write_csv(path: &Path, rows: &[(ProviderKind, usize)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "provider,user,organization").unwrap();
    let most = rows.iter().map(|r| r.1).max().unwrap_or(0);
    for i in 0..most {
        for &(kind, n) in rows {
            if i < n {
                let (org, user) = person(kind, i);
                writeln!(f, "{kind},{user},{}", org.unwrap_or("")).unwrap();
            }
        }
    }
    f.flush().unwrap();
}

/// The sandbox's members: the people [`write_csv`] names.
pub fn seed(rows: &[(ProviderKind, usize)]) -> Seed {
    let mut seed = Seed::default();
    for &(kind, n) in rows {
        for i in 0..n {
            let (org, user) = person(kind, i);
            seed = seed.member(kind, org, &user);
        }
    }
    seed
}

/// Row r of a bench's file: the (r / 5)-th person of the (r % 5)-th provider, as [`write_csv`]
/// with [`each`] interleaves them.
fn row(r: usize) -> (ProviderKind, Option<&'static str>, String) {
    let kind = ProviderKind::ALL[r % 5];
    let (org, user) = person(kind, r / 5);
    (kind, org, user)
}

/// A CSV of `rows` (see [`row`]): files of disjoint people for several runs against one sandbox.
pub fn write_rows(path: &Path, rows: Range<usize>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "provider,user,organization").unwrap();
    for r in rows {
        let (kind, org, user) = row(r);
        writeln!(f, "{kind},{user},{}", org.unwrap_or("")).unwrap();
    }
    f.flush().unwrap();
}

/// A seed where the people of `rows` (see [`row`]) are members.
pub fn seed_rows(rows: Range<usize>) -> Seed {
    rows.map(row).fold(Seed::default(), |s, (kind, org, user)| {
        s.member(kind, org, &user)
    })
}

/// A process's peak resident set so far (VmHWM), in KiB; None once it has exited.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    kb.trim().trim_end_matches("kB").trim().parse().ok()
}

/// `n` people of every provider.
pub fn each(n: usize) -> Vec<(ProviderKind, usize)> {
    ProviderKind::ALL.iter().map(|&k| (k, n)).collect()
}

/// How a lane is paced in a bench config.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub rate: f64,
    pub burst: u32,
    pub in_flight: u32,
}

impl Pace {
    /// Far above what the machine can do: only the tool limits the run.
    pub const UNLIMITED: Pace = Pace {
        rate: 1_000_000.0,
        burst: 1000,
        in_flight: 64,
    };
}

/// A config with an entry per provider, against the sandbox (or a closed port for a dry run).
pub fn config(sandbox: Option<&Sandbox>, pace: impl Fn(ProviderKind) -> Pace) -> String {
    let mut out = String::from(
        "[safety]\nmax_removals_per_run = 100000000\nmax_removals_per_window = 100000000\n\n",
    );
    for kind in ProviderKind::ALL {
        let base = sandbox.map_or("http://127.0.0.1:9".to_owned(), |s| s.base_url(kind));
        let token_url = sandbox.map_or("http://127.0.0.1:9/t".to_owned(), |s| s.token_url());
        let upper = kind.as_str().to_uppercase();
        let cred = match kind {
            ProviderKind::Factory | ProviderKind::Telnyx => {
                format!("token_env = \"SANDBOX_{upper}_TOKEN\"")
            }
            ProviderKind::Aerospike => format!(
                "token_url = \"{token_url}\"\nclient_id_env = \"SANDBOX_AEROSPIKE_CLIENT_ID\"\nclient_secret_env = \"SANDBOX_AEROSPIKE_CLIENT_SECRET\""
            ),
            _ => format!("api_key_env = \"SANDBOX_{upper}_API_KEY\""),
        };
        let p = pace(kind);
        out.push_str(&format!(
            "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{base}\"\n{cred}\nrate_per_second = {}\nburst = {}\nmax_in_flight = {}\n\n",
            p.rate, p.burst, p.in_flight
        ));
    }
    out
}

/// Credentials for a dry run, which never connects.
pub fn fake_env() -> Vec<(&'static str, String)> {
    [
        "SANDBOX_FACTORY_TOKEN",
        "SANDBOX_TELNYX_TOKEN",
        "SANDBOX_AITRONOS_API_KEY",
        "SANDBOX_COGNEE_API_KEY",
        "SANDBOX_AEROSPIKE_CLIENT_ID",
        "SANDBOX_AEROSPIKE_CLIENT_SECRET",
    ]
    .into_iter()
    .map(|k| (k, "x".to_owned()))
    .collect()
}

/// What [`measure`] saw of the child.
pub struct Measured {
    pub seconds: f64,
    /// The child's peak resident set (`ru_maxrss`); 0 when it was killed.
    pub peak_kib: u64,
    /// User plus system CPU time of the child; 0 when it was killed.
    pub cpu_seconds: f64,
    /// Whether it exited 0.
    pub succeeded: bool,
}

impl Measured {
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// The argument that makes a bench binary run [`rusage_of`] instead of its benches.
const RUSAGE_OF: &str = "--rusage-of";

/// Runs the `offboard` binary until it exits or `done()` says the bench has seen enough (then it
/// is killed). It runs under a fresh copy of this bench binary ([`rusage_of`]), which reads the
/// kernel's exact peak RSS and CPU time of it: a child forked from the bench itself would inherit
/// the bench's own peak (the sandbox's members and logs), and sampling `VmHWM` misses the peak of
/// a run that ends between two samples.
pub fn measure(
    args: &[&str],
    env: &[(&'static str, String)],
    mut done: impl FnMut() -> bool,
) -> Measured {
    use std::io::Read;
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(RUSAGE_OF)
        .arg(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so a kill reaches `offboard` too.
        .process_group(0)
        .spawn()
        .unwrap();
    let mut polls = 0u32;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        polls += 1;
        if polls % 10 == 0 && done() {
            // SAFETY: kill(2) on the process group of our own child, not yet reaped.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            child.wait().unwrap();
            return Measured {
                seconds: start.elapsed().as_secs_f64(),
                peak_kib: 0,
                cpu_seconds: 0.0,
                succeeded: false,
            };
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut said = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    let fields: Vec<f64> = said
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "rusage of offboard: {said:?}");
    Measured {
        seconds,
        peak_kib: fields[0] as u64,
        cpu_seconds: fields[1],
        succeeded: status.success(),
    }
}

/// In a bench binary started by [`measure`]: runs the command that follows [`RUSAGE_OF`], waits
/// for it, prints its peak RSS in KiB and its CPU seconds, and exits with its status. This process
/// is freshly exec'd and small, so the child's `ru_maxrss` is its own.
fn rusage_of(command: &[String]) -> ! {
    let child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and both pointers outlive the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(reaped > 0, "wait4: {}", std::io::Error::last_os_error());
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!(
        "{} {}",
        usage.ru_maxrss,
        secs(usage.ru_utime) + secs(usage.ru_stime)
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    std::process::exit(code)
}

/// Writes `people` as a CSV and a config pointing at `sandbox`, paced by `pace`, into `dir`, then
/// runs `offboard run` on them (see [`run_file`]).
pub fn run_csv(
    dir: &Path,
    sandbox: &Sandbox,
    people: &[(ProviderKind, usize)],
    pace: impl Fn(ProviderKind) -> Pace,
    done: impl FnMut() -> bool,
) -> (Measured, PathBuf) {
    let csv = dir.join("bench.csv");
    write_csv(&csv, people);
    run_file(dir, sandbox, &csv, pace, done)
}

/// Writes a config pointing at `sandbox`, paced by `pace`, into `dir`, then runs `offboard run`
/// on `csv` (see [`measure`]). Returns what was measured and the report's path.
pub fn run_file(
    dir: &Path,
    sandbox: &Sandbox,
    csv: &Path,
    pace: impl Fn(ProviderKind) -> Pace,
    done: impl FnMut() -> bool,
) -> (Measured, PathBuf) {
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, config(Some(sandbox), pace)).unwrap();
    let report = dir.join("bench.report.jsonl");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let args = ["run", "--csv", &path(csv), "--config", &path(&cfg)];
    let run = measure(
        &[&args[..], &["--report", &path(&report)]].concat(),
        &sandbox.env(),
        done,
    );
    (run, report)
}

/// `cargo test --all-targets` runs bench targets too, without `--bench`: measure only when asked.
/// Also where a bench binary started by [`measure`] to watch `offboard` takes over.
pub fn asked_to_measure() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(RUSAGE_OF) {
        rusage_of(&args[2..]);
    }
    args.iter().any(|a| a == "--bench")
}

/// The median (sorts `v`).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A `usize` from the environment, or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The pacing profile of the pacing and isolation benches: each provider at its own rate.
pub const RATES: [(ProviderKind, f64); 5] = [
    (ProviderKind::Factory, 5.0),
    (ProviderKind::Aitronos, 20.0),
    (ProviderKind::Telnyx, 50.0),
    (ProviderKind::Aerospike, 100.0),
    (ProviderKind::Cognee, 200.0),
];

/// The burst both sides allow at a rate: a tenth of a second's worth, at least two (no provider
/// refuses a second request for arriving a millisecond early after a quiet spell).
pub fn burst_at(rate: f64) -> u32 {
    ((rate / 10.0) as u32).max(2)
}

/// The pace of a provider in [`RATES`]: its rate, its burst, room for what is in flight.
pub fn paced(kind: ProviderKind) -> Pace {
    let rate = RATES.iter().find(|r| r.0 == kind).expect("every kind").1;
    Pace {
        rate,
        burst: burst_at(rate),
        in_flight: 16,
    }
}

/// What one provider's server saw of the removals sent to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    pub accepted: usize,
    pub throttled: usize,
    pub other: usize,
    /// Seconds from the first accepted removal to the last.
    pub span: f64,
}

impl Seen {
    pub fn of(log: &[offboard::sandbox::Logged], kind: ProviderKind) -> Seen {
        let mut seen = Seen::default();
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for l in log
            .iter()
            .filter(|l| l.kind == kind && l.operation == "remove")
        {
            match l.status {
                200..=299 => {
                    seen.accepted += 1;
                    first = Some(first.map_or(l.at, |f| f.min(l.at)));
                    last = Some(last.map_or(l.at, |t| t.max(l.at)));
                }
                429 => seen.throttled += 1,
                _ => seen.other += 1,
            }
        }
        if let (Some(f), Some(l)) = (first, last) {
            seen.span = (l - f).as_secs_f64();
        }
        seen
    }

    pub fn requests(&self) -> usize {
        self.accepted + self.throttled + self.other
    }

    /// Accepted removals per second after the opening burst: the burst is sent at once, so it
    /// is taken out of the count rather than credited to the pacing.
    pub fn steady_rate(&self, burst: u32) -> f64 {
        if self.span <= 0.0 {
            return 0.0;
        }
        self.accepted.saturating_sub(burst as usize) as f64 / self.span
    }
}

//! `offboard verify`: a finished report's people asked again, read-only, with an evidence file.

use std::path::PathBuf;
use std::process::ExitCode;

use super::setup::{Ready, ready};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The JSON Lines report of `offboard run` (or of the worker). The last line of each job
    /// counts; every job that ended removed or already_absent is checked.
    #[arg(long)]
    pub report: PathBuf,
    /// The configuration file the run used [default: config/offboard.toml; with --sandbox, the
    /// embedded one].
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check against the five providers simulated on loopback. The sandbox starts afresh with
    /// the demo's members, so people an earlier `run --sandbox` removed show as still members.
    #[arg(long)]
    pub sandbox: bool,
    /// Where to write the evidence, one JSON line per person checked [default: beside the
    /// report, <report stem>.verify.jsonl].
    #[arg(long)]
    pub evidence: Option<PathBuf>,
}

/// `offboard verify`: exit 0 when every person checked is confirmed gone, 1 when anyone is still a
/// member or could not be checked, 2 for bad input (nothing asked then). Sends no removal.
pub(super) async fn command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    use crate::verify;
    let evidence = args
        .evidence
        .clone()
        .unwrap_or_else(|| verify::default_evidence_path(&args.report));
    // The whole report is read before anything is asked: a bad line ends here, nothing sent.
    let people = verify::read(&args.report).await?;

    let Ready { lanes, sandbox, .. } = ready(
        args.config.as_ref(),
        args.sandbox,
        "Sandbox: the five providers simulated on 127.0.0.1, started afresh with the demo's members; nothing leaves this machine.",
    )
    .await?;
    verify::check_providers(&args.report, &people, &lanes)?;
    let file = {
        let (path, report) = (evidence.clone(), args.report.clone());
        tokio::task::spawn_blocking(move || verify::EvidenceFile::create(&path, &report))
            .await
            .expect("creating a file does not panic")?
    };

    crate::console::say(format_args!(
        "Checking {} person(s) from {} (read-only: list and search requests only).",
        people.len(),
        args.report.display()
    ));
    let mut verified = verify::verify(&lanes, people, file).await;
    print!("{}", verify::table(&args.report, &verified));
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    if let Some(e) = verified.evidence_error.take() {
        return Err(e.into());
    }
    Ok(ExitCode::from(if verified.success() {
        0
    } else {
        super::EXIT_INCOMPLETE
    }))
}

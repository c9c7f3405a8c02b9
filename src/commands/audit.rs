//! `offboard audit verify`: an audit log checked, well formed and complete.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use anyhow::Context;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Exit 0 when well formed, complete and its SHA-256 chain intact (its head is printed); 1
    /// when jobs are unfinished, lines malformed, or the chain broken (the first line that does
    /// not fit is named).
    Verify { file: PathBuf },
}

pub(super) fn verify(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let v =
        crate::sink::audit::verify(file).with_context(|| format!("reading {}", file.display()))?;
    println!("{}: {} entries", file.display(), v.entries);
    for line in &v.malformed {
        println!("line {line}: not an audit entry (a torn record from a crash mid-write?)");
    }
    for (job, attempt) in &v.unfinished {
        println!("unfinished: job {job} sent {attempt} request(s) and has no final record");
    }
    match &v.chain {
        Ok(c) => {
            if c.unchained > 0 {
                println!(
                    "{} line(s) before the chain began (written by an earlier version)",
                    c.unchained
                );
            }
            println!("chain intact; head sha256:{}", c.head);
        }
        Err((line, why)) => println!("chain broken at line {line}: {why}"),
    }
    if v.is_complete() {
        println!("well formed and complete");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(super::EXIT_INCOMPLETE))
    }
}

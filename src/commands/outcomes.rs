//! `offboard outcomes`: what the workers publish on the outcomes exchange, line by line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::setup::load;

/// `offboard outcomes`: a private queue bound to the outcomes exchange, printed line by line.
pub(super) async fn command(
    config: Option<PathBuf>,
    follow: bool,
    idle_ms: u64,
    binding: String,
) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(config.as_ref())?;
    let idle = (!follow).then(|| Duration::from_millis(idle_ms));
    let mut out = std::io::stdout().lock();
    crate::doors::outcomes::follow(&settings.amqp, &binding, idle, |line| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

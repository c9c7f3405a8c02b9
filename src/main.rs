use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = offboard::cli::Cli::parse();
    offboard::cli::init_logging(cli.log_format);
    offboard::cli::main(cli).await
}

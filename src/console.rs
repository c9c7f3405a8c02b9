//! Messages for the person running offboard, on stderr: plain lines, or with `--log-format json`
//! one JSON log event each, so that a log shipper reading stderr never meets a line it cannot
//! parse. They are shown whatever `OFFBOARD_LOG` filters (see [`crate::commands::init_logging`]).

use std::fmt::Arguments;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// The tracing target of these messages, always enabled.
pub const TARGET: &str = "offboard::console";

/// Sends the messages as JSON log events from now on.
pub fn use_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether messages go out as JSON log events.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A message: what is happening.
pub fn say(message: Arguments) {
    if json() {
        tracing::info!(target: TARGET, "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// An error that ends the command.
pub fn error(message: Arguments) {
    if json() {
        tracing::error!(target: TARGET, "{message}");
    } else {
        eprintln!("error: {message}");
    }
}

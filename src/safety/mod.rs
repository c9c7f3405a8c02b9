//! Rails for a tool whose every action is hard to undo.
//!
//! - `guard`: the blast-radius guard, before anything is sent.
//! - `protected`: accounts never removed (matched at validation, and again by the lanes against
//!   the ids lookups and preflights find).
//! - `quarantine`: the automatic doors' people, counted, settled, and quarantined past a threshold.

mod guard;
pub mod hold;
mod protected;
pub mod quarantine;

pub use guard::*;
pub use protected::Protected;

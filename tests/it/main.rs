//! Integration tests: one binary with modules keeps link time down.
mod adapters;
mod broker;
mod csv_props;
mod deploy;
mod doubles;
mod e2e;
mod intake;
mod lookups;
mod pacing;
mod prom;
mod quarantine;
mod support;
mod tokens;
mod transport;
mod truth;
mod verify;
mod worker;

//! Integration tests: one binary with modules keeps link time down.
mod adapters;
mod csv_props;
mod e2e;
mod support;

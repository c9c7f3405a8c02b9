//! Integration tests: one binary with modules keeps link time down.
mod csv_props;
mod e2e;
mod support;

//! Integration tests: one binary with modules keeps link time down.
mod adapters;
mod broker;
mod csv_props;
mod e2e;
mod support;
mod worker;

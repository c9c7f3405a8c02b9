#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need first.
# Needs: a Rust toolchain (rustup, cargo). Everything else comes from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust with rustup first" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

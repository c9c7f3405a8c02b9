#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need first.
# Needs: a Rust toolchain (rustup, cargo), and apt on Debian for RabbitMQ and Prometheus
# (installed here if missing). Everything else comes from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust with rustup first" >&2
  exit 1
fi

# The broker tests (tests/it/broker.rs) start private RabbitMQ nodes of Debian's package.
if ! command -v rabbitmq-server >/dev/null && ! test -x /usr/sbin/rabbitmq-server; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "rabbitmq-server is missing and we are neither root nor have sudo:" >&2
    echo "install it with: apt-get install -y rabbitmq-server" >&2
    exit 1
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
  # The package may start a system node (or fail to, in a container): the tests start their
  # own on free ports, so make sure no system node keeps 5672/25672 or burns CPU.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now rabbitmq-server || true
  else
    "${SUDO[@]}" service rabbitmq-server stop >/dev/null 2>&1 || true
  fi
  "${SUDO[@]}" rabbitmqctl stop >/dev/null 2>&1 || true
  "${SUDO[@]}" pkill -u rabbitmq beam.smp || true
fi

# The deployment tests (tests/it/deploy.rs, tests/it/prom.rs) run promtool and private Prometheus
# servers of Debian's package on free loopback ports.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "prometheus/promtool are missing and we are neither root nor have sudo:" >&2
    echo "install them with: apt-get install -y prometheus" >&2
    exit 1
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
  # The package may start a system server on :9090: stop it (before any test starts its own).
  # Only what runs as the package's user `prometheus`: tests run theirs as us.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prometheus || true
  else
    "${SUDO[@]}" service prometheus stop >/dev/null 2>&1 || true
  fi
  "${SUDO[@]}" pkill -x -u prometheus prometheus || true
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

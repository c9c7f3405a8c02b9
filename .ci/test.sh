#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need first.
# Needs: a Rust toolchain (rustup, cargo), and apt on Debian for RabbitMQ, Prometheus and Python's
# venv (installed here if missing), and PyPI for the SCIM compliance checker. Everything else comes from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust with rustup first" >&2
  exit 1
fi

# Installs Debian's `package` when `command` is missing (as root, or with sudo), then stops the
# system service the package may have started: the tests start their own servers on free ports.
# Further arguments: a command that ends what the package left running.
install_missing() {
  local command=$1 package=$2 service=$3
  shift 3
  if command -v "$command" >/dev/null || test -x "/usr/sbin/$command"; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "$command is missing and we are neither root nor have sudo:" >&2
      echo "install it with: apt-get install -y $package" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now "$service" || true
  else
    "${sudo[@]}" service "$service" stop >/dev/null 2>&1 || true
  fi
  if [ $# -gt 0 ]; then
    "${sudo[@]}" "$@" >/dev/null 2>&1 || true
  fi
}

# The broker tests (tests/it/broker.rs) start private RabbitMQ nodes of Debian's package; no system
# node may keep 5672/25672 or burn CPU.
install_missing rabbitmq-server rabbitmq-server rabbitmq-server pkill -u rabbitmq beam.smp
# The deployment tests (tests/it/deploy.rs, tests/it/prom.rs) run promtool and private Prometheus
# servers; only what runs as the package's user `prometheus` is stopped, never a test's.
install_missing promtool prometheus prometheus pkill -x -u prometheus prometheus
install_missing prometheus prometheus prometheus pkill -x -u prometheus prometheus

# The SCIM compliance test (tests/it/intake.rs) runs python-scim's checker, from PyPI, in a private
# virtualenv under target/: it needs Python 3 with venv (Debian's python3-venv).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

# syntax=docker/dockerfile:1
# offboard: the RabbitMQ worker (default) or any other subcommand.
#
#   docker build -t offboard .
#   docker run --rm -v ./config/docker.toml:/etc/offboard/offboard.toml:ro \
#     -e OFFBOARD_AMQP_URL=amqp://user:pass@broker:5672/%2f -e FACTORY_API_KEY=... offboard
#   docker run --rm ... offboard run --csv /data/leavers.csv --dry-run --config /etc/offboard/offboard.toml
#
# Metrics, /healthz and /readyz on 9464 (config/docker.toml listens on 0.0.0.0:9464).

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Dependencies first, in their own layer: a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/it \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
COPY config ./config
COPY examples ./examples
# COPY keeps the sources' times, which may be older than the stub's build: touch the crate roots
# so cargo rebuilds ours. (tests/it/main.rs stays a stub: only the manifest's [[test]] needs it.)
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/offboard /offboard

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 offboard \
 && useradd --system --uid 10001 --gid offboard --home-dir /var/lib/offboard --shell /usr/sbin/nologin offboard \
 && mkdir -p /etc/offboard /var/lib/offboard \
 && chown offboard:offboard /var/lib/offboard
COPY --from=builder /offboard /usr/local/bin/offboard
# A default config (compose mounts its own over it, read-only).
COPY config/docker.toml /etc/offboard/offboard.toml
# Every subcommand (worker, run, enqueue, dlq) reads it without --config.
ENV OFFBOARD_CONFIG=/etc/offboard/offboard.toml
# The worker's report (worker.report in the config) lives here: mount a volume to keep it.
VOLUME ["/var/lib/offboard"]
WORKDIR /var/lib/offboard
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["offboard"]
CMD ["worker", "--config", "/etc/offboard/offboard.toml"]

# One image with every Causeway service, the `causeway` CLI, the Avro contracts and the domains'
# topology files; the Helm chart (helm/causeway) runs each service from it with its own command.
#
#   docker build -t causeway:0.1.0 .
#
# Build stage: the whole workspace in release mode (librdkafka is built from the bundled sources).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p schema-registry -p command-gateway -p aggregate-processor -p projector-redis \
      -p projector-clickhouse -p saga-orchestrator -p dlq-reprocessor -p causeway-cli

# Runtime: Debian slim with the shared libraries the binaries link (OpenSSL, zlib) and CA certificates;
# a shell for the provisioning job. Runs as a non-root user; the root filesystem may be read-only.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 causeway && useradd --uid 65532 --gid 65532 --no-create-home causeway
COPY --from=build /src/target/release/schema-registry /src/target/release/command-gateway \
     /src/target/release/aggregate-processor /src/target/release/projector-redis \
     /src/target/release/projector-clickhouse /src/target/release/saga-orchestrator \
     /src/target/release/dlq-reprocessor /src/target/release/causeway /usr/local/bin/
COPY services/schema-registry/schema-registry.toml services/command-gateway/command-gateway.toml \
     services/aggregate-processor/aggregate-processor.toml services/projector-redis/projector-redis.toml \
     services/projector-clickhouse/projector-clickhouse.toml services/saga-orchestrator/saga-orchestrator.toml \
     services/dlq-reprocessor/dlq-reprocessor.toml /etc/causeway/
COPY avro /etc/causeway/avro
COPY domains/orders/topology.toml /etc/causeway/topology/orders.toml
COPY domains/counter/topology.toml /etc/causeway/topology/counter.toml
USER 65532:65532
EXPOSE 9400

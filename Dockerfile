# syntax=docker/dockerfile:1
# The lakehouse image: `lakehouse`, `lakehouse-mock` and the Ballista cluster's
# `lakehouse-scheduler` and `lakehouse-executor`, with the shipped silver and
# gold specs under /app (the working directory, so the default spec paths work).

FROM rust:1.95-bookworm AS builder
# rdkafka builds librdkafka from source: cmake, and the SSL/SASL/zlib/zstd headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lakehouse -p lakehouse-mock -p lakehouse-cluster --bins \
 && cp target/release/lakehouse target/release/lakehouse-mock \
       target/release/lakehouse-scheduler target/release/lakehouse-executor /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 zlib1g libzstd1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app lakehouse
COPY --from=builder /usr/local/bin/lakehouse /usr/local/bin/lakehouse-mock \
     /usr/local/bin/lakehouse-scheduler /usr/local/bin/lakehouse-executor /usr/local/bin/
WORKDIR /app
COPY layers /app/layers
COPY sql /app/sql
COPY docker/lakehouse.toml /etc/lakehouse/lakehouse.toml
ENV LAKEHOUSE_CONFIG=/etc/lakehouse/lakehouse.toml
# Spill files of silver/gold go to the system temp dir.
RUN mkdir -p /app/tmp && chown lakehouse /app/tmp
ENV TMPDIR=/app/tmp
USER lakehouse
CMD ["lakehouse", "--help"]

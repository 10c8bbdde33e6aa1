# syntax=docker/dockerfile:1
# Container image with the services (processor, sink, ingress) and the
# operator binary (flashsale-admin); the test tooling is not shipped.
# docker-compose.yml runs each service from it with a different command.
# The local dev scripts (dev/up) do not use Docker.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# rdkafka compiles librdkafka from source with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io download and the target dir between builds;
# because target/ is a cache mount (not part of the image layer) the binaries
# are copied out in the same step.  --locked: build exactly Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
       -p flashsale-processors -p flashsale-sinks -p flashsale-ingress -p flashsale-admin --bins \
 && mkdir -p /out \
 && cp target/release/flashsale-processor target/release/flashsale-sink \
       target/release/flashsale-ingress target/release/flashsale-admin /out/ \
 && ls -l /out

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# curl is only for the compose healthchecks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home flashsale
COPY --from=builder /out/ /usr/local/bin/
USER flashsale
ENV RUST_LOG=info
# Compose gives every service its own command; a bare `docker run` starts the
# processor.
CMD ["flashsale-processor"]

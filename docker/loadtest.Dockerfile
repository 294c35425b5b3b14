# syntax=docker/dockerfile:1
# The load tester, for the in-cluster Job (k8s/loadtest): a static-enough binary on a slim base,
# the scenario files at /scenarios, non-root. No libtorch: the load tester does not link it.
#
#   docker build -f docker/loadtest.Dockerfile -t torchship/loadtest:0.1.0 .

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies alone: the workspace's manifests with stub sources.
COPY Cargo.toml Cargo.lock ./
COPY crates/protocol/Cargo.toml crates/protocol/
COPY crates/server/Cargo.toml crates/server/build.rs crates/server/
COPY crates/deployer/Cargo.toml crates/deployer/
COPY crates/kube-standin/Cargo.toml crates/kube-standin/
COPY loadtest/Cargo.toml loadtest/
RUN for d in crates/protocol crates/server crates/deployer crates/kube-standin loadtest; do \
        mkdir -p "$d/src" && touch "$d/src/lib.rs" && echo 'fn main() {}' > "$d/src/main.rs"; \
    done \
    && cargo build --release --locked -p loadtest
COPY crates/protocol crates/protocol
COPY loadtest loadtest
RUN find crates/protocol loadtest -path '*/src/*.rs' -exec touch {} + \
    && cargo build --release --locked -p loadtest \
    && strip --strip-debug -o /loadtest target/release/loadtest

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="torchship loadtest" \
      org.opencontainers.image.description="Load tester for KServe v2 servers: open/closed loop, corrected latency, HPA watch" \
      org.opencontainers.image.source="https://github.com/torchship/torchship" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 loadtest \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin loadtest
COPY --from=builder /loadtest /usr/local/bin/loadtest
COPY loadtest/scenarios /scenarios
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/loadtest"]
CMD ["--help"]

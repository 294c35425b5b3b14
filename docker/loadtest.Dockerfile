# syntax=docker/dockerfile:1
# The load tester, for the in-cluster Job (k8s/loadtest): a static-enough binary on a slim base,
# the scenario files at /scenarios, non-root. No libtorch: the load tester does not link it.
#
#   docker build -f docker/loadtest.Dockerfile -t torchship/loadtest:0.1.0 .

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies alone: every workspace member's manifest with stub sources (cargo refuses a
# workspace with one missing; crates/deployer/tests/images.rs keeps this list equal to Cargo.toml's),
# and the gRPC crate's build script with the .proto it compiles.
COPY Cargo.toml Cargo.lock ./
COPY crates/protocol/Cargo.toml crates/protocol/
COPY crates/grpc/Cargo.toml crates/grpc/build.rs crates/grpc/
COPY crates/grpc/proto crates/grpc/proto
COPY crates/server/Cargo.toml crates/server/
COPY crates/deployer/Cargo.toml crates/deployer/
COPY crates/kube-client/Cargo.toml crates/kube-client/
COPY crates/kube-standin/Cargo.toml crates/kube-standin/
COPY crates/cluster-e2e/Cargo.toml crates/cluster-e2e/
COPY crates/browser-check/Cargo.toml crates/browser-check/
COPY loadtest/Cargo.toml loadtest/
RUN for d in crates/protocol crates/grpc crates/server crates/deployer crates/kube-client \
             crates/kube-standin crates/cluster-e2e crates/browser-check loadtest; do \
        mkdir -p "$d/src" && touch "$d/src/lib.rs" && echo 'fn main() {}' > "$d/src/main.rs"; \
    done \
    && cargo build --release --locked -p loadtest
# The load tester and the crates it uses (sources touched: COPY keeps their older times).
COPY crates/protocol crates/protocol
COPY crates/grpc crates/grpc
COPY crates/kube-client crates/kube-client
COPY loadtest loadtest
RUN find crates loadtest -path '*/src/*.rs' -exec touch {} + \
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

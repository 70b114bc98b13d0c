# syntax=docker/dockerfile:1
# tealight images. The last stage, `cuda`, is the default target:
#
#   docker build -t tealight .                            # CUDA (H100/H200: compute capability 9.0)
#   docker build -t tealight:cpu --target cpu .           # CPU only
#   docker build --build-arg CUDA_COMPUTE_CAP=80 -t tealight:a100 .
#
#   docker run --gpus all -v ./Qwen3-4B:/model -p 6666:8000 tealight \
#     serve --model /model --served-model-name Qwen3-4B --api-key 111
#
# CUDA 13.0 matches driver 580; PTX built by a newer nvcc does not load on an older driver, so a
# newer CUDA_VERSION needs a driver at least as new (and TEALIGHT_ALLOW_NEWER_PTX=1 for build.rs).

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04
ARG RUST_VERSION=1.95.0

# ---- CUDA build ----------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build-cuda
ARG RUST_VERSION
ARG CUDA_COMPUTE_CAP=90
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
  | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
# The link needs libcuda.so: the toolkit's stub (the real one comes from the driver at run time).
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} LIBRARY_PATH=/usr/local/cuda/lib64/stubs
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --features cuda --bin tealight \
 && cp target/release/tealight /usr/local/bin/tealight

# ---- CPU build -----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build-cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --bin tealight \
 && cp target/release/tealight /usr/local/bin/tealight

# ---- CPU runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS cpu
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 tealight
COPY --from=build-cpu /usr/local/bin/tealight /usr/local/bin/tealight
COPY models/qwen3-tiny /opt/tealight/models/qwen3-tiny
ENV TEALIGHT_DEFAULT_MODEL=/opt/tealight/models/qwen3-tiny
USER 1000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["tealight"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- CUDA runtime (default) ----------------------------------------------------------------------
# The `runtime` flavour carries cudart, cuBLAS/cuBLASLt, cuRAND and NVRTC; libcuda.so.1 comes
# from the host driver through the NVIDIA container toolkit (`--gpus all`).
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1001 tealight
COPY --from=build-cuda /usr/local/bin/tealight /usr/local/bin/tealight
COPY models/qwen3-tiny /opt/tealight/models/qwen3-tiny
ENV TEALIGHT_DEFAULT_MODEL=/opt/tealight/models/qwen3-tiny
USER 1001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["tealight"]
CMD ["serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]

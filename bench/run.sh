#!/usr/bin/env bash
# The load benchmark: our release binary against a bare hyper server, both driven by wrk.
# Usage: bench/run.sh [bench flags: --duration 10 --rounds 3 --connections 16 --threads 2 ...]
# Set BENCH_MUSL=0 to skip the static musl build. Loopback only; about 3 minutes of load
# after the builds. The run: bench/results/http-<UTC time>.json, and its table beside it (.md)
# rendered by bench/report.py; docs/performance.md quotes committed runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "load generator"
if ! command -v wrk >/dev/null; then
    as_root apt-get install -y wrk >/dev/null || {
        as_root apt-get update >/dev/null && as_root apt-get install -y wrk >/dev/null
    }
fi
wrk --version 2>&1 | head -n 1 >&2 || true

step "release build (lto=fat: several minutes the first time)"
cargo build --release --locked -p gcp-kafka-auth-handler -p fake-google -p bench

musl_args=()
if [ "${BENCH_MUSL:-1}" != 0 ]; then
    step "static musl build"
    musl_target=x86_64-unknown-linux-musl
    musl_bin="target/$musl_target/release/gcp-kafka-auth-handler"
    if { rustup target list --installed | grep -qx "$musl_target" || rustup target add "$musl_target"; } &&
        { command -v musl-gcc >/dev/null || as_root apt-get install -y musl-tools >/dev/null; } &&
        CC_x86_64_unknown_linux_musl=musl-gcc \
            cargo build --release --locked --target "$musl_target" \
            -p gcp-kafka-auth-handler --bin gcp-kafka-auth-handler; then
        file "$musl_bin" >&2 || true
        musl_args=(--musl-binary "$musl_bin")
    else
        echo "the static musl build failed here; the report says so" >&2
    fi
fi

step "benchmark"
mkdir -p bench/results
run="bench/results/http-$(date -u +%Y%m%dT%H%M%SZ).json"
target/release/bench "${musl_args[@]}" --out "$run" "$@"

step "figures: ${run%.json}.md"
python3 bench/report.py --run "$run"
echo "to quote it: add a block for $run to docs/performance.md, run bench/report.py --write," \
  "and commit the run's .json and .md" >&2

#!/usr/bin/env bash
# Issue 15: the Kafka proxy measured side by side with a direct connection (and with
# grepplabs/kafka-proxy when its binary is given), on the interop suite's 3-node TLS cluster,
# in interleaved rounds, all driven by one load generator (interop.clients.KafkaLoad).
#
#   bench/kafka.sh [--kafka-proxy PATH] [--rounds N] [--secs S] [--idle-connections N]
#                  [--perf DIR]   (perf record each proxy through its first produce and consume)
#
# Builds our release binary (symbols kept so `perf` can read a profile of it), fake-google
# and the Java programs, then runs interop/tests/test_14_proxy_bench.py with INTEROP_BENCH=full.
# Figures: bench/results/kafka-<UTC time>.json and .md; docs/performance.md quotes a run through a
# block that bench/report.py renders from its JSON (commit the JSON and .md it quotes).
# About 20 s of load per path and figure kind and round: ~12 minutes for 3 paths x 3 rounds.
# How to build kafka-proxy out of tree: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*" >&2; }

kafka_proxy="" rounds=3 secs=8 idle=1000 perf_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka-proxy) kafka_proxy="$(realpath "$2")"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --idle-connections) idle="$2"; shift 2 ;;
    --perf) mkdir -p "$2"; perf_dir="$(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/kafka.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
if [ -n "$kafka_proxy" ] && [ ! -x "$kafka_proxy" ]; then
  echo "bench/kafka.sh: --kafka-proxy $kafka_proxy is not an executable" >&2
  exit 64
fi

# 1,000 idle client connections are 2,000 descriptors in a proxy (client + broker socket).
ulimit -n 8192

step "release build of the proxy (lto as shipped; symbols and line tables kept for perf)"
CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release --locked -p gcp-kafka-auth-handler --bin gcp-kafka-auth-handler
step "fake-google and the sidecar (debug: they are not measured)"
cargo build --locked -p fake-google --bin fake-google -p gcp-kafka-auth-handler --bin gcp-kafka-auth-handler
step "Java: the brokers, the validator, the load generator"
mvn -q -B -Dstyle.color=never -f interop/java/pom.xml -pl clients-4,broker,validator -am package

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p bench/results
export INTEROP_BENCH=full INTEROP_BENCH_ROUNDS="$rounds" INTEROP_BENCH_SECS="$secs" \
  INTEROP_BENCH_IDLE_CONNECTIONS="$idle" INTEROP_BENCH_KAFKA_PROXY="$kafka_proxy" INTEROP_BENCH_PERF="$perf_dir" \
  INTEROP_BENCH_OUT="$ROOT/bench/results/kafka-$stamp.json" \
  INTEROP_PROXY_BIN="$ROOT/target/release/gcp-kafka-auth-handler"
step "benchmark: $rounds rounds x ${secs} s per figure; load now: $(cut -d' ' -f1-3 /proc/loadavg)"
INTEROP_SKIP_BUILD=1 interop/run.sh -k test_proxy_bench
step "figures: bench/results/kafka-$stamp.md"
cat "bench/results/kafka-$stamp.md"
echo "to quote it: add a block for bench/results/kafka-$stamp.json to docs/performance.md, run" \
  "bench/report.py --write, and commit the run's .json and .md" >&2

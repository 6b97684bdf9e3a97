#!/usr/bin/env bash
# The interop suite's one entry point: real Kafka clients and a real Kafka 4.x broker, end to
# end through the gcp-kafka-auth-handler sidecar and the fake Google.
#
#   interop/run.sh                 build everything, run every scenario
#   interop/run.sh -k librdkafka   run one scenario (any pytest arguments are passed on)
#
# Environment: INTEROP_SKIP_BUILD=1 skips the cargo and Maven builds; INTEROP_SOAK_SECS and
# INTEROP_REFRESH_LIFETIME_SECS shorten the refresh scenario while developing; INTEROP_WORK
# moves the per-run work directory (default interop/work/, logs of every process are there).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
START=$(date +%s)
log() { printf '[interop] %s (+%ss)\n' "$*" "$(( $(date +%s) - START ))"; }

for tool in cargo java mvn python3; do
  command -v "$tool" >/dev/null || { echo "[interop] $tool is required but not on PATH" >&2; exit 2; }
done

if [ "${INTEROP_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --workspace --bins (the sidecar and fake-google)"
  (cd "$ROOT" && timeout 1200 cargo build --workspace --bins --locked --quiet)
  log "cargo build --features rdkafka --example rdkafka_producer (the Rust rdkafka scenario; builds librdkafka)"
  (cd "$ROOT" && timeout 1800 cargo build --features rdkafka --example rdkafka_producer --locked --quiet)

  log "Maven: building the broker classpath, validator and client programs (first run downloads ~250 MB into ~/.m2)"
  # Stale jars from an earlier dependency set must not linger on a classpath.
  rm -rf "$HERE"/java/*/target/lib
  # (sed: Maven 3.8 prints stray colour resets even in quiet batch mode)
  timeout 1200 mvn -q -B -Dstyle.color=never -f "$HERE/java/pom.xml" package 2>&1 \
    | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d'
fi

VENV="$HERE/.venv"
# The venv remembers the hash of the requirements it was built from, so that a changed pin
# re-creates it instead of testing against what an older checkout installed.
REQ_HASH="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
REQ_STAMP="$VENV/requirements.sha256"
if [ "$(cat "$REQ_STAMP" 2>/dev/null)" != "$REQ_HASH" ] \
   || ! "$VENV/bin/python" -c "import confluent_kafka, pytest" >/dev/null 2>&1; then
  log "creating $VENV from requirements.txt (sha256 $REQ_HASH)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  timeout 600 "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
  # Written last: an interrupted install leaves no stamp and is redone next time.
  printf '%s\n' "$REQ_HASH" > "$REQ_STAMP"
fi

log "running the scenarios"
cd "$HERE"
set +e
timeout --kill-after=60 2400 "$VENV/bin/python" -m pytest tests -v -p no:cacheprovider \
  --color=no -o console_output_style=classic "$@"
status=$?
set -e
log "done, exit status $status; logs in $HERE/work/latest/"
exit "$status"

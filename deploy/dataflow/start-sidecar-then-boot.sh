#!/bin/sh
# Entrypoint of a Dataflow (Apache Beam) custom worker image: start gcp-kafka-auth-handler,
# give it a bounded time to fetch its first token, then hand over to the Beam boot program
# with the arguments Dataflow passed.
#
# The sidecar listens on 127.0.0.1:14293. Containers on a Dataflow worker share the VM's
# network, so the Java SDK harness (KafkaIO, also for Python's ReadFromKafka) reaches it there.
#
# Variables: GCP_KAFKA_AUTH_* configure the sidecar (see `gcp-kafka-auth-handler serve --help`);
# SIDECAR (default gcp-kafka-auth-handler on PATH), BEAM_BOOT (default /opt/apache/beam/boot),
# SIDECAR_READY_TIMEOUT (seconds, default 30; 0 skips the wait).
set -eu

sidecar="${SIDECAR:-gcp-kafka-auth-handler}"
boot="${BEAM_BOOT:-/opt/apache/beam/boot}"
ready_timeout="${SIDECAR_READY_TIMEOUT:-30}"

"$sidecar" serve &
sidecar_pid=$!

# Waiting is a courtesy, not a requirement: Kafka clients retry a sidecar that is not ready
# yet, so boot goes ahead after the timeout (the sidecar's log says why it is not ready).
waited=0
while [ "$waited" -lt "$ready_timeout" ]; do
    if ! kill -0 "$sidecar_pid" 2>/dev/null; then
        echo "gcp-kafka-auth-handler exited at start; see its log above" >&2
        exit 1
    fi
    if "$sidecar" healthcheck >/dev/null 2>&1; then
        break
    fi
    sleep 1
    waited=$((waited + 1))
done

# The boot program replaces this shell; the sidecar stays its child. Its pid is exported for
# anything that wants to stop it early.
SIDECAR_PID=$sidecar_pid
export SIDECAR_PID
exec "$boot" "$@"

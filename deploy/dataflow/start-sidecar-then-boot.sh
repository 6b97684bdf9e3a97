#!/bin/sh
# Entrypoint of a Dataflow (Apache Beam) custom worker image: start gcp-kafka-auth-handler's
# token endpoint and, when a cluster is configured, its Kafka proxy; give them a bounded time
# to become ready, then hand over to the Beam boot program with the arguments Dataflow passed.
#
# The proxy starts when GCP_KAFKA_AUTH_CLUSTERS (cluster resource names) or
# GCP_KAFKA_AUTH_BOOTSTRAP_SERVER is set; pipelines then use bootstrap.servers=127.0.0.1:9092
# in plaintext instead of the token endpoint.
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
proxy_pid=
if [ -n "${GCP_KAFKA_AUTH_CLUSTERS:-}${GCP_KAFKA_AUTH_BOOTSTRAP_SERVER:-}" ]; then
    "$sidecar" proxy &
    proxy_pid=$!
fi

# Waiting is a courtesy, not a requirement: Kafka clients retry a sidecar that is not ready
# yet, so boot goes ahead after the timeout (the sidecar's log says why it is not ready).
waited=0
while [ "$waited" -lt "$ready_timeout" ]; do
    if ! kill -0 "$sidecar_pid" 2>/dev/null; then
        echo "gcp-kafka-auth-handler exited at start; see its log above" >&2
        exit 1
    fi
    if [ -n "$proxy_pid" ] && ! kill -0 "$proxy_pid" 2>/dev/null; then
        echo "gcp-kafka-auth-handler proxy exited at start; see its log above" >&2
        exit 1
    fi
    if "$sidecar" healthcheck >/dev/null 2>&1 \
        && { [ -z "$proxy_pid" ] || "$sidecar" wait --timeout 1s >/dev/null 2>&1; }; then
        break
    fi
    sleep 1
    waited=$((waited + 1))
done

# The boot program replaces this shell; the sidecar stays its child. Its pid is exported for
# anything that wants to stop it early.
SIDECAR_PID=$sidecar_pid
PROXY_PID=$proxy_pid
export SIDECAR_PID PROXY_PID
exec "$boot" "$@"

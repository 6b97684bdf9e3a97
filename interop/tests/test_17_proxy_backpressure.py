"""(17) A consumer far slower than its producers, through `gcp-kafka-auth-handler proxy`
(issue 19, section 4): the proxy's memory stays inside the bound its own limits set while the
brokers hold hundreds of megabytes the consumer has not read yet.

One proxy in front of the shared 3-node TLS cluster. Through it:

- a librdkafka producer (idempotent, acks=all) offers OFFERED_MB_PER_SEC of 1 KiB records for
  PRODUCE_SECS, paced by the clock;
- a librdkafka consumer (`slow_consumer.py`, its own process) that may receive 50 MiB in one
  fetch (`fetch.max.bytes`) is frozen with SIGSTOP for FROZEN_SECS of every cycle and runs for
  RUNNING_SECS, for as long as the producer writes: its sockets stop being read, so the brokers'
  50 MiB answers back up into the proxy. Then it runs freely until it has read everything.

Asserted: the backlog the brokers held for the consumer (acknowledged, not yet received, less the
one fetch and the prefetch librdkafka may hold) reached BACKLOG_MIN_BYTES; the proxy's peak RSS
(VmHWM) stayed under `idle + connections x (2 x connection buffer + 96 KiB) + max buffered bytes`
(the bound docs/security.md derives, from this proxy's own flags and its own connection gauge),
and that bound is at most 64 MiB here; the producer achieved at least 90 % of the offered rate;
every acknowledged record was consumed, per partition in order, none lost or duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import note
from harness import proc_status_kib, result_line, tail

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

PARTITIONS = 3
RECORD_BYTES = 1024
OFFERED_MB_PER_SEC = 8
PRODUCE_SECS = int(os.environ.get("INTEROP_BACKPRESSURE_SECS", "60"))
FROZEN_SECS, RUNNING_SECS = 2.9, 0.1
BACKLOG_MIN_BYTES = 200_000_000
FETCH_MAX_BYTES = 50 << 20  # slow_consumer.py's fetch.max.bytes
PREFETCH_BYTES = 2 << 20  # slow_consumer.py's queued.max.messages.kbytes
# The proxy's limits for this scenario (flags), and what docs/security.md charges per connection
# pair besides its two buffers.
CONNECTION_BUFFER = 64 << 10
MAX_BUFFERED = 8 << 20
PER_CONNECTION_REST = 96 << 10
BOUND_CAP_KIB = 64 << 10


def test_proxy_slow_consumer_backlog(kafka_cluster, start_proxy, workdir, request):
    cluster = kafka_cluster
    d = workdir / "backpressure"
    d.mkdir(parents=True, exist_ok=True)
    topic = "interop-backpressure"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    proxy = start_proxy(cluster, name="proxy-backpressure", extra_args=[
        "--connection-buffer-bytes", str(CONNECTION_BUFFER),
        "--max-buffered-bytes", str(MAX_BUFFERED)])
    pid = proxy.proc.popen.pid
    idle_kib = proc_status_kib(pid, "VmRSS")

    consumer_log = d / "consumer.log"
    consumer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("slow_consumer.py")), proxy.bootstrap,
         topic, str(PARTITIONS), str(d)],
        stdout=open(consumer_log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        producer = Producer({"bootstrap.servers": proxy.bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5, "compression.type": "none"})
        acked = [0] * PARTITIONS
        failed: list[str] = []
        last_ack = [0.0]

        def delivered(err, msg):
            if err is not None:
                failed.append(str(err))
            else:
                acked[msg.partition()] += 1
                last_ack[0] = time.monotonic()

        per_sec = OFFERED_MB_PER_SEC * 1_000_000 // RECORD_BYTES
        pad = b"x" * RECORD_BYTES
        sent = [0] * PARTITIONS
        state = {"producing": True, "peak_backlog": 0, "peak_conns": 0, "samples": 0}

        def freezer():
            """SIGSTOP/SIGCONT the consumer while the producer writes; sample the backlog while
            it is frozen (its progress file then says exactly what it has received)."""
            while state["producing"] and consumer.poll() is None:
                os.kill(consumer.pid, signal.SIGSTOP)
                time.sleep(FROZEN_SECS)
                progress = d / "progress.json"
                if progress.exists():
                    got = json.loads(progress.read_text())["bytes"]
                    backlog = sum(acked) * RECORD_BYTES - got
                    state["peak_backlog"] = max(state["peak_backlog"], backlog)
                    state["samples"] += 1
                os.kill(consumer.pid, signal.SIGCONT)
                time.sleep(RUNNING_SECS)
            os.kill(consumer.pid, signal.SIGCONT)

        def watcher():
            while consumer.poll() is None:
                try:
                    state["peak_conns"] = max(state["peak_conns"], proxy.open_connections())
                except (OSError, AssertionError):
                    pass
                time.sleep(0.5)

        time.sleep(2)  # the consumer connects and assigns before the first freeze
        threads = [threading.Thread(target=freezer, name="freezer"),
                   threading.Thread(target=watcher, name="watcher")]
        for t in threads:
            t.start()
        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) - start < PRODUCE_SECS:
            due = min(int((now - start) * per_sec), PRODUCE_SECS * per_sec)
            while n < due:
                p = n % PARTITIONS
                value = f"{p}:{sent[p]}:".encode()
                try:
                    producer.produce(topic, value + pad[len(value):], partition=p,
                                     on_delivery=delivered)
                except BufferError:
                    producer.poll(0.05)
                    continue
                sent[p] += 1
                n += 1
            producer.poll(0.01)
        left = producer.flush(180)
        produce_secs = last_ack[0] - start
        state["producing"] = False
        threads[0].join(timeout=30)

        # Written whole and then renamed: the consumer polls for the file and must never read
        # it half-written.
        (d / "target.tmp").write_text(json.dumps(acked))
        (d / "target.tmp").replace(d / "target.json")
        consumer.wait(timeout=600)
        threads[1].join(timeout=30)
    finally:
        if consumer.poll() is None:
            os.kill(consumer.pid, signal.SIGCONT)
            consumer.kill()
            consumer.wait()
    hwm_kib = proc_status_kib(pid, "VmHWM")
    res = result_line(consumer_log.read_text(errors="replace"))
    what = "slow consumer (librdkafka, fetch.max.bytes 50 MiB) via proxy"

    assert left == 0 and not failed, cluster.report(
        what, "produce", f"{left} undelivered, failures {failed[:3]}", proxy=proxy)
    assert acked == sent, (acked, sent)
    assert res is not None and res["ok"], cluster.report(
        what, "consume", f"{res}; {tail(consumer_log)}", proxy=proxy)
    assert res["per_partition"] == acked and res["bad"] is None, (res, acked)
    assert res["consumed"] == sum(acked), (res, acked)

    offered = OFFERED_MB_PER_SEC * 1_000_000
    achieved = sum(acked) * RECORD_BYTES / produce_secs
    assert achieved >= 0.9 * offered, (
        f"the producer achieved {achieved / 1e6:.2f} MB/s of {offered / 1e6:.0f} MB/s offered")

    # What the brokers held for the consumer: what it had not received, less what librdkafka
    # may have fetched but not handed over (one fetch and the prefetch queue).
    broker_backlog = state["peak_backlog"] - FETCH_MAX_BYTES - PREFETCH_BYTES
    assert broker_backlog >= BACKLOG_MIN_BYTES, (
        f"the brokers' backlog for the consumer peaked at {broker_backlog / 1e6:.0f} MB "
        f"({state['samples']} samples): not slow enough to prove anything")

    conns = state["peak_conns"]
    assert conns >= 2, f"the proxy's connection gauge peaked at {conns}"
    bound_kib = idle_kib + (conns * (2 * CONNECTION_BUFFER + PER_CONNECTION_REST)
                            + MAX_BUFFERED) // 1024
    assert bound_kib <= BOUND_CAP_KIB, f"bound {bound_kib} KiB: more than 64 MiB"
    assert hwm_kib <= bound_kib, cluster.report(
        what, "memory", f"proxy peak RSS {hwm_kib} KiB over the bound {bound_kib} KiB "
        f"(idle {idle_kib} KiB + {conns} connections)", proxy=proxy)
    note(f"{what}: offered {offered / 1e6:.0f} MB/s for {PRODUCE_SECS} s, achieved "
         f"{achieved / 1e6:.2f} MB/s ({sum(acked):,} records acked); consumer frozen "
         f"{FROZEN_SECS} s of every {FROZEN_SECS + RUNNING_SECS} s meanwhile; brokers' backlog for "
         f"it peaked at {broker_backlog / 1e6:.0f} MB (unreceived {state['peak_backlog'] / 1e6:.0f}"
         f" MB); all {res['consumed']:,} consumed in order in {res['secs']} s; proxy RSS idle "
         f"{idle_kib:,} KiB, peak {hwm_kib:,} KiB, bound {bound_kib:,} KiB ({conns} connections)")

"""A librdkafka consumer for test_17, run as its own process so the test can freeze it.

    python slow_consumer.py BOOTSTRAP TOPIC PARTITIONS WORKDIR

Reads every partition of TOPIC from the beginning (assigned, no group: a frozen member must not
be rebalanced away) with one fetch allowed to carry 50 MiB, and checks each record's value,
`<partition>:<seq>:` then padding, as it arrives: per partition the sequence numbers must be
0, 1, 2, ... After every batch it writes WORKDIR/progress.json (records and bytes consumed, the
first violation if any). It stops when WORKDIR/target.json (per partition counts, written by
the test when the producer has finished) is reached, or after its deadline, and prints one
`RESULT {json}` line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

FETCH_MAX_BYTES = 50 << 20
# How much librdkafka may prefetch beyond what the application has read: small, so that what
# the application has not read yet is (but for one fetch) still on the brokers.
QUEUED_KBYTES = 2048
DEADLINE_SECS = float(os.environ.get("SLOW_CONSUMER_DEADLINE_SECS", "600"))


def main() -> int:
    bootstrap, topic, partitions, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "interop-backpressure",  # required by librdkafka; no subscribe, no commits
        "enable.auto.commit": False,
        "fetch.max.bytes": FETCH_MAX_BYTES,
        "max.partition.fetch.bytes": FETCH_MAX_BYTES,
        "receive.message.max.bytes": FETCH_MAX_BYTES + (1 << 20),
        "queued.max.messages.kbytes": QUEUED_KBYTES,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    next_seq = [0] * partitions
    consumed = nbytes = 0
    bad: str | None = None
    errors: list[str] = []
    target: list[int] | None = None
    progress, target_file = workdir / "progress.json", workdir / "target.json"
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_SECS:
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error():
                errors.append(str(msg.error()))
                continue
            value = msg.value()
            p, seq = (int(x) for x in value.split(b":", 2)[:2])
            if bad is None and (p != msg.partition() or seq != next_seq[p]):
                bad = (f"partition {msg.partition()} offset {msg.offset()}: record "
                       f"{p}:{seq}, expected {msg.partition()}:{next_seq[msg.partition()]}")
            next_seq[msg.partition()] = seq + 1
            consumed += 1
            nbytes += len(value)
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"consumed": consumed, "bytes": nbytes, "bad": bad,
                                   "t": time.time()}))
        tmp.replace(progress)
        if target is None and target_file.exists():
            target = json.loads(target_file.read_text())
        if target is not None and next_seq == target:
            break
    consumer.close()
    result = {"consumed": consumed, "bytes": nbytes, "per_partition": next_seq, "bad": bad,
              "errors": errors[:5], "ok": target is not None and next_seq == target and bad is None,
              "secs": round(time.monotonic() - start, 1)}
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

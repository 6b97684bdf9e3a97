"""Clients for the 3-node cluster scenarios: the Java ClusterRoundTrip program, and librdkafka
(confluent-kafka) producers/consumers that check every record per partition.

Record i has key `k-i`, value `<prefix>-i` and is produced to partition `i % partitions`, so
each partition's order is known: partition p must deliver p, p+P, p+2P, ... without a gap.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from conftest import java_client
from harness import result_line

# The string every advertised broker name of the cluster contains: seeing it anywhere on the
# client side means a broker address leaked past the proxy.
LEAK_MARK = "kafka.invalid"


def run_java(name: str, bootstrap: str, workdir: Path, args: list[str], timeout: float = 240,
             extra_jvm: list[str] | None = None, env: dict | None = None):
    """Runs interop.clients.ClusterRoundTrip (kafka-clients 4.x); returns (status, result, log)."""
    log = workdir / f"{name}.client.log"
    status, out = java_client("clients-4", "interop.clients.ClusterRoundTrip",
                              [f"bootstrap={bootstrap}"] + args, log, timeout=timeout,
                              extra_jvm=extra_jvm, env=env)
    return status, result_line(out), log


class RdLog(logging.Handler):
    """Collects librdkafka's log lines (through confluent-kafka's `logger`) and error_cb
    reports, so a scenario can scan everything the client was told."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.logger = logging.getLogger(f"rdkafka-{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            if len(self.lines) < 200_000:
                self.lines.append(record.getMessage())

    def error_cb(self, err) -> None:
        with self._lock:
            self.errors.append(f"{err.name()}: {err.str()}")

    def leaks(self) -> list[str]:
        with self._lock:
            return [l for l in self.lines + self.errors if LEAK_MARK in l][:5]

    def metadata_brokers(self) -> dict[int, set[str]]:
        """Every broker address librdkafka's Metadata answers gave it (debug=metadata lines
        'Broker #i/n: host:port NodeId id'), by node id."""
        import re
        pat = re.compile(r"Broker #\d+/\d+: (\S+) NodeId (-?\d+)")
        out: dict[int, set[str]] = {}
        with self._lock:
            for l in self.lines:
                m = pat.search(l)
                if m:
                    out.setdefault(int(m.group(2)), set()).add(m.group(1))
        return out

    def conf(self) -> dict:
        # debug=metadata logs every broker address librdkafka learns ("Broker #i/n: host:port").
        return {"logger": self.logger, "error_cb": self.error_cb, "debug": "metadata"}

    def write(self, path: Path) -> None:
        with self._lock:
            path.write_text("\n".join(self.lines + ["--- error_cb:"] + self.errors) + "\n")


def rd_brokers(conf: dict, timeout: float = 20) -> dict[int, str]:
    """The broker list librdkafka's Metadata gives it: node id -> host:port."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient(dict(conf))
    md = admin.list_topics(timeout=timeout)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}


def rd_produce(conf: dict, topic: str, prefix: str, partitions: int, count: int | None = None,
               stop_at: float | None = None, interval: float = 0.0, timeout: float = 60) -> dict:
    """Produces records (acks=all, idempotent) until `count` or `stop_at`; every delivery
    report is kept: acked maps index -> (partition, offset)."""
    from confluent_kafka import Producer
    acked: dict[int, tuple[int, int]] = {}
    failed: list[str] = []

    def on_delivery(err, msg):
        i = int(msg.key().decode()[2:])
        if err is not None:
            failed.append(f"record {i}: {err}")
        else:
            acked[i] = (msg.partition(), msg.offset())

    p = Producer({**conf, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    sent = 0
    while (count is not None and sent < count) or (stop_at is not None and time.monotonic() < stop_at):
        p.produce(topic, key=f"k-{sent}", value=f"{prefix}-{sent}", partition=sent % partitions,
                  on_delivery=on_delivery)
        sent += 1
        p.poll(0)
        if interval:
            time.sleep(interval)
    unflushed = p.flush(timeout)
    return {"sent": sent, "acked": acked, "failed": failed[:10], "failed_count": len(failed),
            "unflushed": unflushed}


def rd_consume(conf: dict, topic: str, prefix: str, partitions: int, group: str, target_fn,
               timeout: float = 60) -> dict:
    """Consumes in a group until every partition delivered the records `target_fn()` says were
    sent (None: not known yet); checks each record's key, value, partition and per-partition
    order and offsets; commits, and reads the committed offsets back."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    nxt = {p: p for p in range(partitions)}
    last_off: dict[int, int] = {}
    got = 0
    redelivered = 0
    bad: list[str] = []
    deadline = time.monotonic() + timeout

    def done(n):
        return all(nxt[p] >= n or (nxt[p] - p) // partitions >= len(range(p, n, partitions))
                   for p in range(partitions))

    try:
        while time.monotonic() < deadline:
            target = target_fn()
            if target is not None and done(target):
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if len(bad) < 10:
                    bad.append(f"consumer error: {msg.error()}")
                continue
            k = msg.key().decode() if msg.key() else ""
            v = msg.value().decode() if msg.value() else None
            p = msg.partition()
            try:
                i = int(k[2:])
            except ValueError:
                bad.append(f"partition {p} offset {msg.offset()}: unexpected key {k!r}")
                continue
            if v != f"{prefix}-{i}" or i % partitions != p:
                if len(bad) < 10:
                    bad.append(f"record {i}: key={k} value={v} partition={p}")
                continue
            if i < nxt[p]:
                redelivered += 1
                continue
            if i != nxt[p]:
                if len(bad) < 10:
                    bad.append(f"partition {p}: record {i} at offset {msg.offset()}, want {nxt[p]}")
            if p in last_off and msg.offset() != last_off[p] + 1:
                if len(bad) < 10:
                    bad.append(f"partition {p}: record {i} at offset {msg.offset()} after "
                               f"{last_off[p]}")
            last_off[p] = msg.offset()
            nxt[p] = i + partitions
            got += 1
        committed = {}
        if got:
            c.commit(asynchronous=False)
            for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20):
                committed[tp.partition] = tp.offset
    finally:
        c.close()
    return {"consumed": got, "redelivered": redelivered, "bad": bad,
            "next_offsets": {p: o + 1 for p, o in last_off.items()}, "committed": committed}


class TokenRecorder:
    """A forwarder between a client and a token endpoint (the sidecar's) that keeps every
    `access_token` the client was handed, so a scenario can fingerprint exactly the tokens
    the client held (issue 19: no credential of the client may reach a broker)."""

    def __init__(self, upstream: str):
        import http.server
        import json as _json
        import urllib.error
        import urllib.request

        self.upstream = upstream.rstrip("/")
        self.tokens: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept", "authorization")}
                req = urllib.request.Request(recorder.upstream + self.path, data=body,
                                             method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=20) as resp:
                        status, ctype, data = resp.status, resp.headers.get("Content-Type"), \
                            resp.read()
                except urllib.error.HTTPError as e:
                    status, ctype, data = e.code, e.headers.get("Content-Type"), e.read()
                try:
                    token = _json.loads(data).get("access_token")
                except (ValueError, AttributeError):
                    token = None
                if token:
                    with recorder._lock:
                        recorder.tokens.append(token)
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def log_message(self, *args):  # quiet: the client's and sidecar's logs say it
                pass

        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="token-recorder")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_address[1]}"

    def given(self) -> list[str]:
        with self._lock:
            return list(self.tokens)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def client_token_fingerprints(tokens: list[str]) -> dict[str, str]:
    """fingerprint -> what it is, for every token a client was given: the token text (what a
    broker's validator logs as `presented_fp`, OAUTHBEARER) and, for a three-part Kafka
    token, the Google access token inside it (the validators' `token_fp`; PLAIN's password)."""
    from harness import split_kafka_token, token_fingerprint
    out = {}
    for t in tokens:
        out[token_fingerprint(t)] = f"client token {t[:12]}..."
        if t.count(".") == 2:
            raw = split_kafka_token(t)[2]
            out[token_fingerprint(raw)] = f"access token inside client token {t[:12]}..."
    return out


def assert_no_client_credential_reached_a_broker(decisions: list[dict], tokens: list[str],
                                                 principal: str) -> tuple[int, int]:
    """The credential-isolation check: none of the fingerprints of `tokens` (every credential
    the client held) is among the fingerprints the brokers' validators logged for what was
    presented to them over the scenario's window (`decisions`), and that window did record
    the proxy's own accepted authentications as `User:<principal>` (so the check is not
    vacuous). Returns (fingerprints checked, decisions seen)."""
    assert tokens, "the client was given no token: nothing to check"
    fps = client_token_fingerprints(tokens)
    seen = {}
    for d in decisions:
        for k in ("presented_fp", "token_fp"):
            if d.get(k):
                seen.setdefault(d[k], d)
    leaked = {fp: (what, seen[fp]) for fp, what in fps.items() if fp in seen}
    assert not leaked, f"a broker was presented a credential of the client: {leaked}"
    own = [d for d in decisions if d["decision"] == "accept"
           and d.get("principal") == f"User:{principal}" and d.get("presented_fp")]
    assert own, (f"the brokers' decision log recorded none of the proxy's own authentications "
                 f"in the window ({len(decisions)} decisions): the isolation check would be "
                 f"vacuous")
    return len(fps), len(decisions)


# ---- failover, observed (issue 19 item 3) ----------------------------------------------


def pick_victim(cluster, topics: list[str]) -> tuple[int, dict[str, dict[int, int]]]:
    """The node to stop: one that leads at least one partition of every topic in `topics`
    (the lowest such id), with the leaders it was picked from (topic -> partition -> node).
    Fails when no node does (then stopping any one would leave some client's topic
    untouched)."""
    leaders = {t: cluster.leaders(t) for t in topics}
    candidates = sorted(n for n in cluster.nodes
                        if all(n in ls.values() for ls in leaders.values()))
    assert candidates, f"no node leads a partition of every topic: {leaders}"
    return candidates[0], leaders


class LeaderWatch:
    """Samples `cluster.leaders(topic)` for every topic every `interval` s in a thread, so
    that where leadership was during an outage is observed, not inferred. A sample that
    fails (no leader yet, admin timeout) is kept as an error, not dropped silently."""

    def __init__(self, cluster, topics: list[str], interval: float = 0.5):
        self.cluster, self.topics, self.interval = cluster, topics, interval
        self.samples: list[tuple[float, str, dict[int, int]]] = []  # (time.time(), topic, leaders)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for t in self.topics:
                try:
                    ls = self.cluster.leaders(t, timeout=2)
                    self.samples.append((time.time(), t, dict(ls)))
                except Exception as e:  # noqa: BLE001 - recorded, reported by the scenario
                    self.errors.append(f"{time.time():.1f} {t}: {e!r}"[:300])
            self._stop.wait(self.interval)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=30)

    def led_by(self, victim: int, before: float) -> dict[str, set[int]]:
        """Per topic, the partitions `victim` led in the last sample taken before `before`."""
        out: dict[str, set[int]] = {}
        for ts, t, ls in self.samples:
            if ts < before:
                out[t] = {p for p, n in ls.items() if n == victim}
        return out

    def moved_off(self, victim: int, topic: str, partition: int, start: float,
                  end: float) -> tuple[list[int], list[int]]:
        """(leaders seen for the partition in samples within [start, end], those equal to
        the victim)."""
        seen = [ls.get(partition) for ts, t, ls in self.samples
                if t == topic and start <= ts <= end]
        return seen, [n for n in seen if n == victim]


def assert_leadership_moved(watch: LeaderWatch, victim: int, events: dict,
                            topics: list[str]) -> dict[str, set[int]]:
    """From the cluster's own answers: the victim led at least one partition of every topic
    just before it was stopped, and for each of those partitions every sample taken while
    it was down names another node as leader (at least one sample). Returns what it led."""
    led = watch.led_by(victim, events["stop_at"])
    missing = [t for t in topics if not led.get(t)]
    assert not missing, (f"node {victim} led no partition of {missing} in the last sample "
                         f"before it was stopped: {led}; errors {watch.errors[:3]}")
    for t in topics:
        for p in sorted(led[t]):
            seen, on_victim = watch.moved_off(victim, t, p, events["stopped_at"],
                                              events["started_at"])
            assert seen and not on_victim and all(n is not None and n >= 0 for n in seen), (
                f"{t}-{p}: while node {victim} was down the cluster named leaders {seen} "
                f"(want another node in every sample, at least one sample); watch errors "
                f"{watch.errors[:3]}")
    return led


def _stamp_on_day_of(stamp: str, when: float) -> float:
    """A log line's HH:MM:SS[.frac] (UTC, this machine's zone) in epoch seconds, on the day of
    `when` (epoch s)."""
    import calendar
    day = time.strftime("%Y-%m-%d", time.gmtime(when))
    clock, _, frac = stamp.partition(".")
    return calendar.timegm(time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")) + \
        (float("0." + frac) if frac else 0.0)


def _in_window(stamp: str, start: float, end: float) -> bool:
    """A log line's HH:MM:SS[.frac] within [start, end] (epoch seconds; the window never spans
    midnight in a run of minutes, checked)."""
    assert time.gmtime(start).tm_yday == time.gmtime(end).tm_yday, "window spans midnight"
    return start - 1 <= _stamp_on_day_of(stamp, start) <= end + 1


def _before(stamp: str, start: float) -> bool:
    """A log line's HH:MM:SS[.frac] before `start` (epoch s), on start's day."""
    return _stamp_on_day_of(stamp, start) < start


def client_saw_leader_change(client: str, log_text: str, topic: str, partitions: set[int],
                             victim: int, victim_address: str, start: float,
                             end: float) -> dict:
    """What the client itself reported, between `start` and `end` (the outage), about the
    leader change of the victim's partitions. Per client, from its own log (no client
    program prints retry counters; the log lines are the clients' own):

    - kafka-clients: per partition, Sender's "Received invalid metadata error in produce
      request on partition T-P due to E. Going to request metadata update now";
    - sarama: per partition, "producer/broker/<victim> state change to [retrying] on T/P";
    - kafka-go: per partition, "error writing messages to T (partition P, attempt N): ...";
    - franz-go: "metadata update triggered; why: produce request had retry batches" (topic),
      and per partition, at DEBUG (the soak's producer logs at DEBUG), "metadata refresh topic
      partition data changed; topic: T, partition: P, new_leader: N, ..., old_leader: V"
      with old_leader the victim and new_leader another node;
    - kafkajs: a Produce response error from the victim's proxy address (topic: kafkajs names
      the broker, not the partition), and per partition, at DEBUG, a Metadata response it
      parsed ("Response Metadata(...) {... data: {topicMetadata: [...]}}") naming another
      node as the leader of P, one of `partitions`; `led_before` holds the partitions for
      which one before `start` named the victim.

    Returns {"per_partition": {P: first line}, "topic": [lines], "led_before": {P}} with
    what was found."""
    import json
    import re
    found: dict = {"per_partition": {}, "topic": [], "led_before": set()}
    t = re.escape(topic)
    for line in log_text.splitlines():
        if client == "kafka-clients":
            m = re.match(rf"^(\d\d:\d\d:\d\d\.\d+) .*Received invalid metadata error in produce "
                         rf"request on partition {t}-(\d+) due to (\S+)", line)
            if m and _in_window(m.group(1), start, end):
                found["per_partition"].setdefault(int(m.group(2)), line[:400])
        elif client == "sarama":
            m = re.match(rf"^\[sarama\] \S+ (\d\d:\d\d:\d\d\.\d+) producer/broker/(\d+) state change "
                         rf"to \[retrying\] on {t}/(\d+) because", line)
            if m and int(m.group(2)) == victim and _in_window(m.group(1), start, end):
                found["per_partition"].setdefault(int(m.group(3)), line[:400])
        elif client == "kafka-go":
            m = re.match(rf"^\[kafka-go\] \S+ (\d\d:\d\d:\d\d\.\d+) error writing messages to {t} "
                         rf"\(partition (\d+), attempt \d+\)", line)
            if m and _in_window(m.group(1), start, end):
                found["per_partition"].setdefault(int(m.group(2)), line[:400])
        elif client == "franz-go":
            m = re.match(r"^(\d\d:\d\d:\d\d\.\d+) \[franz-go\] \[INFO\] metadata update triggered; "
                         r"why: produce request had retry batches", line)
            if m and _in_window(m.group(1), start, end):
                found["topic"].append(line[:400])
            m = re.match(rf"^(\d\d:\d\d:\d\d\.\d+) \[franz-go\] \[DEBUG\] metadata refresh topic "
                         rf"partition data changed; topic: {t}, partition: (\d+), new_leader: (-?\d+), "
                         rf"new_leader_epoch: -?\d+, old_leader: (-?\d+),", line)
            if m and int(m.group(4)) == victim and int(m.group(3)) not in (victim, -1) \
                    and _in_window(m.group(1), start, end):
                found["per_partition"].setdefault(int(m.group(2)), line[:400])
        elif client == "kafkajs":
            m = re.match(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d\.\d+)Z \[kafkajs\] \S+ \d+: Response "
                         r"Produce\(", line)
            if m and f'"broker":"{victim_address}"' in line and '"error":' in line \
                    and _in_window(m.group(1), start, end):
                found["topic"].append(line[:400])
            m = re.match(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d\.\d+)Z \[kafkajs\] \S+ \d+: Response "
                         r"Metadata\(key: 3, version: \d+\) (\{.*\})$", line)
            if m:
                data = json.loads(m.group(2)).get("data") or {}
                for tm in data.get("topicMetadata", []):
                    if tm.get("topic") != topic:
                        continue
                    for pm in tm["partitionMetadata"]:
                        p, leader = pm["partitionId"], pm["leader"]
                        if leader == victim and _before(m.group(1), start):
                            found["led_before"].add(p)
                        elif p in partitions and leader not in (victim, -1) \
                                and _in_window(m.group(1), start, end):
                            found["per_partition"].setdefault(
                                p, f"{line[:120]}... partition {p} leader {leader}")
        else:
            raise ValueError(client)
    return found


def rd_leader_changes(lines: list[str], topic: str) -> list[tuple[int, int]]:
    """librdkafka's own metadata (debug=metadata): every (partition, leader) its Metadata
    answers gave it for `topic`, in order ("Topic T [P] Leader N Epoch E")."""
    import re
    pat = re.compile(rf"Topic {re.escape(topic)} \[(\d+)\] Leader (-?\d+) Epoch")
    return [(int(m.group(1)), int(m.group(2))) for l in lines for m in [pat.search(l)] if m]


PROXY_AUTH_DEBUG = "info,gcp_kafka_auth_handler::proxy=debug"


def proxy_authentications_at(proxy_log: str, node_host: str, after: float) -> list[str]:
    """The proxy's own log lines (with `--log PROXY_AUTH_DEBUG`) saying it authenticated a
    connection to `node_host` at or after `after` (epoch s): the proxy's /metrics count
    authentications by outcome only, with no node label, so its log is where the node is
    named."""
    import calendar
    import re
    out = []
    for l in proxy_log.splitlines():
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z\s+DEBUG\s+\S+: "
                     r"authenticated broker=(\S+)", l)
        if m and m.group(3) == node_host:
            ts = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + \
                float(m.group(2) or 0)
            if ts >= after:
                out.append(l)
    return out

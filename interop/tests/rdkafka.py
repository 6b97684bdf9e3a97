"""librdkafka (confluent-kafka) clients for the interop suite."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def oidc_config(bootstrap: str, endpoint: str) -> dict:
    """What Google documents for non-Java clients: OIDC against the local sidecar, no scheme."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "unused",
        "sasl.oauthbearer.client.secret": "unused",
        "sasl.oauthbearer.token.endpoint.url": endpoint,
    }


class Errors:
    """Collects librdkafka's error_cb reports (authentication failures arrive here)."""

    def __init__(self):
        self.items: list[KafkaError] = []
        self.lock = threading.Lock()

    def __call__(self, err: KafkaError):
        with self.lock:
            self.items.append(err)

    def auth_errors(self) -> list[str]:
        with self.lock:
            return [e.str() for e in self.items if e.code() == KafkaError._AUTHENTICATION]

    def all(self) -> list[str]:
        with self.lock:
            return [f"{e.name()}: {e.str()}" for e in self.items]


def try_static_token(bootstrap: str, token: str, principal: str, timeout: float = 20) -> tuple[str, str]:
    """Presents `token` to the broker (librdkafka's oauth_cb, no validation on the client side).

    Returns ("accepted", "") once metadata could be fetched, or ("refused", message) when the
    broker refused the authentication, or ("timeout", errors) otherwise.
    """
    errors = Errors()

    def oauth_cb(_cfg):
        # The expiry given to librdkafka only matters on the client side.
        return token, time.time() + 3600, principal, {}

    p = Producer({
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
        "error_cb": errors,
        "reconnect.backoff.ms": 500,
        "reconnect.backoff.max.ms": 2000,
    })
    try:
        deadline = time.monotonic() + timeout
        p.poll(0.5)  # serves the oauth_cb
        while time.monotonic() < deadline:
            auth = errors.auth_errors()
            if auth:
                return "refused", auth[0]
            try:
                p.list_topics(timeout=1)
                return "accepted", ""
            except KafkaException:
                pass
            p.poll(0.2)
        return "timeout", "; ".join(errors.all()) or "no error reported"
    finally:
        p.flush(0)
        del p


def create_topic(conf: dict, topic: str, timeout: float = 30) -> None:
    admin = AdminClient(dict(conf))
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                             operation_timeout=timeout, request_timeout=timeout)
    try:
        fs[topic].result(timeout=timeout)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def produce(conf: dict, topic: str, count: int, prefix: str, timeout: float = 60,
            interval: float = 0.0, stop_at: float | None = None) -> dict:
    """Produces records k-i/<prefix>-i; returns counts, offsets and errors (checked one by one)."""
    errors = Errors()
    acked: dict[int, int] = {}
    failed: list[str] = []

    def on_delivery(err, msg):
        i = int(msg.key().decode()[2:])
        if err is not None:
            failed.append(f"record {i}: {err}")
        else:
            acked[i] = msg.offset()

    p = Producer({**conf, "error_cb": errors, "acks": "all", "linger.ms": 5})
    sent = 0
    while (stop_at is None and sent < count) or (stop_at is not None and time.monotonic() < stop_at):
        p.produce(topic, key=f"k-{sent}", value=f"{prefix}-{sent}", on_delivery=on_delivery)
        sent += 1
        p.poll(0)
        if interval:
            time.sleep(interval)
    remaining = p.flush(timeout)
    return {"sent": sent, "acked": acked, "failed": failed[:10], "unflushed": remaining,
            "errors": errors.all()}


def consume(conf: dict, topic: str, count_fn, prefix: str, group: str, timeout: float = 60,
            until=None) -> dict:
    """Consumes and checks every record in order: key k-i, value <prefix>-i, offset first+i."""
    errors = Errors()
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "error_cb": errors})
    c.subscribe([topic])
    got = 0
    bad: list[str] = []
    first = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            target = count_fn()
            if target is not None and got >= target and (until is None or until()):
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if len(bad) < 10:
                    bad.append(f"consumer error: {msg.error()}")
                continue
            if first is None:
                first = msg.offset()
            i = got
            got += 1
            want_k, want_v = f"k-{i}", f"{prefix}-{i}"
            k = msg.key().decode() if msg.key() else None
            v = msg.value().decode() if msg.value() else None
            if k != want_k or v != want_v or msg.offset() != first + i:
                if len(bad) < 10:
                    bad.append(f"record {i}: key={k} value={v} offset={msg.offset()}, "
                               f"want key={want_k} value={want_v} offset={first + i}")
        if got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return {"consumed": got, "bad": bad, "errors": errors.all()}

"""(10) `gcp-kafka-auth-handler proxy` in front of the real 3-node TLS cluster.

Clients connect to the proxy with `bootstrap.servers=127.0.0.1:<port>` and nothing else
(PLAINTEXT, no SASL settings); the proxy opens TLS to the brokers (trusting the run's test CA,
dialling `broker-N.kafka.invalid` through `--resolve`), authenticates every upstream connection
itself, and rewrites every broker address to its own `127.0.0.1:(base + node id)`. The brokers'
advertised names resolve nowhere, so a broker address that leaked past the proxy would fail the
client: a passing scenario proves none did. Each scenario also asserts it on the client side
(the addresses describeCluster and Metadata gave the client, and no `kafka.invalid` in anything
the client logged), that the brokers accepted only the proxy's authentications as
`User:<principal>` and refused none, and that the proxy logged no broker refusal.

They run by default; `INTEROP_PROXY=0` leaves them out (the run's measurements say so).
"""

from __future__ import annotations

import datetime
import math
import os
import re
import threading
import time

import confluent_kafka
import pytest

from cluster import NODE_IDS
from cluster_clients import (LEAK_MARK, PROXY_AUTH_DEBUG, RdLog, rd_brokers, rd_consume,
                             rd_produce, run_java)
from conftest import DEFAULT_LIFETIME, PRINCIPAL, note
from harness import hms
from reauth_checks import proxy_session_failures, upstream_connections, vanished, whole_soak

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

COUNT = 1000
PARTITIONS = 3
LIFETIME = int(os.environ.get("INTEROP_REFRESH_LIFETIME_SECS", "60"))
SOAK = int(os.environ.get("INTEROP_PROXY_SOAK_SECS", str(3 * LIFETIME + 10)))
# How long before a client program returns its clients may still be closing (a disconnect the
# proxy logs inside that window is the client's own close; outside it, a fault).
CLOSING_SECS = 5


# ---- checks shared by the scenarios -----------------------------------------------------


def broker_refusals_in(proxy_log: str) -> list[str]:
    """Proxy log lines that report a SASL refusal by a broker (the broker's error message is
    logged whole: our validators' refusals read 'invalid_token' (OAUTHBEARER) or
    'Authentication failed' (PLAIN))."""
    pat = re.compile(r"invalid_token|authentication failed|refus", re.IGNORECASE)
    return [l for l in proxy_log.splitlines() if pat.search(l)][:5]


# A client that closes its socket while a response is on its way (a consumer's close() with a
# fetch in flight) makes the proxy's write fail with EPIPE/ECONNRESET: the client's doing, not
# a fault, but only when the test's own clients were closing. The line does not say which side
# reset, so a scenario excuses it only inside the window in which its clients closed.
CLIENT_WENT_AWAY = re.compile(r"connection closed: (Broken pipe|Connection reset by peer)")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s")


def log_time(line: str) -> float | None:
    """The epoch seconds of a proxy log line (tracing's RFC 3339 UTC timestamp)."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def problems_in(proxy_log: str, departures: list[tuple]) -> list[str]:
    """WARN and ERROR lines of the proxy's log (tracing's format: 'time  LEVEL target: ...').
    A client's disconnect (CLIENT_WENT_AWAY) is excused only when it falls inside one of
    `departures`: (start, end) in epoch seconds, a window in which the scenario's own clients
    closed, or (start, end, {field: value}), a connection its client said it abandoned then,
    which the line's fields must name (`client=127.0.0.1:PORT`, `listener=<node id>`); every
    other one is a problem."""
    out = []
    for l in proxy_log.splitlines():
        if not re.search(r"^\S+\s+(WARN|ERROR)\s", l):
            continue
        if CLIENT_WENT_AWAY.search(l):
            t = log_time(l)
            fields = dict(re.findall(r"\b(client|listener)=(\S+)", l))
            if t is not None and any(
                    w[0] <= t <= w[1] and all(fields.get(k) == v for k, v in
                                              (w[2] if len(w) > 2 else {}).items())
                    for w in departures):
                continue
        out.append(l)
    return out[:5]


def client_departures_in(proxy_log: str) -> int:
    return sum(1 for l in proxy_log.splitlines() if CLIENT_WENT_AWAY.search(l))


def assert_only_proxy_addresses(cluster, proxy, res: dict, what: str, client_log=None):
    want = {str(i): a for i, a in proxy.broker_addresses().items()}
    for key in ("described_nodes", "metadata_nodes"):
        if key in res:
            assert res[key] == want, cluster.report(
                what, "addresses", f"{key} = {res[key]}, want exactly the proxy's {want}",
                client_log=client_log, proxy=proxy)
    if client_log is not None:
        leaked = [l for l in client_log.read_text(errors="replace").splitlines() if LEAK_MARK in l]
        assert not leaked, cluster.report(what, "addresses",
                                          f"the client log names a broker: {leaked[:3]}",
                                          client_log=client_log, proxy=proxy)


def assert_brokers_accepted_only(cluster, proxy, d0: int, mechanism: str, what: str) -> list[dict]:
    decisions = cluster.decision_log()[d0:]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    assert accepted and not refused, cluster.report(
        what, "broker authentication", f"{len(accepted)} accepted, refused: {refused[:3]}",
        proxy=proxy)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}, accepted[:3]
    assert {d["mechanism"] for d in accepted} == {mechanism}, accepted[:3]
    return accepted


def assert_proxy_log_clean(cluster, proxy, what: str, departures: list[tuple]):
    log = proxy.log_text()
    refusals = broker_refusals_in(log)
    assert not refusals, cluster.report(what, "proxy log", f"broker refusals logged: {refusals}",
                                        proxy=proxy)
    problems = problems_in(log, departures)
    assert not problems, cluster.report(
        what, "proxy log", f"warnings/errors: {problems}; client closing windows excused: "
        f"{[(hms(w[0]), hms(w[1])) + tuple(w[2:]) for w in departures]}", proxy=proxy)


def java_via_proxy(proxy, workdir, name: str, args: list[str], timeout: float = 240):
    # No hosts file, no SASL, no TLS: bootstrap.servers is the proxy, and that is all.
    return run_java(name, proxy.bootstrap, workdir, ["security=plaintext"] + args,
                    timeout=timeout)


def assert_java_ok(cluster, proxy, status, res, log, what):
    assert res is not None and status == 0 and res["ok"], cluster.report(
        what, (res or {}).get("step", "start"),
        f"exit status {status}; errors: {(res or {}).get('errors')}", client_log=log,
        proxy=proxy)
    # The client itself never authenticated: the proxy did, upstream.
    for m in ("admin_metrics", "producer_metrics", "consumer_metrics"):
        assert res.get(m, {}).get("successful-authentication-total", 0) == 0, (m, res[m])


# ---- the scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["oauthbearer", "plain"])
def test_proxy_java_round_trip(mechanism, kafka_cluster, start_proxy, workdir):
    """kafka-clients 4.x through the proxy: AdminClient describeCluster lists exactly the
    proxy's addresses; an acks=all producer and a consumer group move 1,000 records over 3
    partitions (RF 3), each checked; the committed offsets read back equal the end offsets.
    With `--upstream-sasl plain` the proxy authenticates with email + access token instead."""
    cluster = kafka_cluster
    topic = f"interop-proxy-java-{mechanism}"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    proxy = start_proxy(cluster, upstream_sasl=mechanism)
    d0 = len(cluster.decision_log())
    t0 = time.monotonic()
    status, res, log = java_via_proxy(
        proxy, workdir, topic,
        [f"topic={topic}", f"count={COUNT}", f"partitions={PARTITIONS}", "mode=roundtrip",
         "timeoutSecs=90"])
    elapsed = time.monotonic() - t0
    # The program closes its clients as it ends: the only disconnects this scenario causes.
    closing = (time.time() - CLOSING_SECS, time.time())
    what = f"kafka-clients {res.get('client_version') if res else '4.x'} via proxy ({mechanism})"
    assert_java_ok(cluster, proxy, status, res, log, what)
    assert res["produced"] == res["acked"] == res["consumed"] == COUNT, res
    assert res["mismatched"] == 0 and res["redelivered"] == 0, res
    want_end = {str(p): len(range(p, COUNT, PARTITIONS)) for p in range(PARTITIONS)}
    assert res["end_offsets"] == want_end and res["committed_read_back"] == want_end, res
    assert_only_proxy_addresses(cluster, proxy, res, what, client_log=log)
    accepted = assert_brokers_accepted_only(
        cluster, proxy, d0, "OAUTHBEARER" if mechanism == "oauthbearer" else "PLAIN", what)
    # Partition leaders are spread over the nodes: the proxy authenticated to each of them.
    assert {d["node"] for d in accepted} == set(NODE_IDS), accepted
    assert_proxy_log_clean(cluster, proxy, what, [closing])
    note(f"proxy ({mechanism} upstream), kafka-clients {res['client_version']}: {COUNT} records "
         f"over {PARTITIONS} partitions RF 3 produced (acks=all), consumed in a group and "
         f"committed, each checked; describeCluster = {sorted(res['described_nodes'].values())}; "
         f"{len(accepted)} upstream authentications accepted on nodes "
         f"{sorted({d['node'] for d in accepted})}; {elapsed:.1f} s")


def test_proxy_librdkafka_round_trip(kafka_cluster, start_proxy, workdir):
    """librdkafka through the proxy, configured with bootstrap.servers only: Metadata lists
    exactly the proxy's addresses, 1,000 records round-trip, each checked per partition."""
    cluster = kafka_cluster
    topic = "interop-proxy-librdkafka"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    proxy = start_proxy(cluster)
    d0 = len(cluster.decision_log())
    rdlog = RdLog()
    conf = {"bootstrap.servers": proxy.bootstrap, **rdlog.conf()}
    what = f"librdkafka {confluent_kafka.libversion()[0]} via proxy"
    t0 = time.monotonic()
    try:
        brokers = rd_brokers(conf)
        p = rd_produce(conf, topic, topic, PARTITIONS, count=COUNT)
        c = rd_consume(conf, topic, topic, PARTITIONS, f"interop-{topic}", lambda: COUNT,
                       timeout=90)
        # rd_consume closed its consumer as it returned (rd_produce flushed and let go before).
        closing = (time.time() - CLOSING_SECS, time.time())
    finally:
        rdlog.write(workdir / f"{topic}.client.log")
    elapsed = time.monotonic() - t0
    assert brokers == proxy.broker_addresses(), cluster.report(
        what, "metadata", f"brokers {brokers}, want exactly {proxy.broker_addresses()}",
        proxy=proxy)
    assert not p["failed"] and not p["unflushed"] and len(p["acked"]) == p["sent"] == COUNT, \
        cluster.report(what, "produce", f"{len(p['acked'])}/{p['sent']} acked; failed "
                       f"{p['failed']}; errors {rdlog.errors[:5]}", proxy=proxy)
    assert c["consumed"] == COUNT and not c["bad"] and c["redelivered"] == 0, cluster.report(
        what, "consume", f"{c}; errors {rdlog.errors[:5]}", proxy=proxy)
    want_end = {p_: len(range(p_, COUNT, PARTITIONS)) for p_ in range(PARTITIONS)}
    assert c["next_offsets"] == want_end and c["committed"] == want_end, c
    # Offsets acknowledged to the producer are the ones the consumer read (0.. per partition).
    for part in range(PARTITIONS):
        offs = sorted(o for (pp, o) in p["acked"].values() if pp == part)
        assert offs == list(range(want_end[part])), (part, offs[:5])
    assert not rdlog.leaks(), cluster.report(what, "addresses",
                                             f"librdkafka was told {rdlog.leaks()}", proxy=proxy)
    # Every Metadata answer librdkafka logged named the proxy's address for each node id.
    assert rdlog.metadata_brokers() == {i: {a} for i, a in proxy.broker_addresses().items()}, \
        rdlog.metadata_brokers()
    assert not rdlog.errors, cluster.report(what, "client errors", str(rdlog.errors[:5]),
                                            proxy=proxy)
    assert_brokers_accepted_only(cluster, proxy, d0, "OAUTHBEARER", what)
    assert_proxy_log_clean(cluster, proxy, what, [closing])
    note(f"proxy, {what}: {COUNT} records round-tripped over {PARTITIONS} partitions, each "
         f"checked; Metadata brokers = {sorted(brokers.values())}; {elapsed:.1f} s")


def test_proxy_reauthentication(kafka_cluster, fake_google, start_proxy, workdir):
    """Google tokens of 60 s, brokers re-authenticating every 20 s: a Java producer/consumer
    pair and a librdkafka pair run 3 token lifetimes + 10 s through the proxy. Zero client
    errors, every record in order; the brokers' successful re-authentication counters rise and
    no (re-)authentication fails; the brokers accepted at least 3 distinct access tokens."""
    cluster = kafka_cluster
    assert cluster.reauth_ms == 20_000, cluster.reauth_ms
    topic_j, topic_r = "interop-proxy-reauth-java", "interop-proxy-reauth-librdkafka"
    for t in (topic_j, topic_r):
        cluster.create_topic(t, partitions=PARTITIONS, replication=3)
    fake_google.configure(token_lifetime_secs=LIFETIME)
    try:
        # DEBUG for the proxy's own modules: its per-connection (re-)authentication lines
        # (reauth_checks.py).
        proxy = start_proxy(cluster, name="proxy-short-tokens",
                            extra_args=["--log", PROXY_AUTH_DEBUG])
        # The brokers dump their counters once a second: let them count the proxy's start-up
        # authentications (its readiness probe) before the two counts are compared.
        time.sleep(2)
        d0 = len(cluster.decision_log())
        m0 = cluster.auth_metrics()
        pa0 = proxy.counter("authentications")
        rdlog = RdLog()
        conf = {"bootstrap.servers": proxy.bootstrap, **rdlog.conf()}
        rd: dict = {}
        stop_at = time.monotonic() + SOAK

        def produce():
            rd["produce"] = rd_produce(conf, topic_r, topic_r, PARTITIONS, stop_at=stop_at,
                                       interval=0.2, timeout=60)

        def consume():
            rd["consume"] = rd_consume(conf, topic_r, topic_r, PARTITIONS, f"interop-{topic_r}",
                                       lambda: rd["produce"]["sent"] if "produce" in rd else None,
                                       timeout=SOAK + 120)

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        status, res, log = java_via_proxy(
            proxy, workdir, topic_j,
            [f"topic={topic_j}", f"partitions={PARTITIONS}", "mode=soak", f"soakSecs={SOAK}",
             "intervalMs=200", "timeoutSecs=90"], timeout=SOAK + 240)
        for t in threads:
            t.join(timeout=SOAK + 180)
        elapsed = time.monotonic() - t0
        # The clients stop at the end of the soak and close: the only disconnects excused.
        closing = (time.time() - (elapsed - SOAK) - CLOSING_SECS, time.time())
        rdlog.write(workdir / f"{topic_r}.client.log")
        soak_end = time.time()
        time.sleep(2)  # one more metrics dump by every broker
        m1 = cluster.auth_metrics()
        decisions = cluster.decision_log()[d0:]
    finally:
        fake_google.configure(token_lifetime_secs=DEFAULT_LIFETIME)

    what_j = f"kafka-clients {res.get('client_version') if res else '4.x'} via proxy (soak)"
    assert_java_ok(cluster, proxy, status, res, log, what_j)
    assert res["produced"] == res["acked"] == res["consumed"] > 0, res
    assert res["mismatched"] == 0 and res["redelivered"] == 0 and res["send_failed"] == 0, res
    assert_only_proxy_addresses(cluster, proxy, res, what_j, client_log=log)

    what_r = f"librdkafka {confluent_kafka.libversion()[0]} via proxy (soak)"
    assert "produce" in rd and "consume" in rd, cluster.report(what_r, "run", f"{rd}", proxy=proxy)
    p, c = rd["produce"], rd["consume"]
    assert not p["failed"] and not p["unflushed"] and len(p["acked"]) == p["sent"] > 0, \
        cluster.report(what_r, "produce", f"{len(p['acked'])}/{p['sent']} acked; {p['failed']}",
                       proxy=proxy)
    assert c["consumed"] == p["sent"] and not c["bad"] and c["redelivered"] == 0, \
        cluster.report(what_r, "consume", f"{c}", proxy=proxy)
    assert not rdlog.errors, cluster.report(what_r, "client errors", str(rdlog.errors[:5]),
                                            proxy=proxy)
    assert not rdlog.leaks(), rdlog.leaks()
    assert rdlog.metadata_brokers() == {i: {a} for i, a in proxy.broker_addresses().items()}, \
        rdlog.metadata_brokers()

    assert elapsed >= 3 * LIFETIME, f"the soak lasted {elapsed:.0f} s, less than 3 lifetimes"

    # Per connection (issue 19 §1), before the totals below: every upstream connection
    # re-authenticated on time and no session lapsed (the proxy's log), and every connection
    # the Java client held for the whole soak was carried by one upstream connection that
    # re-authenticated at least once per session after the first (the Java client's local
    # ports, matched to the proxy's "connection closed client=..." lines).
    session = cluster.reauth_ms / 1000
    upstream = upstream_connections(proxy.log_text())
    per_conn, stats = proxy_session_failures(upstream, soak_end)
    by_port: dict[int, list] = {}
    for u in upstream.values():
        if u.client:
            by_port.setdefault(int(u.client.rsplit(":", 1)[1]), []).append(u)
    java_lines, java_fails = [], []
    java_whole = [x for x in res.get("connections", []) if whole_soak(x, SOAK)]
    for jc in java_whole:
        ups = by_port.get(jc["local_port"], [])
        if len(ups) != 1:
            java_fails.append(f"Java {jc['client']}'s connection from port {jc['local_port']} (node "
                              f"{jc['node']}): {len(ups)} upstream connections in the proxy's log, "
                              f"want 1")
            continue
        u = ups[0]
        life = (u.closed or soak_end) - u.auths[0].at
        want = max(0, math.floor(life / session) - 1)
        java_lines.append(f"{jc['client']} node {jc['node']}: upstream {u.id} {u.reauths} "
                          f"re-authentications in {life:.0f} s")
        if u.reauths < want:
            java_fails.append(f"Java {jc['client']}'s connection from port {jc['local_port']} (node "
                              f"{jc['node']}): its upstream connection {u.id} re-authenticated "
                              f"{u.reauths} times in {life:.0f} s, want at least {want}")
    for jc in vanished(res.get("connections", []), SOAK):
        ups = by_port.get(jc["local_port"], [])
        java_fails.append(f"Java {jc['client']} lost its connection to node {jc['node']} (port "
                          f"{jc['local_port']}) {jc['last_ms'] / 1000:.1f} s into the soak; its "
                          f"upstream connection(s) "
                          f"{[(u.id, u.reauths) for u in ups]} (id, re-authentications)")
    if len([x for x in java_whole if x["client"] == "producer"]) < 1 or \
            len([x for x in java_whole if x["client"] == "consumer"]) < 2:
        java_fails.append(f"the Java client held {len(java_whole)} connections for the whole soak "
                          f"(want a producer's and a consumer's fetch and coordinator ones): "
                          f"{res.get('connections')}; watch problems "
                          f"{res.get('connection_watch_problems')}")
    assert upstream and not per_conn and not java_fails, cluster.report(
        "proxy", "re-authentication per connection",
        f"{len(per_conn)} problems over {len(upstream)} upstream connections: {per_conn[:12]}; "
        f"{len(java_fails)} with the Java client's connections: {java_fails[:8]}", proxy=proxy)

    refused = [d for d in decisions if d["decision"] == "refuse"]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    assert not refused, cluster.report("brokers", "validate", f"refused: {refused[:3]}", proxy=proxy)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}
    tokens = {d["token_fp"] for d in accepted}
    assert len(tokens) >= 3, cluster.report(
        "brokers", "validate", f"only {len(tokens)} distinct access tokens accepted in "
        f"{elapsed:.0f} s of {LIFETIME} s tokens: the proxy did not re-authenticate with fresh "
        f"ones", proxy=proxy)

    def delta(k):
        return m1.get(k, 0) - m0.get(k, 0)

    reauth = delta("successful-reauthentication-total")
    assert reauth > 0 and delta("failed-reauthentication-total") == 0 \
        and delta("failed-authentication-total") == 0, cluster.report(
            "brokers", "re-authentication counters", f"before {m0}, after {m1}", proxy=proxy)
    # No session ran out: a broker closes a connection whose session expired before it
    # re-authenticated (KIP-368), and the clients would have reconnected through the proxy.
    assert delta("expired-connections-killed-count") == 0 and \
        "expired-connections-killed-count" in m1, cluster.report(
            "brokers", "expired connections", f"before {m0}, after {m1}", proxy=proxy)
    # No hidden reconnects: every new connection the brokers authenticated during the soak is
    # one the proxy opened and authenticated (its own count), and the clients closed none of
    # theirs (a reconnection kafka-clients retries silently shows here).
    opened = proxy.counter("authentications").get("ok", 0) - pa0.get("ok", 0)
    assert delta("successful-authentication-total") == opened > 0, cluster.report(
        "brokers", "new connections", f"brokers authenticated "
        f"{delta('successful-authentication-total')} new connections, the proxy opened "
        f"{opened}", proxy=proxy)
    for m in ("producer_metrics", "consumer_metrics"):
        assert res[m]["connection-close-total"] == 0 and res[m]["connection-creation-total"] > 0, \
            cluster.report(what_j, "client connections", f"{m}: {res[m]}", proxy=proxy)
    # Re-authentications: the connections that carried traffic the whole soak (a producer and a
    # consumer of each pair, to each node leading a partition of their topic) re-authenticate
    # at least once per session after the first; no connection does so more often than every
    # half session (the earliest point the proxy starts one).
    busy = 2 * sum(len(set(cluster.leaders(t).values())) for t in (topic_j, topic_r))
    floor = busy * (int(SOAK // session) - 1)
    ceiling = opened * math.ceil(elapsed / (session / 2))
    assert floor <= reauth <= ceiling, cluster.report(
        "brokers", "re-authentication count", f"{reauth} re-authentications in {elapsed:.0f} s "
        f"over {opened} upstream connections, want {floor}..{ceiling}", proxy=proxy)
    assert_proxy_log_clean(cluster, proxy, what_j, [closing])
    # The proxy's own count (/metrics: `..._reauthentications_total{outcome="..."}`).
    proxy_reauth = proxy.counter("reauthentications")
    # Only this proxy talked to the brokers' client listener during the soak, and its
    # upstream connections closed with its clients: the two counts are of the same events.
    assert proxy_reauth.get("ok", 0) == reauth and \
        sum(v for k, v in proxy_reauth.items() if k != "ok") == 0, cluster.report(
            "proxy", "/metrics", f"re-authentications by outcome: {proxy_reauth}, the brokers "
            f"counted {reauth} successful ones", proxy=proxy)
    note(f"proxy re-authentication: {elapsed:.0f} s soak, {LIFETIME} s Google tokens, "
         f"connections.max.reauth.ms={cluster.reauth_ms}: brokers' successful-reauthentication-"
         f"total +{reauth} (failed +0), {len(accepted)} authentications accepted with "
         f"{len(tokens)} distinct access tokens, refused 0; records: Java "
         f"{res['consumed']}/{res['produced']}, librdkafka {c['consumed']}/{p['sent']}, all "
         f"checked in order; {opened} upstream connections (the brokers authenticated as many "
         f"new ones), {reauth} re-authentications within {floor}..{ceiling} ({busy} busy connections), "
         f"expired connections killed 0, Java client connections closed 0; "
         f"proxy /metrics re-authentications {proxy_reauth}; per upstream connection "
         f"(proxy log): {stats}; Java connections held for the whole soak: {java_lines}; "
         f"proxy WARN "
         f"lines for clients closing mid-response: {client_departures_in(proxy.log_text())}")


def test_proxy_broker_restart(kafka_cluster, start_proxy, workdir):
    """A node that leads a partition of the topic is stopped and started again while a Java
    producer (acks=all, idempotent) and consumer group run through the proxy. Observed, not
    implied: the cluster's leaders (sampled every 0.5 s) show every partition the node led
    moved to another node while it was down; the client's own log shows it was told (a
    NOT_LEADER / metadata error for each of those partitions, metadata refreshed); it recovers
    through the proxy, every acknowledged record is consumed, in order, none lost; and after
    the node returns the proxy authenticated to it again (its own log names the node; the
    node's validator accepted the proxy's token)."""
    from cluster_clients import (LeaderWatch, assert_leadership_moved,
                                 client_saw_leader_change, pick_victim,
                                 proxy_authentications_at)
    cluster = kafka_cluster
    topic = "interop-proxy-restart"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    victim, leaders0 = pick_victim(cluster, [topic])
    # DEBUG for the proxy's own modules: its "authenticated broker=<host>" lines name the
    # node (its /metrics count authentications by outcome only, no node label).
    proxy = start_proxy(cluster, extra_args=["--log", PROXY_AUTH_DEBUG])
    d0 = len(cluster.decision_log())
    # Long enough that the node is back (a start takes 5-25 s on a busy 2-core machine) well
    # before the clients stop, so they must reconnect to it through the proxy.
    soak = int(os.environ.get("INTEROP_RESTART_SOAK_SECS", "60"))
    events: dict = {}
    watch = LeaderWatch(cluster, [topic]).start()

    def restart():
        try:
            time.sleep(10)
            events["stop_at"] = time.time()
            cluster.stop_node(victim)
            events["stopped_at"] = time.time()
            time.sleep(5)
            cluster.start_node(victim)
            events["started_at"] = time.time()
            cluster.wait_in_sync(timeout=90)
            events["in_sync_at"] = time.time()
        except BaseException as e:  # reported below, never swallowed
            events["error"] = repr(e)

    t = threading.Thread(target=restart, name="restart-node")
    t0 = time.monotonic()
    t.start()
    try:
        status, res, log = java_via_proxy(
            proxy, workdir, topic,
            [f"topic={topic}", f"partitions={PARTITIONS}", "mode=soak", f"soakSecs={soak}",
             "intervalMs=100", "timeoutSecs=120"], timeout=soak + 300)
        t.join(timeout=200)
    finally:
        watch.stop()
    elapsed = time.monotonic() - t0
    assert "error" not in events and "in_sync_at" in events, cluster.report(
        "cluster", "restart node", f"{events}", proxy=proxy)
    what = f"kafka-clients {res.get('client_version') if res else '4.x'} via proxy (node restart)"
    assert_java_ok(cluster, proxy, status, res, log, what)
    assert res["send_failed"] == 0 and res["acked"] == res["produced"] > 0, res
    assert res["consumed"] == res["acked"] and res["mismatched"] == 0, res
    assert res["partitions_short_of_acked"] == 0, res
    assert_only_proxy_addresses(cluster, proxy, res, what, client_log=log)
    # The cluster moved every partition the victim led to another node while it was down.
    led = assert_leadership_moved(watch, victim, events, [topic])
    # The client saw it: kafka-clients' Sender logged a metadata error (NOT_LEADER_OR_FOLLOWER
    # or the like) for each of those partitions during the outage and refreshed metadata.
    saw = client_saw_leader_change("kafka-clients", log.read_text(errors="replace"), topic,
                                   led[topic], victim, proxy.broker_addresses()[victim],
                                   events["stop_at"], events["started_at"])
    assert set(saw["per_partition"]) >= led[topic], cluster.report(
        what, "leader change", f"node {victim} led partitions {sorted(led[topic])}; the "
        f"client reported a metadata error during the outage for {sorted(saw['per_partition'])}",
        client_log=log, proxy=proxy)
    decisions = cluster.decision_log()[d0:]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    assert not refused, cluster.report(what, "broker authentication", f"{refused[:3]}", proxy=proxy)
    # After the node returned, the proxy authenticated to the new process: its validator
    # accepted the proxy's token, and the proxy's own log names the node.
    after = [d for d in decisions if d["node"] == victim and d["decision"] == "accept"
             and d["ts_ms"] >= events["started_at"] * 1000]
    assert after, cluster.report(what, "reconnect", f"no authentication at node {victim} after "
                                 f"its restart", proxy=proxy)
    proxy_says = proxy_authentications_at(proxy.log_text(), cluster.nodes[victim].host,
                                          events["started_at"])
    assert proxy_says, cluster.report(what, "reconnect", f"the proxy's log has no "
                                      f"'authenticated broker={cluster.nodes[victim].host}' "
                                      f"after the node's restart", proxy=proxy)
    assert not broker_refusals_in(proxy.log_text()), broker_refusals_in(proxy.log_text())
    outage = [ls.get(p) for ts, _, ls in watch.samples for p in sorted(led[topic])
              if events["stopped_at"] <= ts <= events["started_at"]]
    note(f"proxy, node {victim} (leader of {topic} partitions {sorted(led[topic])}, picked from "
         f"{leaders0[topic]}) stopped (controlled shutdown "
         f"{events['stopped_at'] - events['stop_at']:.0f} s), started again "
         f"{events['started_at'] - events['stopped_at']:.0f} s later, mid-run: leaders sampled "
         f"while it was down {sorted(set(outage))} ({len(outage)} samples); the client logged "
         f"{(lambda l: l[l.find('Received'):])(saw['per_partition'][min(saw['per_partition'])])[:200]}; Java "
         f"{res['consumed']}/{res['acked']} acknowledged records consumed in order "
         f"({res['redelivered']} redelivered after rebalances, 0 lost, 0 send failures); "
         f"back in sync {events['in_sync_at'] - events['started_at']:.0f} s after start; the "
         f"proxy authenticated to node {victim} {len(proxy_says)}x after its restart (its "
         f"validator accepted {len(after)}); {elapsed:.0f} s")

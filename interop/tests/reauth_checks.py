"""Re-authentication per connection (issue 19 §1): the proxy's upstream connections, from its
own log, and the Java clients' connections, from the clients themselves.

The totals (the brokers' `successful-reauthentication-total`, `expired-connections-killed-count`,
a client's `connection-close-total`) can hide one connection that never re-authenticated behind
another that did so twice; these checks look at each connection.

Proxy side: with `--log info,gcp_kafka_auth_handler::proxy=debug` the proxy logs, per client
connection (the id of its connection slot, one upstream connection each):

    ... DEBUG ...::connection: upstream connection authenticated connection=7 broker=<host> session_lifetime_ms=20000
    ... DEBUG ...::connection: re-authenticated connection=7 broker=<host> session_lifetime_ms=20000 due=deadline
    ... DEBUG ...::connection: connection closed client=127.0.0.1:<port> listener=2 connection=7

`session_lifetime_ms` is what the broker granted (KIP-368: the lesser of
`connections.max.reauth.ms` and the token's remaining life), `due` why the proxy
re-authenticated then: `deadline` (a random 85-95 % of the session, kafka-clients' window: the
connection had no request past half the session) or `early` (a request arrived past half the
session: the proxy re-authenticates before forwarding it, so a re-authentication is never
queued at the deadline behind large answers read slowly — `connection.rs`,
`reauthenticate_if_due`). No token and no fingerprint is logged.

Java side: `ChannelWatch` (interop/java/clients-src) samples each KafkaChannel's own
`successfulAuthentications()` (1 + its re-authentications), its node, local port and the node's
`request-total`, every 0.5 s; the RESULT line's `connections` keeps, per connection, when it
was first and last seen, its count then, and the longest stretch without a request.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field

# connection.rs: `reauth_deadline` (85-95 % of the session) and `early_reauth_from` (half).
DEADLINE_FRACTIONS = (0.85, 0.95)
EARLY_FRACTION = 0.5
# How late a (re-)authentication may complete past the point it was due. The proxy's
# SaslHandshake is written at once but its answer comes in order, after the requests already in
# flight on that connection: a fetch long-poll holds it up to fetch.max.wait.ms (500 ms, both
# kafka-clients and librdkafka by default); an early one first waits for those answers
# (`wait_drained`). The other 0.5 s are for the token cache read, the TLS round trip and a
# 2-core machine shared with other builds. Measured in the soak: see the test's note
# (`latest_vs_95pct_secs`, `deadline_gap_fractions`).
SLACK_SECS = 1.0
# The log's timestamps are the proxy's wall clock, the deadlines its monotonic clock.
CLOCK_SECS = 0.05

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+\w+\s+\S+: "
                  r"(upstream connection authenticated|re-authenticated|connection closed)(.*)$")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def _fields(rest: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in FIELD.findall(rest)}


@dataclass
class Auth:
    at: float  # epoch seconds, when the proxy logged it (the exchange done)
    due: str  # "open" (the connection's first), "deadline" or "early"
    session: float  # seconds the broker granted (0: no expiry)


@dataclass
class Upstream:
    id: str
    broker: str = ""
    auths: list[Auth] = field(default_factory=list)
    closed: float | None = None
    client: str | None = None  # the client's address, from the "connection closed" line

    @property
    def reauths(self) -> int:
        return len(self.auths) - 1


def upstream_connections(log_text: str) -> dict[str, Upstream]:
    """The proxy's upstream connections by id, from its DEBUG log, in log order."""
    out: dict[str, Upstream] = {}
    for line in log_text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        f = _fields(m.group(3))
        cid = f.get("connection")
        if cid is None:
            continue
        c = out.setdefault(cid, Upstream(cid))
        t = _epoch(m.group(1))
        if m.group(2) == "connection closed":
            c.closed, c.client = t, f.get("client")
            continue
        c.broker = f.get("broker", c.broker)
        due = "open" if m.group(2) == "upstream connection authenticated" else f.get("due", "?")
        c.auths.append(Auth(t, due, int(f.get("session_lifetime_ms", "0")) / 1000))
    return {k: v for k, v in out.items() if v.auths}


def proxy_session_failures(conns: dict[str, Upstream], read_at: float) -> tuple[list[str], dict]:
    """What is wrong with each upstream connection's sessions, and the measured figures.

    For every connection: each re-authentication came between `EARLY_FRACTION` (an early one) or
    85 % (at the deadline) and 95 % of the session the previous one was granted, plus
    `SLACK_SECS`, and before that session ended; the last one is less than its session before
    the connection closed (or before `read_at`, when it had not): no session ever lapsed. And
    its count lies in what those rules allow over its life:
    [ceil((life - S) / (0.95 S + slack)), floor(life / (lo S))], lo = 0.85, or 0.5 when it
    re-authenticated early. For a connection open 190 s with 20 s sessions that re-authenticated
    only at the deadline: 9..11, i.e. soak / (0.9 x session) = 10.6 within about ±1 (the issue's
    figure); one re-authenticating early (a request past half the session, the proxy's own
    rule): 9..19."""
    failures: list[str] = []
    gaps: dict[str, list[float]] = {"deadline": [], "early": []}
    late = -math.inf
    for c in conns.values():
        a = c.auths
        off: list[str] = []  # this connection's re-authentications outside their window
        for prev, nxt in zip(a, a[1:]):
            gap, s = nxt.at - prev.at, prev.session
            if s <= 0:
                off.append(f"at {nxt.at:.3f} though its session had no expiry")
                continue
            lo = (DEADLINE_FRACTIONS[0] if nxt.due == "deadline" else EARLY_FRACTION) * s
            hi = min(DEADLINE_FRACTIONS[1] * s + SLACK_SECS, s)
            if nxt.due in gaps:
                gaps[nxt.due].append(gap / s)
            late = max(late, gap - DEADLINE_FRACTIONS[1] * s)
            if not (lo - CLOCK_SECS <= gap <= hi) or nxt.due not in gaps:
                off.append(f"due={nxt.due} {gap:.2f} s after the previous one, whose session "
                           f"was {s:.2f} s (want {lo:.2f}..{hi:.2f} s)")
        if off:
            failures.append(f"connection {c.id} ({c.broker}): {len(off)} of {len(a) - 1} "
                            f"re-authentications outside their window, first: {off[0]}")
        end = c.closed if c.closed is not None else read_at
        last = a[-1]
        if last.session > 0 and end - last.at >= last.session:
            failures.append(f"connection {c.id} ({c.broker}): its session lapsed: last "
                            f"(re-)authenticated {end - last.at:.1f} s before it "
                            f"{'closed' if c.closed is not None else 'was read'}, the session "
                            f"was {last.session:.0f} s ({len(a) - 1} re-authentications)")
        life = end - a[0].at
        s_min, s_max = min(x.session for x in a), max(x.session for x in a)
        if s_min > 0:
            # Every gap at most 0.95 S + slack and the tail under S: more than
            # (life - S) / (0.95 S + slack); every gap at least lo x S: at most life / (lo x S).
            lo_frac = EARLY_FRACTION if any(x.due == "early" for x in a) else DEADLINE_FRACTIONS[0]
            want_lo = max(0, math.ceil((life - s_max) / (DEADLINE_FRACTIONS[1] * s_max + SLACK_SECS)))
            want_hi = math.floor(life / (lo_frac * s_min - CLOCK_SECS))
            if not want_lo <= c.reauths <= want_hi:
                failures.append(f"connection {c.id} ({c.broker}): {c.reauths} re-authentications "
                                f"in {life:.0f} s of {s_min:.0f}-{s_max:.0f} s sessions, want "
                                f"{want_lo}..{want_hi}")
    stats = {
        "connections": len(conns),
        "reauths": sorted(c.reauths for c in conns.values()),
        "deadline_gap_fractions": (round(min(gaps["deadline"]), 3), round(max(gaps["deadline"]), 3))
        if gaps["deadline"] else None,
        "early_gap_fractions": (round(min(gaps["early"]), 3), round(max(gaps["early"]), 3))
        if gaps["early"] else None,
        "deadline_count": len(gaps["deadline"]),
        "early_count": len(gaps["early"]),
        # How close any re-authentication came to 95 % of its session (negative: all before).
        "latest_vs_95pct_secs": round(late, 2) if late > -math.inf else None,
        "sessions_secs": (min(x.session for c in conns.values() for x in c.auths),
                          max(x.session for c in conns.values() for x in c.auths)) if conns else None,
    }
    return failures, stats


def whole_soak(conn: dict, soak_secs: float, start_within_ms: int = 10_000,
               end_within_ms: int = 5_000) -> bool:
    """A Java connection (ChannelWatch's summary) seen from the soak's first seconds to its end."""
    return conn["first_ms"] <= start_within_ms and conn["last_ms"] >= soak_secs * 1000 - end_within_ms


def vanished(conns: list[dict], soak_secs: float, end_within_ms: int = 5_000) -> list[dict]:
    """Java connections (ChannelWatch's summary) that ended before the soak did: the client
    lost them (a broker closing an expired session, a failed re-authentication) and had to open
    others. The watch keeps sampling each client until it stops at the soak's end."""
    return [c for c in conns if c["last_ms"] < soak_secs * 1000 - end_within_ms]


def java_connection_failures(conns: list[dict], soak_secs: float, session: float,
                             want_busy: dict[str, int]) -> tuple[list[str], list[str]]:
    """Direct Java clients (they authenticate themselves): every connection held for the whole
    soak that sent a request at least every 0.85 x session re-authenticated at least
    floor(life / session) - 1 times (kafka-clients re-authenticates at 85-95 % of the session,
    before its next send, so one with a request always due does so every session); and there
    were at least `want_busy[client]` such connections per client. A connection idle longer
    than that is listed, not checked: kafka-clients re-authenticates only before a send, and a
    broker only closes an expired connection when it next receives from it (which, from
    kafka-clients, comes after a re-authentication). Returns (failures, one line per
    connection)."""
    failures, lines = [], []
    busy: dict[str, int] = {}
    for c in conns:
        life = (c["last_ms"] - c["first_ms"]) / 1000
        # Counted from the first authentication (a channel first seen while still
        # authenticating shows 0).
        re = max(0, c["auths_last"] - max(c["auths_first"], 1))
        is_whole = whole_soak(c, soak_secs)
        is_busy = c["longest_idle_ms"] < DEADLINE_FRACTIONS[0] * session * 1000
        want = max(0, math.floor(life / session) - 1)
        lines.append(f"{c['client']} node {c['node']} port {c['local_port']}: "
                     f"{c['auths_last']} authentications ({re} re- in {life:.0f} s), "
                     f"{c['requests']} requests, longest idle {c['longest_idle_ms'] / 1000:.1f} s"
                     f"{'' if is_whole else ', not whole soak'}{'' if is_busy else ', idle'}")
        if not (is_whole and is_busy):
            continue
        busy[c["client"]] = busy.get(c["client"], 0) + 1
        if re < want:
            failures.append(f"{c['client']}'s connection to node {c['node']} (local port "
                            f"{c['local_port']}) re-authenticated {re} times in {life:.0f} s "
                            f"of {session:.0f} s sessions, want at least {want}")
    for c in vanished(conns, soak_secs):
        failures.append(f"{c['client']}'s connection to node {c['node']} (local port "
                        f"{c['local_port']}) ended {c['last_ms'] / 1000:.1f} s into the soak, "
                        f"after {max(0, c['auths_last'] - 1)} re-authentications")
    for client, n in want_busy.items():
        if busy.get(client, 0) < n:
            failures.append(f"{client}: {busy.get(client, 0)} connections held and busy for the "
                            f"whole soak, want at least {n} (a connection was closed and "
                            f"replaced, or the watch saw none)")
    return failures, lines

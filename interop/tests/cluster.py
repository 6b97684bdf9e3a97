"""A real 3-node Kafka 4.x KRaft cluster on loopback, with TLS, for the multi-broker scenarios.

Loaded by conftest.py as a pytest plugin. Nothing here starts unless a scenario asks for the
`kafka_cluster` fixture (session scope: started on first use, shared afterwards), so the
single-broker scenarios do not pay for it.

Each node is a combined broker+controller (a 3-voter quorum, so any one node can be stopped
and started again) with three listeners, all on 127.0.0.1:

- EXTERNAL, `SASL_SSL`, for the clients and the proxy: a per-node certificate made at run time
  by a test CA (SAN `broker-N.kafka.invalid`), SASL OAUTHBEARER (checked by
  `GoogleTokenValidator`) and PLAIN (username = principal email, password = a Google access
  token, checked by `GooglePlainValidator`), advertised as `broker-N.kafka.invalid:PORT`. Those
  names resolve nowhere: only a client told how (the proxy's `--resolve`, the JDK's
  `jdk.net.hosts.file`) can reach the brokers, so a broker address leaking through the proxy
  fails the client that receives it.
- INTERNAL, `PLAINTEXT`, inter-broker traffic; the harness also administers the cluster through
  it (topics, in-sync checks) as the super user `User:ANONYMOUS`.
- CONTROLLER, `PLAINTEXT`, the KRaft quorum.

Issues 14 (client matrix) and 15 (benchmarks) reuse this fixture; `start_cluster()` builds one
with other settings (a different `connections.max.reauth.ms`, none at all).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker_node import THREE_NODE_SIZING, BrokerNode, broker_jvm, start_nodes
from conftest import JAVA_BIN, PRINCIPAL, SIDECAR_BIN, FakeGoogle, classpath, note
from conftest import product_env as _product_env
from harness import (Proc, client_log_excerpt, decisions_excerpt, free_port, http, read_jsonl,
                     tail, wait_until)

NODE_IDS = (1, 2, 3)
# The brokers' client listener (its name is the `listener` tag of the broker's SASL metrics).
EXTERNAL = "EXTERNAL"
# Advertised names: `.invalid` is reserved (RFC 6761), so no resolver ever answers for them.
HOST_PATTERN = "broker-{}.kafka.invalid"
# Managed Kafka re-authenticates connections; the re-authentication scenario needs 20 s.
CLUSTER_REAUTH_MS = 20_000
# Small JVMs: three brokers, clients and the proxy share 2 cores.
BROKER_JVM = ["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
              "-XX:MaxMetaspaceSize=128m", "-Djava.net.preferIPv4Stack=true"]


def broker_host(node_id: int) -> str:
    return HOST_PATTERN.format(node_id)


# ---- the test CA ---------------------------------------------------------------------------


def _openssl(args: list[str], log: Path) -> None:
    with open(log, "ab") as f:
        f.write(("$ openssl " + " ".join(args) + "\n").encode())
        f.flush()
        r = subprocess.run(["openssl"] + args, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                           timeout=60)
    if r.returncode != 0:
        pytest.fail(f"openssl {args[0]} failed (status {r.returncode}); log:\n{tail(log)}")


@dataclass
class TestCA:
    """A CA made for one run, and one PEM keystore (key + chain) per broker host name."""
    dir: Path
    ca_file: Path
    keystores: dict[str, Path] = field(default_factory=dict)


def make_test_ca(d: Path, hosts: list[str], name: str = "interop test CA") -> TestCA:
    """An EC P-256 CA and a leaf certificate per host (SAN = DNS:host, serverAuth), valid 2 days.

    Kafka reads the leaf's PEM keystore (`ssl.keystore.type=PEM`: an unencrypted PKCS#8 key
    followed by the certificate chain); clients and the proxy trust `ca.pem`.
    """
    d.mkdir(parents=True, exist_ok=True)
    log = d / "openssl.log"
    ca_key, ca_pem = d / "ca.key", d / "ca.pem"
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "2",
              "-subj", f"/O=gcp-kafka-auth-handler interop/CN={name}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], log)
    ca = TestCA(d, ca_pem)
    for host in hosts:
        key, csr, crt = d / f"{host}.key", d / f"{host}.csr", d / f"{host}.crt"
        ext = d / f"{host}.ext"
        ext.write_text(f"subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        _openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}"], log)
        _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                  "-set_serial", str(int(uuid.uuid4().int >> 65)), "-days", "2",
                  "-extfile", str(ext), "-out", str(crt)], log)
        keystore = d / f"{host}.keystore.pem"
        keystore.write_text(key.read_text() + crt.read_text() + ca_pem.read_text())
        ca.keystores[host] = keystore
    return ca


# ---- the cluster ---------------------------------------------------------------------------


class KafkaCluster:
    """Three KRaft nodes; see the module docstring. Every helper waits with a deadline."""

    def __init__(self, name: str, workdir: Path, fake: FakeGoogle, reauth_ms: int | None,
                 principals: list[str]):
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fake = fake
        self.reauth_ms = reauth_ms
        self.principals = principals
        self.ca = make_test_ca(self.dir / "tls", [broker_host(n) for n in NODE_IDS])
        self.ca_file = self.ca.ca_file
        self.nodes: dict[int, BrokerNode] = {
            n: BrokerNode(n, broker_host(n), self.dir / f"node-{n}", listener=EXTERNAL)
            for n in NODE_IDS}
        self.jvm = broker_jvm(JAVA_BIN, BROKER_JVM)
        # Counters of broker processes that have stopped (a restarted broker counts from 0).
        self._retired: dict[str, int] = {}
        self._lock = threading.Lock()
        # The JDK's resolver reads only this file when -Djdk.net.hosts.file names it (JDK 9+).
        self.hosts_file = self.dir / "hosts"
        self.hosts_file.write_text("127.0.0.1 localhost " +
                                   " ".join(n.host for n in self.nodes.values()) + "\n")
        self.startup_secs: float | None = None
        self._admin_client = None
        self._admin_for: str | None = None

    # -- addresses

    @property
    def bootstrap(self) -> str:
        """The SASL_SSL listeners by their advertised names (resolvable only through a map)."""
        return ",".join(n.external for n in self.nodes.values())

    @property
    def internal_bootstrap(self) -> str:
        """The PLAINTEXT inter-broker listeners: the harness's administration path."""
        return ",".join(f"127.0.0.1:{n.internal_port}" for n in self.nodes.values())

    def resolve_args(self) -> list[str]:
        """The proxy's `--resolve` flags: every advertised name dials 127.0.0.1."""
        out = []
        for n in self.nodes.values():
            out += ["--resolve", f"{n.host}=127.0.0.1"]
        return out

    def advertised(self) -> dict[int, str]:
        return {n.id: n.external for n in self.nodes.values()}

    # -- lifecycle

    def write_configs(self) -> None:
        voters = ",".join(n.voter for n in self.nodes.values())
        for n in self.nodes.values():
            n.write_config(
                title=f"Node {n.id} of the interop suite's 3-node KRaft cluster", voters=voters,
                tokeninfo=self.fake.tokeninfo_url, principals=self.principals,
                reauth_ms=self.reauth_ms, sizing=THREE_NODE_SIZING,
                keystore=self.ca.keystores[n.host], plain=True)

    def start(self, timeout: float = 180) -> None:
        t0 = time.monotonic()
        self.write_configs()
        try:
            start_nodes(list(self.nodes.values()), self.jvm, timeout)
            self.wait_in_sync(timeout=timeout)
        except AssertionError:
            self.stop()
            raise
        self.startup_secs = time.monotonic() - t0

    def stop_node(self, node_id: int, grace: float = 60) -> None:
        """Stops one node with SIGTERM (a controlled shutdown: leadership moves first)."""
        n = self.nodes[node_id]
        assert n.alive(), f"cluster node {node_id} is not running"
        n.proc.stop(grace=grace)
        self._retire_metrics(n)

    def start_node(self, node_id: int, timeout: float = 120) -> None:
        """Starts a stopped node again on the same ports, storage and certificate."""
        n = self.nodes[node_id]
        assert not n.alive(), f"cluster node {node_id} is already running"
        n.wait_started(n.launch(self.jvm), timeout)

    def stop(self) -> None:
        # All at once (each gets SIGTERM), so the last two do not wait for a lost quorum.
        threads = [threading.Thread(target=n.proc.stop, kwargs={"grace": 30})
                   for n in self.nodes.values() if n.alive()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # -- administration through the INTERNAL listener (confluent-kafka, PLAINTEXT)

    def _admin(self):
        """An AdminClient on the live nodes' INTERNAL listeners (one per set of live nodes)."""
        from confluent_kafka.admin import AdminClient
        bootstrap = ",".join(f"127.0.0.1:{n.internal_port}" for n in self.nodes.values()
                             if n.alive())
        if self._admin_for != bootstrap:
            self._admin_client = AdminClient({"bootstrap.servers": bootstrap,
                                              "socket.timeout.ms": 10000})
            self._admin_for = bootstrap
        return self._admin_client

    def out_of_sync(self) -> list[str]:
        """What is not yet healthy: missing brokers, partitions without leader or with a
        replica outside the ISR. Empty when every live node is registered and in sync."""
        md = self._admin().list_topics(timeout=10)
        problems = []
        live = {n.id for n in self.nodes.values() if n.alive()}
        if set(md.brokers) != live:
            problems.append(f"brokers registered {sorted(md.brokers)}, want {sorted(live)}")
        for t in md.topics.values():
            if t.error is not None:
                problems.append(f"topic {t.topic}: {t.error}")
            for p in t.partitions.values():
                if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                    problems.append(f"{t.topic}-{p.id}: leader {p.leader} replicas "
                                    f"{sorted(p.replicas)} isr {sorted(p.isrs)}")
        return problems

    def wait_in_sync(self, timeout: float = 120) -> None:
        """Waits until every live node is registered and every partition's replicas are all in
        its ISR (after a restart: the node has caught up)."""
        last: list[str] = []

        def in_sync():
            nonlocal last
            last = self.out_of_sync()
            return not last

        try:
            wait_until(f"cluster {self.name} to be in sync", in_sync, timeout=timeout, interval=0.5)
        except AssertionError as e:
            raise AssertionError(f"{e}; still out of sync: {last[:10]}") from None

    def create_topic(self, topic: str, partitions: int = 3, replication: int = 3,
                     timeout: float = 60) -> None:
        """Creates a topic (replication factor 3 by default) and waits until it is in sync."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic
        admin = self._admin()  # kept alive until the futures resolve
        fs = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication)],
            operation_timeout=timeout, request_timeout=timeout)
        try:
            fs[topic].result(timeout=timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        self.wait_in_sync(timeout=timeout)

    def leaders(self, topic: str, timeout: float = 30) -> dict[int, int]:
        """Partition -> leader node id, as the cluster reports it now; waits (at most
        `timeout` s) until the topic's partitions are listed and each has a leader, since right
        after a topic is created the metadata may not name them yet."""
        deadline = time.monotonic() + timeout
        while True:
            md = self._admin().list_topics(topic, timeout=10)
            t = md.topics.get(topic)
            found = {p.id: p.leader for p in t.partitions.values()} if t is not None else {}
            if found and all(leader >= 0 for leader in found.values()):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic}: no leader for every partition within "
                                     f"{timeout:.0f} s: {found}")
            time.sleep(0.2)

    # -- what the brokers saw

    def decision_log(self) -> list[dict]:
        """Every validator decision of every node (OAUTHBEARER and PLAIN), in time order;
        each record gains `node` (and `mechanism`, OAUTHBEARER where the validator omits it)."""
        out = []
        for n in self.nodes.values():
            for path, mech in ((n.decisions, "OAUTHBEARER"), (n.plain_decisions, "PLAIN")):
                for r in read_jsonl(path):
                    r["node"] = n.id
                    r.setdefault("mechanism", mech)
                    out.append(r)
        out.sort(key=lambda r: r.get("ts_ms", 0))
        return out

    def _retire_metrics(self, n: BrokerNode) -> None:
        # The stopped process's reporter wrote its final counters on close; a restarted one
        # starts from 0, so keep the old ones and remove the file before it can be re-read.
        final = n.read_metrics()
        with self._lock:
            for k, v in final.items():
                self._retired[k] = self._retired.get(k, 0) + v
        try:
            n.metrics.unlink()
        except FileNotFoundError:
            pass

    def auth_metrics(self) -> dict:
        """The brokers' own SASL counters on the EXTERNAL listener, summed over the nodes and
        over every process a node has run (so they never go down across a restart)."""
        with self._lock:
            total = dict(self._retired)
        for n in self.nodes.values():
            if n.alive():
                for k, v in n.read_metrics().items():
                    total[k] = total.get(k, 0) + v
        return total

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"--- node {n.id} ({n.log}), last lines:\n{n.log_tail(lines)}"
                         for n in self.nodes.values())

    def report(self, client: str, step: str, problem: str, client_log: Path | None = None,
               proxy=None, decisions: int = 8) -> str:
        """A failure message naming the client and step, with every party's log tails."""
        out = [f"[{client}] step '{step}' failed: {problem}"]
        if client_log is not None:
            out.append(client_log_excerpt(client, client_log))
        if proxy is not None:
            out.append(f"--- proxy log ({proxy.proc.log}), last lines:\n{proxy.proc.tail(25)}")
        out.append(decisions_excerpt("validator decisions", self.decision_log(), decisions,
                                     ("node", "mechanism", "decision", "reason", "detail",
                                      "principal", "token_fp")))
        out.append(self.log_tail())
        return "\n".join(out)


def start_cluster(workdir: Path, fake: FakeGoogle, name: str = "cluster",
                  reauth_ms: int | None = CLUSTER_REAUTH_MS,
                  principals: list[str] | None = None) -> KafkaCluster:
    """Builds, formats and starts a 3-node cluster; the caller must `stop()` it."""
    classpath("broker")  # fails clearly when the Java build is missing
    c = KafkaCluster(name, workdir, fake, reauth_ms, principals or [PRINCIPAL])
    c.start()
    return c


@pytest.fixture(scope="session")
def kafka_cluster(workdir: Path, fake_google: FakeGoogle):
    """The shared 3-node TLS cluster (connections.max.reauth.ms = 20 s), started on first use."""
    c = start_cluster(workdir, fake_google)
    note(f"cluster: 3 KRaft nodes (SASL_SSL OAUTHBEARER+PLAIN, RF 3) started and in sync in "
         f"{c.startup_secs:.1f} s")
    yield c
    c.stop()


# ---- the proxy -----------------------------------------------------------------------------


def product_env(home: Path, fake: FakeGoogle) -> dict:
    """The environment the proxy runs in (conftest.product_env, RUST_LOG from
    INTEROP_PROXY_RUST_LOG)."""
    return _product_env(home, fake, os.environ.get("INTEROP_PROXY_RUST_LOG", "info"))


def free_port_block(ids: tuple[int, ...], tries: int = 50) -> int:
    """A base port B such that B + id is free on 127.0.0.1 for every id (and B itself)."""
    import random
    for _ in range(tries):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for port in [base] + [base + i for i in ids]:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no free block of ports for node ids {ids} after {tries} tries")


@dataclass
class Proxy:
    proc: Proc
    listen_port: int
    broker_port_base: int
    http_port: int
    argv: list[str]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def broker_addresses(self, ids=NODE_IDS) -> dict[int, str]:
        """What the proxy must advertise for each node id: 127.0.0.1:(base + id)."""
        return {i: f"127.0.0.1:{self.broker_port_base + i}" for i in ids}

    def metrics(self) -> str:
        status, _, body = http("GET", f"http://127.0.0.1:{self.http_port}/metrics", timeout=5)
        assert status == 200, f"proxy /metrics answered {status}: {body[:300]!r}"
        return body.decode("utf-8", "replace")

    def counter(self, name: str) -> dict[str, int]:
        """A counter by outcome (`gcp_kafka_auth_proxy_<name>_total{outcome=...}`)."""
        out: dict[str, int] = {}
        for line in self.metrics().splitlines():
            m = re.match(rf'^gcp_kafka_auth_proxy_{name}_total\{{outcome="(\w+)"\}} (\d+)$', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
        return out

    def open_connections(self) -> int:
        """The client connections open now (the connections gauge, over all listeners)."""
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in self.metrics().splitlines()
                   if line.startswith("gcp_kafka_auth_proxy_connections{"))

    def log_text(self) -> str:
        return self.proc.log.read_text(errors="replace")


@pytest.fixture
def start_proxy(workdir: Path, fake_google: FakeGoogle, request):
    """Starts `gcp-kafka-auth-handler proxy` in front of a cluster; stopped when the test ends.

    INTEROP_PROXY_BIN picks another binary (default: the sidecar binary, the same program)."""
    started: list[Proxy] = []
    binary = Path(os.environ.get("INTEROP_PROXY_BIN", str(SIDECAR_BIN)))

    def start(cluster: KafkaCluster, name: str = "proxy", upstream_sasl: str = "oauthbearer",
              extra_args: list[str] | None = None, ready_timeout: float = 60,
              wait_ready: bool = True, ca_file: Path | None = None,
              cluster_name: str | None = None) -> Proxy:
        """Starts a proxy and waits for /readyz to answer 200 (with wait_ready=False: for its
        HTTP port to answer at all, for scenarios where it must not become ready). It trusts
        the cluster's CA unless `ca_file` names another. With `cluster_name` the proxy is
        started from that Managed Kafka resource name, which fake-google's Managed Kafka API
        must know, instead of --bootstrap-server."""
        if not binary.exists():
            pytest.fail(f"proxy binary {binary} is missing: cargo build --bins "
                        f"(or set INTEROP_PROXY_BIN)")
        probe = subprocess.run([str(binary), "proxy", "--help"], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL)
        if probe.returncode != 0:
            pytest.fail(f"{binary} has no `proxy` subcommand (`proxy --help` exited "
                        f"{probe.returncode}: {probe.stderr.decode(errors='replace')[:300]}); "
                        f"build it from a checkout with the proxy (issue 13), point "
                        f"INTEROP_PROXY_BIN at one, or leave these scenarios out with "
                        f"INTEROP_PROXY=0")
        test_dir = workdir / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        home = test_dir / f"{name}-home"
        home.mkdir(parents=True, exist_ok=True)
        listen, http_port = free_port(), free_port()
        base = free_port_block(NODE_IDS)
        argv = [str(binary), "proxy",
                *(["--bootstrap-server", ",".join(n.external for n in cluster.nodes.values())]
                  if cluster_name is None else
                  [cluster_name, "--managed-kafka-endpoint", fake_google.base_url]),
                "--listen", f"127.0.0.1:{listen}",
                "--broker-port-base", str(base),
                "--advertised-host", "127.0.0.1",
                "--upstream-ca-file", str(ca_file or cluster.ca_file),
                "--upstream-sasl", upstream_sasl,
                "--http-address", "127.0.0.1", "--http-port", str(http_port)] \
            + cluster.resolve_args() + (extra_args or [])
        proc = Proc(name, argv, test_dir / f"{name}.log", env=product_env(home, fake_google))
        p = Proxy(proc, listen, base, http_port, argv)
        started.append(p)

        def ready():
            status, _, _ = http("GET", f"http://127.0.0.1:{http_port}/readyz", timeout=2)
            return status == 200 or not wait_ready

        wait_until(f"the proxy ({name}) /readyz to answer "
                   f"{'200' if wait_ready else 'at all'}", ready, timeout=ready_timeout,
                   proc=proc)
        return p

    yield start
    for p in started:
        p.proc.stop()


# ---- selecting the proxy scenarios ---------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: needs the 3-node TLS Kafka cluster (started on first use)")
    config.addinivalue_line(
        "markers", "proxy: drives `gcp-kafka-auth-handler proxy` in front of the cluster "
                   "(INTEROP_PROXY=0 leaves these out)")


def pytest_collection_modifyitems(config, items):
    # INTEROP_PROXY=0 leaves the proxy scenarios out (e.g. on a checkout whose binary has no
    # proxy subcommand yet); the run's measurements say so, so nobody mistakes it for a pass.
    if os.environ.get("INTEROP_PROXY", "1") != "0":
        return
    keep, left = [], []
    for item in items:
        (left if item.get_closest_marker("proxy") else keep).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep
        note(f"INTEROP_PROXY=0: {len(left)} proxy scenarios left out of this run")


# ---- outside pytest: `python interop/tests/cluster.py` -------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Starts fake-google and the 3-node cluster, prints one JSON line describing them (the
    bootstrap addresses, the CA and hosts files, the proxy's --resolve flags, fake-google's
    URLs and the environment our binary needs), and keeps them up until SIGTERM/SIGINT or
    --for SECS. For benchmarks and by-hand runs; the scenarios use the fixture instead."""
    import argparse
    import signal
    from conftest import INTEROP
    ap = argparse.ArgumentParser(prog="interop/tests/cluster.py", description=main.__doc__)
    ap.add_argument("--workdir", type=Path,
                    default=INTEROP / "work" / time.strftime("cluster-%Y%m%d-%H%M%S"))
    ap.add_argument("--reauth-ms", default=str(CLUSTER_REAUTH_MS),
                    help="connections.max.reauth.ms, or 'none' to leave it unset")
    ap.add_argument("--for", dest="for_secs", type=float, default=None,
                    help="stop after this many seconds (default: wait for a signal)")
    a = ap.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    reauth = None if a.reauth_ms == "none" else int(a.reauth_ms)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from conftest import start_fake_google
    try:
        fake = start_fake_google(a.workdir)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    try:
        c = start_cluster(a.workdir, fake, reauth_ms=reauth)
        try:
            home = a.workdir / "product-home"
            home.mkdir(exist_ok=True)
            env = product_env(home, fake)
            print(json.dumps({
                "bootstrap": c.bootstrap, "internal_bootstrap": c.internal_bootstrap,
                "ca_file": str(c.ca_file), "hosts_file": str(c.hosts_file),
                "resolve_args": c.resolve_args(), "reauth_ms": reauth,
                "startup_secs": round(c.startup_secs or 0, 1), "workdir": str(c.dir),
                "fake_google": {"base_url": fake.base_url, "metadata_host": fake.metadata_host,
                                "tokeninfo_url": fake.tokeninfo_url},
                "product_env": {k: env[k] for k in ("GCE_METADATA_HOST",
                                                     "GCP_KAFKA_AUTH_TOKENINFO_URL")},
                "principal": PRINCIPAL}), flush=True)
            stop.wait(a.for_secs)
        finally:
            c.stop()
    finally:
        fake.proc.stop()
    return 0


if __name__ == "__main__":
    # (Python puts this file's directory first on sys.path, so conftest and harness import.)
    raise SystemExit(main())

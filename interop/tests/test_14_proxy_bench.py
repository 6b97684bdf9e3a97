"""(12) Issue 15: the proxy measured side by side with a direct connection and kafka-proxy.

Three paths to the same 3-node TLS cluster, driven by the same load generator
(`interop.clients.KafkaLoad`, kafka-clients 4.x), in interleaved rounds (A B C A B C ...):

- direct: the client speaks SASL_SSL + OAUTHBEARER (through our sidecar's token endpoint) to
  `broker-N.kafka.invalid`, resolved by the JDK's `-Djdk.net.hosts.file`;
- ours: the client speaks PLAINTEXT to `gcp-kafka-auth-handler proxy` on loopback, which speaks
  TLS + SASL/OAUTHBEARER to the brokers;
- kafka-proxy (only when INTEROP_BENCH_KAFKA_PROXY names its binary): grepplabs/kafka-proxy
  with TLS + SASL/PLAIN (username = the principal, password = a Google access token).

By default this is the CI smoke round: direct and ours, one short measurement of each kind, every
run checked for client errors, so the harness cannot rot. `bench/kafka.sh` runs the real
benchmark (INTEROP_BENCH=full) and writes the figures (JSON + a Markdown table) where
INTEROP_BENCH_OUT says. Goals are not asserted: two shared cores cannot judge them (see
docs/performance.md); correctness of every run is.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster import NODE_IDS, start_cluster
from conftest import ROOT
from conftest import JAVA_BIN, PRINCIPAL, classpath, note
from harness import Proc, free_port, proc_status_kib, result_line, run_bounded, tail, wait_until

sys.path.insert(0, str(ROOT / "bench"))
import report  # noqa: E402  (bench/report.py: the figures' one renderer)

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

FULL = os.environ.get("INTEROP_BENCH", "") == "full"
KAFKA_PROXY = os.environ.get("INTEROP_BENCH_KAFKA_PROXY", "")
ROUNDS = int(os.environ.get("INTEROP_BENCH_ROUNDS", "3" if FULL else "1"))
# The measured window of each run, after a warm-up (connections, JIT, batches filling).
SECS = int(os.environ.get("INTEROP_BENCH_SECS", "8" if FULL else "3"))
WARMUP = int(os.environ.get("INTEROP_BENCH_WARMUP_SECS", "2" if FULL else "1"))
# A produce run stops after this much payload, so three paths x rounds stay within the disk
# (every byte is stored 3 times; each round's topics are deleted when the round ends).
MAX_BYTES = int(os.environ.get("INTEROP_BENCH_MAX_MB", "96" if FULL else "32")) << 20
# The pre-filled topic the consume runs read again and again (1 KiB records).
FILL_RECORDS = int(os.environ.get("INTEROP_BENCH_FILL_RECORDS", "100000" if FULL else "20000"))
LATENCY_RATE = 1000
IDLE_CONNECTIONS = int(os.environ.get("INTEROP_BENCH_IDLE_CONNECTIONS", "1000" if FULL else "0"))
PARTITIONS = 3
# INTEROP_BENCH_PERF=DIR: `perf record` each proxy (cpu-clock, call graphs) through its first
# produce and consume runs, into DIR/<path>-<run>.perf.data, for `perf report`.
PERF_DIR = os.environ.get("INTEROP_BENCH_PERF", "")
# Full JIT for the load generator (the suite's clients use C1 only, to start quickly).
LOAD_JVM = ["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]

# (name, mode, record size, acks): the throughput runs of each round.
PRODUCE_RUNS = [("produce-1k-acks1", 1024, "1"), ("produce-1k-acksall", 1024, "all"),
                ("produce-100b-acks1", 100, "1"), ("produce-100b-acksall", 100, "all")]
if not FULL:
    PRODUCE_RUNS = PRODUCE_RUNS[:1]


@dataclass
class Path_:
    """One way from the load generator to the brokers."""
    name: str
    bootstrap: str
    client_args: list[str]
    jvm: list[str]
    proc: Proc | None = None  # the proxy process (None: direct)
    samples: list[dict] = field(default_factory=list)
    idle_rss_kib: int | None = None


def proc_cpu_secs(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load_run(path: Path_, workdir: Path, name: str, args: list[str], timeout: float) -> dict:
    log = workdir / "bench" / f"{path.name}-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [JAVA_BIN] + LOAD_JVM + path.jvm + ["-cp", classpath("clients-4"),
                                               "interop.clients.KafkaLoad",
                                               f"bootstrap={path.bootstrap}"] \
        + path.client_args + args
    cpu0 = proc_cpu_secs(path.proc.popen.pid) if path.proc else None
    load0 = os.getloadavg()[0]
    perf = None
    if PERF_DIR and path.proc and name in ("produce-1k-acks1", "consume") \
            and not any(s["run"] == name for s in path.samples):
        Path(PERF_DIR).mkdir(parents=True, exist_ok=True)
        perf = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p",
             str(path.proc.popen.pid), "-o", f"{PERF_DIR}/{path.name}-{name}.perf.data"],
            stdout=subprocess.DEVNULL, stderr=open(log.with_suffix(".perf.log"), "wb"))
    t0 = time.monotonic()
    try:
        status, out = run_bounded(f"KafkaLoad {path.name} {name}", argv, log, timeout=timeout)
    finally:
        if perf is not None:
            perf.send_signal(2)  # SIGINT: perf writes its file and exits
            perf.wait(timeout=60)
    wall = time.monotonic() - t0
    res = result_line(out)
    assert status == 0 and res is not None and res["ok"], (
        f"[{path.name}] {name}: exit status {status}, result {res}; log {log}:\n{tail(log, 30)}"
        + (f"\n--- {path.proc.name} log:\n{path.proc.tail(20)}" if path.proc else ""))
    res.update({"path": path.name, "run": name, "wall_secs": wall, "load1": load0})
    if path.proc:
        assert path.proc.alive(), f"{path.proc.name} died during {name}:\n{path.proc.tail(30)}"
        res["proxy_cpu_secs"] = proc_cpu_secs(path.proc.popen.pid) - cpu0
        res["proxy_hwm_kib"] = proc_status_kib(path.proc.popen.pid, "VmHWM")
    path.samples.append(res)
    return res


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return out


def idle_connections(path: Path_, host: str, port: int, count: int, timeout: float = 120) -> dict:
    """RSS of the proxy with `count` idle client connections open (each of which it has
    connected and authenticated upstream), against its RSS just before."""
    pid = path.proc.popen.pid
    before = proc_status_kib(pid, "VmRSS")

    def sockets() -> int:
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
        return n

    base = sockets()
    conns = []
    try:
        # Each sends one ApiVersions (v0, null client id) and reads the answer: the proxy
        # opens its broker connection on a client's first request, not at accept, and closes a
        # connection that sends nothing within its first-request timeout.
        api_versions = struct.pack(">ihhih", 10, 18, 0, 1, -1)
        for _ in range(count):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(api_versions)
            size = struct.unpack(">i", _recv_exactly(s, 4))[0]
            _recv_exactly(s, size)
            conns.append(s)
        # Each accepted connection is one client socket and one broker socket in the proxy.
        wait_until(f"{path.name} to hold {count} client + broker connections",
                   lambda: sockets() >= base + 2 * count, timeout=timeout, interval=0.5,
                   proc=path.proc)
        time.sleep(1)  # let allocations settle after the last handshake
        with_conns = proc_status_kib(pid, "VmRSS")
    finally:
        for s in conns:
            s.close()
    return {"connections": count, "rss_before_kib": before, "rss_with_kib": with_conns,
            "per_connection_kib": (with_conns - before) / count}


def kafka_proxy_start(binary: str, cluster, workdir: Path, fake_google) -> tuple[Proc, int]:
    """grepplabs/kafka-proxy in front of the cluster: one local listener per broker, dialled at
    127.0.0.1 (`--dial-address-mapping`), TLS with the run's CA and SASL/PLAIN.

    Its TLS server name is the dialled host (127.0.0.1), which the brokers' certificates do not
    name, so it runs with --tls-insecure-skip-verify; that costs nothing per byte (the handshake
    is per connection) but it is weaker than our proxy, which verifies `broker-N.kafka.invalid`.
    """
    d = workdir / "bench" / "kafka-proxy"
    d.mkdir(parents=True, exist_ok=True)
    ports = {n: free_port() for n in NODE_IDS}
    token = fake_google.metadata_token()["access_token"]
    argv = [binary, "server", "--default-listener-ip", "127.0.0.1",
            "--http-listen-address", f"127.0.0.1:{free_port()}",
            "--tls-enable", "--tls-insecure-skip-verify",
            "--tls-ca-chain-cert-file", str(cluster.ca_file),
            "--sasl-enable", "--sasl-method", "PLAIN", "--sasl-username", PRINCIPAL,
            "--log-level", "warning"]
    for n in cluster.nodes.values():
        argv += ["--bootstrap-server-mapping", f"{n.external},127.0.0.1:{ports[n.id]}",
                 "--dial-address-mapping", f"{n.external},127.0.0.1:{n.external_port}"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(d), "SASL_PASSWORD": token}
    proc = Proc("kafka-proxy", argv, d / "kafka-proxy.log", env=env)

    def listening():
        with socket.create_connection(("127.0.0.1", ports[NODE_IDS[0]]), timeout=1):
            return True

    wait_until("kafka-proxy to listen", listening, timeout=30, proc=proc)
    return proc, ports[NODE_IDS[0]]


@pytest.fixture
def bench_cluster(request, workdir, fake_google):
    """The smoke round uses the suite's shared cluster; the full benchmark starts its own
    without `connections.max.reauth.ms` (kafka-proxy cannot re-authenticate, KIP-368), so the
    three paths face the same brokers with the same settings."""
    if not FULL:
        yield request.getfixturevalue("kafka_cluster")
        return
    c = start_cluster(workdir, fake_google, name="bench-cluster", reauth_ms=None)
    note(f"bench: its own 3-node cluster (no re-authentication) in {c.startup_secs:.1f} s")
    yield c
    c.stop()


def delete_topics(cluster, topics: list[str]) -> None:
    admin = cluster._admin()
    fs = admin.delete_topics(topics, operation_timeout=60, request_timeout=60)
    for t, f in fs.items():
        f.result(timeout=60)


def summarize(paths: list[Path_], extra: dict) -> tuple[dict, str]:
    """Medians over rounds per path and run; ratios against direct and kafka-proxy."""
    by = {p.name: {} for p in paths}
    for p in paths:
        for s in p.samples:
            by[p.name].setdefault(s["run"], []).append(s)
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    table: dict = {}
    for p in paths:
        t = {}
        for run, ss in by[p.name].items():
            if run.startswith("latency"):
                t[run] = {k: med([s[k] for s in ss]) for k in ("p50_us", "p99_us", "p999_us")}
            else:
                t[run] = {"mb_per_sec": med([s["mb_per_sec"] for s in ss]),
                          "records_per_sec": med([s["records_per_sec"] for s in ss])}
        if p.proc:
            moved = sum(s.get("total_bytes", 0) for s in p.samples)
            cpu = sum(s["proxy_cpu_secs"] for s in p.samples)
            t["cpu_secs_per_gb"] = cpu / (moved / 1e9) if moved else None
            t["peak_rss_kib"] = max(s["proxy_hwm_kib"] for s in p.samples)
            t["idle_rss_kib"] = p.idle_rss_kib
        table[p.name] = t
    # Added latency, per round (same round = most similar machine load), then the median.
    added = {}
    direct_lat = [s for s in paths[0].samples if s["run"].startswith("latency")]
    for p in paths[1:]:
        mine = [s for s in p.samples if s["run"].startswith("latency")]
        added[p.name] = {k: med([m[k] - d[k] for m, d in zip(mine, direct_lat)])
                         for k in ("p50_us", "p99_us", "p999_us")}
    runs = [r for r in table["direct"] if not r.startswith("latency")
            and isinstance(table["direct"][r], dict)]
    ratios = {}
    for other in ("direct", "kafka-proxy"):
        if other in table and "ours" in table:
            ratios[f"ours/{other}"] = {
                r: table["ours"][r]["mb_per_sec"] / table[other][r]["mb_per_sec"]
                for r in runs if table[other].get(r) and table[other][r]["mb_per_sec"]}
    summary = {"paths": table, "added_latency_us": added, "ratios": ratios, **extra}
    # One rendering for the table a run prints, the .md beside its JSON and docs/performance.md.
    return summary, report.table(summary)


def test_proxy_bench(bench_cluster, fake_google, start_sidecar, start_proxy, workdir):
    cluster = bench_cluster
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if IDLE_CONNECTIONS:
        assert hard >= 4 * IDLE_CONNECTIONS, (
            f"RLIMIT_NOFILE hard limit {hard} is too low for {IDLE_CONNECTIONS} idle "
            f"connections: run with `ulimit -n 8192`")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sidecar = start_sidecar(name="bench-sidecar")
    hosts = [f"-Djdk.net.hosts.file={cluster.hosts_file}",
             f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={sidecar.url}"]
    direct = Path_("direct", cluster.bootstrap,
                   ["security=sasl_ssl", f"truststore={cluster.ca_file}",
                    f"tokenUrl={sidecar.url}"], hosts)
    proxy = start_proxy(cluster, name="bench-proxy")
    ours = Path_("ours", proxy.bootstrap, [], [], proxy.proc)
    paths = [direct, ours]
    kp_port = None
    if KAFKA_PROXY:
        assert Path(KAFKA_PROXY).is_file(), f"INTEROP_BENCH_KAFKA_PROXY={KAFKA_PROXY}: no such file"
        kp_proc, kp_port = kafka_proxy_start(KAFKA_PROXY, cluster, workdir, fake_google)
        paths.append(Path_("kafka-proxy", f"127.0.0.1:{kp_port}", [], [], kp_proc))
    try:
        for p in paths[1:]:
            p.idle_rss_kib = proc_status_kib(p.proc.popen.pid, "VmRSS")
        # Idle connections first, while each proxy's heap has seen nothing else: after the
        # load, memory its allocator kept would hide what the connections cost.
        idle = {}
        if IDLE_CONNECTIONS:
            idle["ours"] = idle_connections(ours, "127.0.0.1", proxy.listen_port, IDLE_CONNECTIONS)
            if kp_port:
                idle["kafka-proxy"] = idle_connections(paths[2], "127.0.0.1", kp_port,
                                                       IDLE_CONNECTIONS)
        run_timeout = WARMUP + SECS + 120

        fill_topic = "bench-consume"
        cluster.create_topic(fill_topic, partitions=PARTITIONS, replication=3)
        load_run(direct, workdir, "fill", ["mode=fill", f"topic={fill_topic}", "recordSize=1024",
                                          "acks=1", f"count={FILL_RECORDS}"], timeout=600)
        direct.samples.pop()  # the fill is set-up, not a figure

        for rnd in range(ROUNDS):
            topics = [f"bench-r{rnd}-{name}" for name, _, _ in PRODUCE_RUNS] + [f"bench-r{rnd}-latency"]
            for t in topics:
                cluster.create_topic(t, partitions=PARTITIONS, replication=3)
            note(f"bench round {rnd + 1}/{ROUNDS}: load {loadavg()}")
            for p in paths:  # A B C, then again: interleaved
                for (name, size, acks), topic in zip(PRODUCE_RUNS, topics):
                    load_run(p, workdir, name,
                             ["mode=produce", f"topic={topic}", f"recordSize={size}",
                              f"acks={acks}", f"warmupSecs={WARMUP}", f"secs={SECS}",
                              f"maxBytes={MAX_BYTES}"], timeout=run_timeout)
                load_run(p, workdir, "consume",
                         ["mode=consume", f"topic={fill_topic}", f"warmupSecs={WARMUP}",
                          f"secs={SECS}"], timeout=run_timeout)
                res = load_run(p, workdir, "latency",
                               ["mode=latency", f"topic={topics[-1]}", "recordSize=100",
                                "acks=1", f"rate={LATENCY_RATE}", f"warmupSecs={WARMUP}",
                                f"secs={SECS}"], timeout=run_timeout)
                assert res["records"] == LATENCY_RATE * SECS, res
            delete_topics(cluster, topics)

    finally:
        if KAFKA_PROXY and len(paths) > 2:
            paths[2].proc.stop()

    # A run that acknowledged nothing inside its window stalled (its client retried until the
    # requests timed out): a figure for a proxy we do not own, a failure for ours and direct.
    stalls = {p.name: [f"{s['run']} ({s.get('first_error') or 'no error, 0 records'})"
                       for s in p.samples if s["run"].startswith("produce") and s["records"] == 0]
              for p in paths}
    summary, table = summarize(paths, {
        "stalls": stalls,
        "rounds": ROUNDS, "secs": SECS, "warmup_secs": WARMUP, "idle": idle,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_end": loadavg(), "cpus": os.cpu_count(), "samples": [s for p in paths for s in p.samples]})
    out = os.environ.get("INTEROP_BENCH_OUT")
    target = Path(out) if out else workdir / "bench" / "bench.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    target.with_suffix(".md").write_text(table)
    note("bench figures (" + ("full" if FULL else "smoke") + f", {ROUNDS} round(s) x {SECS} s; "
         f"{target}):\n" + table + "".join(
             f"{n}: {len(v)} stalled run(s): {v}\n" for n, v in stalls.items() if v))
    assert not stalls["direct"] and not stalls["ours"], stalls

"""The client matrix's programs (issue 14): how each is built or installed, and how it runs.

Every program gets nothing but the proxy's address as its bootstrap servers, produces a known
set of records (record i: key `k-i`, value `<topic>-i`, partition `i % partitions`), consumes
them back in a consumer group checking each one, and prints one `RESULT {json}` line with the
same field names as the Java ClusterRoundTrip program.

- Go (`interop/go`, one module for IBM/sarama, twmb/franz-go and segmentio/kafka-go): built
  once per run into the run's work directory; modules come from the standard GOMODCACHE
  (`go build -mod=readonly` never re-downloads what the cache has).
- kafkajs (`interop/node`): `npm ci` only when node_modules is missing or the lock changed.
- kcat: the Debian package (run.sh installs it when missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from harness import INTEROP, JAVA, result_line, run_bounded, tail

GO_DIR = INTEROP / "go"
NODE_DIR = INTEROP / "node"
JAVA_BIN = os.environ.get("JAVA", shutil.which("java") or "java")

_build_lock = threading.Lock()
_built: dict[str, Path] = {}


def _run_tool(name: str, argv: list[str], log: Path, cwd: Path, timeout: float,
              env: dict | None = None) -> None:
    status, _ = run_bounded(name, argv, log, timeout=timeout, cwd=cwd, env=env)
    if status != 0:
        pytest.fail(f"{name} failed (status {status}); log {log}:\n{tail(log, 30)}")


def go_binary(workdir: Path) -> Path:
    """The matrix's Go program, built once per run (go's build cache makes a warm build fast)."""
    with _build_lock:
        if "go" not in _built:
            go = shutil.which("go")
            if go is None:
                pytest.fail("go is not on PATH: the Go rows of the matrix need the Go toolchain")
            out = workdir / "bin" / "matrix-go"
            t0 = time.monotonic()
            # -mod=readonly: go.sum is the pin; GOTOOLCHAIN=local: never fetch a toolchain.
            env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false",
                   "GOTOOLCHAIN": "local"}
            _run_tool("go build", [go, "build", "-o", str(out), "."], workdir / "go-build.log",
                      GO_DIR, timeout=900, env=env)
            _built["go"] = out
            _built["go_secs"] = time.monotonic() - t0  # type: ignore[assignment]
        return _built["go"]


def node_modules() -> Path:
    """interop/node/node_modules, installed with `npm ci` only when missing or stale: the
    lock's hash is kept beside it, as run.sh keeps the venv's requirements hash."""
    with _build_lock:
        if "node" not in _built:
            npm = shutil.which("npm")
            node = shutil.which("node")
            if npm is None or node is None:
                pytest.fail("node/npm are not on PATH: the kafkajs row needs Node.js")
            lock = NODE_DIR / "package-lock.json"
            digest = hashlib.sha256(lock.read_bytes()).hexdigest()
            stamp = NODE_DIR / "node_modules" / ".lock.sha256"
            if not stamp.exists() or stamp.read_text().strip() != digest:
                _run_tool("npm ci", [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          NODE_DIR / "npm-ci.log", NODE_DIR, timeout=600)
                stamp.write_text(digest + "\n")
            _built["node"] = NODE_DIR / "node_modules"
        return _built["node"]


def kcat_binary() -> str:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not on PATH: apt-get install kcat (interop/run.sh does when it "
                    "runs as root)")
    return kcat


def run_go(workdir: Path, log_dir: Path, client: str, bootstrap: str, topic: str, group: str,
           extra: list[str] | None = None, timeout: float = 240):
    """Runs one Go client; returns (status, result, log)."""
    log = log_dir / f"{client}.client.log"
    argv = [str(go_binary(workdir)), "-client", client, "-bootstrap", bootstrap, "-topic", topic,
            "-group", group] + (extra or [])
    status, out = run_bounded(client, argv, log, timeout=timeout)
    return status, result_line(out), log


def run_kafkajs(log_dir: Path, bootstrap: str, topic: str, group: str,
                extra: list[str] | None = None, timeout: float = 240):
    node_modules()
    log = log_dir / "kafkajs.client.log"
    argv = [shutil.which("node") or "node", str(NODE_DIR / "matrix.js"), f"bootstrap={bootstrap}",
            f"topic={topic}", f"group={group}"] + (extra or [])
    # KAFKAJS_NO_PARTITIONER_WARNING: the records name their partition, the default
    # partitioner is never asked, and its v2 warning would be noise in the log.
    env = {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    status, out = run_bounded("kafkajs", argv, log, timeout=timeout, env=env, cwd=NODE_DIR)
    return status, result_line(out), log


def dump_batches(node_dir: Path, topic: str, partition: int, log: Path) -> list[dict]:
    """Every record batch of one partition replica as the broker stored it, read with Kafka's
    own DumpLogSegments (kafka-dump-log.sh, in kafka-tools since 4.0) from the node's log
    directory: the batch header's
    attributes (compression codec, transactional, control) are what the broker wrote to disk.
    Returns [{baseOffset, lastOffset, count, compresscodec, isTransactional, isControl}]."""
    d = node_dir / "data" / f"{topic}-{partition}"
    segments = sorted(str(p) for p in d.glob("*.log"))
    assert segments, f"no log segment under {d}"
    cp = f"{JAVA / 'tools' / 'target' / 'lib'}/*"
    argv = [JAVA_BIN, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
            "org.apache.kafka.tools.DumpLogSegments", "--files", ",".join(segments)]
    status, out = run_bounded("kafka-dump-log", argv, log, timeout=120)
    assert status == 0, f"DumpLogSegments failed (status {status}): {tail(log, 20)}"
    batches = []
    for line in out.splitlines():
        if not line.startswith("baseOffset:"):
            continue
        fields = {}
        # "baseOffset: 0 lastOffset: 9 count: 10 ... compresscodec: snappy crc: ..."
        parts = line.split()
        for i in range(0, len(parts) - 1):
            if parts[i].endswith(":"):
                fields[parts[i][:-1]] = parts[i + 1]
        batches.append(fields)
    return batches


GO_MODULES = {"sarama": "github.com/IBM/sarama", "franz-go": "github.com/twmb/franz-go",
              "kafka-go": "github.com/segmentio/kafka-go"}
JAVA_VERSION_PROPERTY = {"clients-39": "kafka39.version", "clients-4": "kafka4.version"}


def pinned_version(client: str) -> str:
    """The version of `client` this suite pins, read from the pin itself (go.mod,
    package-lock.json, interop/java/pom.xml, requirements.txt): each matrix row asserts that
    the library its program reports is this one, so the matrix cannot quietly test another
    version than it claims."""
    if client in GO_MODULES:
        m = re.search(rf"^\s*{re.escape(GO_MODULES[client])} (v\S+)$",
                      (GO_DIR / "go.mod").read_text(), re.MULTILINE)
    elif client == "kafkajs":
        lock = json.loads((NODE_DIR / "package-lock.json").read_text())
        return lock["packages"]["node_modules/kafkajs"]["version"]
    elif client in JAVA_VERSION_PROPERTY:
        prop = re.escape(JAVA_VERSION_PROPERTY[client])
        m = re.search(rf"<{prop}>([^<]+)</{prop}>", (JAVA / "pom.xml").read_text())
    elif client == "confluent-kafka":
        # The pin may name extras: confluent-kafka[avro,protobuf,schemaregistry]==2.16.1.
        m = re.search(r"^confluent-kafka(?:\[[^\]]*\])?==(\S+)$",
                      (INTEROP / "requirements.txt").read_text(), re.MULTILINE)
    else:
        raise ValueError(f"no pin known for {client}")
    assert m, f"no pinned version of {client} found"
    return m.group(1)


def assert_pinned_version(client: str, reported) -> None:
    want = pinned_version(client)
    assert reported == want, f"{client}: the program reports version {reported!r}, the suite " \
        f"pins {want!r}"


def jdump(obj) -> str:
    return json.dumps(obj, sort_keys=True)

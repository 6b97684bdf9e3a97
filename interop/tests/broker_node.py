"""One model of a Kafka 4.x KRaft node, for the single broker (conftest.py) and the 3-node
cluster (cluster.py) alike: its ports and files, its one properties template, its start and
stop, and what it logged (decisions, SASL counters, log tails).

Every node is a combined broker+controller with three listeners on 127.0.0.1: the clients'
listener (SASL_PLAINTEXT for the single broker, SASL_SSL for the cluster; OAUTHBEARER checked by
`GoogleTokenValidator`, optionally PLAIN checked by `GooglePlainValidator`), INTERNAL
(PLAINTEXT, inter-broker traffic and the harness's administration as `User:ANONYMOUS`) and
CONTROLLER (PLAINTEXT, the KRaft quorum). What differs between the single broker and the
cluster is a parameter: the listener's name and protocol, TLS, PLAIN, re-authentication and the
topic sizing block (`SINGLE_NODE_SIZING`, `THREE_NODE_SIZING`).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import JAVA, Proc, b64url, free_port, read_jsonl, tail, wait_until

NODE_PROPERTIES = """\
# {title} (written by tests/broker_node.py).
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
listeners={listener}://127.0.0.1:{eport},INTERNAL://127.0.0.1:{iport},CONTROLLER://127.0.0.1:{cport}
advertised.listeners={listener}://{host}:{eport},INTERNAL://127.0.0.1:{iport}
listener.security.protocol.map={listener}:{protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
{tls}
# SASL on the client listener, validated like Managed Kafka: {mechanisms}.
sasl.enabled.mechanisms={mechanisms}
listener.name.{lname}.sasl.enabled.mechanisms={mechanisms}
listener.name.{lname}.oauthbearer.sasl.server.callback.handler.class=interop.broker.GoogleTokenValidator
listener.name.{lname}.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="interop-broker-unused" tokeninfoUrl="{tokeninfo}" decisionLog="{decisions}" expToleranceSecs="{exp_tolerance}";
{plain}{reauth}

# Authorization on, so a client authenticated as anyone but the expected User:<principal> fails.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users={super_users}

metric.reporters=interop.broker.ReauthMetricsReporter
interop.metrics.file={metrics}

log.dirs={logdir}
group.initial.rebalance.delay.ms=0
{sizing}"""

TLS_PROPERTIES = """
# TLS on the client listener: this node's certificate (SAN {host}), no client certificates.
listener.name.{lname}.ssl.keystore.type=PEM
listener.name.{lname}.ssl.keystore.location={keystore}
listener.name.{lname}.ssl.client.auth=none
"""

PLAIN_PROPERTIES = """\
listener.name.{lname}.plain.sasl.server.callback.handler.class=interop.broker.GooglePlainValidator
listener.name.{lname}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required tokeninfoUrl="{tokeninfo}" decisionLog="{plain_decisions}";
"""

SINGLE_NODE_SIZING = """\
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=true
"""

THREE_NODE_SIZING = """\
# Sized for the tests: 3 partitions, replication factor 3, acks=all survives one node down.
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=3
auto.create.topics.enable=false
# Few threads: 2 cores run three of these next to the clients.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
num.recovery.threads.per.data.dir=1
# A stopped node is dropped from the ISR quickly and a restarted one rejoins quickly.
replica.lag.time.max.ms=10000
broker.session.timeout.ms=9000
broker.heartbeat.interval.ms=1000
controlled.shutdown.enable=true
# ... and gets its preferred leaderships back within seconds, so clients reconnect to it.
leader.imbalance.check.interval.seconds=5
"""


def broker_jvm(java_bin: str, heap: list[str]) -> list[str]:
    """The command line of a broker JVM (up to the main class): the broker module's classpath,
    timestamps in the log, the SASL authenticator at DEBUG (kept for diagnosis; log tails
    leave it out)."""
    return [java_bin] + heap + [
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.security.authenticator=debug",
        "-cp", f"{JAVA / 'broker' / 'target' / 'lib'}/*"]


@dataclass
class BrokerNode:
    """One KRaft broker+controller: ports, files under `dir`, and its process once started."""
    id: int
    host: str  # the client listener's advertised host
    dir: Path
    label: str = ""  # how messages name it (default "cluster node <id>")
    listener: str = "EXTERNAL"  # the client listener's name (the `listener` tag of its metrics)
    protocol: str = "SASL_SSL"
    external_port: int = field(default_factory=free_port)
    internal_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: Proc | None = None
    starts: int = 0

    def __post_init__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.label = self.label or f"cluster node {self.id}"

    # -- files

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log(self) -> Path:
        return self.dir / "broker.log"

    @property
    def decisions(self) -> Path:
        """GoogleTokenValidator's decision log (OAUTHBEARER)."""
        return self.dir / "validator-decisions.jsonl"

    @property
    def plain_decisions(self) -> Path:
        """GooglePlainValidator's decision log (PLAIN, where enabled)."""
        return self.dir / "plain-decisions.jsonl"

    @property
    def metrics(self) -> Path:
        """The SASL counters ReauthMetricsReporter writes, per listener."""
        return self.dir / "auth-metrics.json"

    # -- addresses

    @property
    def external(self) -> str:
        return f"{self.host}:{self.external_port}"

    @property
    def voter(self) -> str:
        return f"{self.id}@127.0.0.1:{self.controller_port}"

    # -- configuration and lifecycle

    def write_config(self, *, title: str, voters: str, tokeninfo: str, principals: list[str],
                     reauth_ms: int | None, sizing: str, keystore: Path | None = None,
                     plain: bool = False) -> None:
        """Writes server.properties: the one template, with TLS (a PEM `keystore`), PLAIN and
        `connections.max.reauth.ms` only when asked for."""
        lname = self.listener.lower()
        self.config.write_text(NODE_PROPERTIES.format(
            title=title, node=self.id, voters=voters, listener=self.listener, lname=lname,
            protocol=self.protocol, host=self.host, eport=self.external_port,
            iport=self.internal_port, cport=self.controller_port,
            tls=(TLS_PROPERTIES.format(host=self.host, lname=lname, keystore=keystore)
                 if keystore is not None else ""),
            mechanisms="OAUTHBEARER,PLAIN" if plain else "OAUTHBEARER",
            tokeninfo=tokeninfo, decisions=self.decisions,
            exp_tolerance=os.environ.get("INTEROP_EXP_TOLERANCE_SECS", "1"),
            plain=(PLAIN_PROPERTIES.format(lname=lname, tokeninfo=tokeninfo,
                                           plain_decisions=self.plain_decisions)
                   if plain else ""),
            reauth="" if reauth_ms is None else f"connections.max.reauth.ms={reauth_ms}",
            super_users=";".join(["User:ANONYMOUS"] + [f"User:{p}" for p in principals]),
            metrics=self.metrics, logdir=self.dir / "data", sizing=sizing))

    def launch(self, jvm: list[str]) -> int:
        """Starts the node's JVM; returns the log offset its 'started' line will be after."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = Proc(f"kafka-{self.label.replace(' ', '-')}",
                         jvm + ["kafka.Kafka", str(self.config)], self.log)
        self.starts += 1
        return offset

    def wait_started(self, offset: int, timeout: float) -> None:
        def started():
            with open(self.log, "rb") as f:
                f.seek(offset)
                return b"Kafka Server started" in f.read()

        wait_until(f"{self.label} to start", started, timeout=timeout, proc=self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    # -- what the node saw

    def decision_log(self) -> list[dict]:
        """The OAUTHBEARER validator's decisions, as written."""
        return read_jsonl(self.decisions)

    def read_metrics(self) -> dict:
        """The node's own SASL counters on the client listener ({} before the first write)."""
        try:
            return json.loads(self.metrics.read_text()).get(self.listener, {})
        except (OSError, ValueError):
            return {}

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, without the per-connection DEBUG chatter of the SASL
        authenticator (kept in the file for diagnosis)."""
        data = self.log.read_bytes()[-2_000_000:].decode("utf-8", "replace").splitlines() \
            if self.log.exists() else []
        kept = [l for l in data if " DEBUG " not in l]
        return "\n".join(kept[-lines:])


def start_nodes(nodes: list[BrokerNode], jvm: list[str], timeout: float) -> None:
    """Formats the nodes' storage under one new cluster id (in parallel), starts them and waits
    until each has logged that it started; an AssertionError says which did not (the caller
    stops what runs)."""
    cluster_id = b64url(uuid.uuid4().bytes)
    procs = []
    for n in nodes:
        with open(n.dir / "format.log", "wb") as out:  # the child keeps its own copy
            procs.append((n, subprocess.Popen(
                jvm + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(n.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)))
    for n, p in procs:
        try:
            status = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            status = -9
        if status != 0:
            pytest.fail(f"{n.label}: formatting storage failed (status {status}); "
                        f"log:\n{tail(n.dir / 'format.log')}")
    offsets = {n.id: n.launch(jvm) for n in nodes}
    for n in nodes:
        n.wait_started(offsets[n.id], timeout)

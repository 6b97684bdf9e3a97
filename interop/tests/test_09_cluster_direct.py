"""(9) The 3-node TLS cluster on its own, without the proxy: the direct path.

kafka-clients 4.x connects over SASL_SSL to `broker-N.kafka.invalid:PORT` (resolved by the JDK
from `-Djdk.net.hosts.file`, verified against the run's test CA with hostname checks on), with
OAUTHBEARER through our sidecar's token endpoint, and round-trips 1,000 records over three
partitions with replication factor 3. That proves the cluster, its certificates, its names and
the validator before any proxy scenario relies on them. A PLAIN client (username = the
principal's email, password = a Google access token) is accepted the way Managed Kafka accepts
it, and refused when the username is not the token's email.
"""

from __future__ import annotations

import os
import socket

import pytest

from cluster import NODE_IDS
from conftest import PRINCIPAL, java_client, note
from harness import result_line

COUNT = 1000

pytestmark = pytest.mark.cluster


def direct_client(cluster, sidecar, workdir, name: str, args: list[str], timeout: float = 240,
                  env: dict | None = None):
    """Runs ClusterRoundTrip straight at the brokers (SASL_SSL); returns (status, result, log)."""
    log = workdir / f"{name}.client.log"
    jvm = [f"-Djdk.net.hosts.file={cluster.hosts_file}"]
    if sidecar is not None:
        jvm.append(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={sidecar.url}")
    status, out = java_client(
        "clients-4", "interop.clients.ClusterRoundTrip",
        [f"bootstrap={cluster.bootstrap}", f"truststore={cluster.ca_file}", "timeoutSecs=90"]
        + args, log, timeout=timeout, extra_jvm=jvm, env=env)
    return status, result_line(out), log


def test_cluster_names_resolve_nowhere(kafka_cluster):
    """The advertised names cannot be resolved by anyone who was not told: a leaked broker
    address fails the client that receives it."""
    for n in NODE_IDS:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo(kafka_cluster.nodes[n].host, kafka_cluster.nodes[n].external_port)


def test_cluster_direct_java_oauthbearer(kafka_cluster, start_sidecar, workdir):
    cluster = kafka_cluster
    sidecar = start_sidecar()
    topic = "interop-cluster-direct"
    cluster.create_topic(topic, partitions=3, replication=3)
    d0 = len(cluster.decision_log())
    m0 = cluster.auth_metrics()
    status, res, log = direct_client(
        cluster, sidecar, workdir, topic,
        ["security=sasl_ssl", f"tokenUrl={sidecar.url}", f"topic={topic}", f"count={COUNT}",
         "partitions=3", "mode=roundtrip"])
    label = f"kafka-clients {res.get('client_version') if res else '4.x'} (direct SASL_SSL)"
    assert res is not None and status == 0 and res["ok"], cluster.report(
        label, (res or {}).get("step", "start"),
        f"exit status {status}; errors: {(res or {}).get('errors')}", client_log=log)
    assert res["produced"] == res["acked"] == res["consumed"] == COUNT, res
    assert res["mismatched"] == 0 and res["redelivered"] == 0, res
    # Partition p holds records p, p+3, p+6, ...: 334, 333, 333 of them, all committed.
    want_end = {str(p): len(range(p, COUNT, 3)) for p in range(3)}
    assert res["end_offsets"] == want_end, res
    assert res["committed_read_back"] == want_end, res
    # The client saw the advertised names, and only them.
    advertised = {str(i): a for i, a in cluster.advertised().items()}
    assert res["described_nodes"] == advertised, res
    assert res["metadata_nodes"] == advertised, res

    decisions = cluster.decision_log()[d0:]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    assert not refused, cluster.report(label, "broker authentication", f"refused: {refused[:3]}")
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}
    assert {d["mechanism"] for d in accepted} == {"OAUTHBEARER"}
    # Leaders are spread over the nodes, so producer and consumer authenticated at every node.
    assert {d["node"] for d in accepted} == set(NODE_IDS), decisions
    m1 = cluster.auth_metrics()
    gained = m1.get("successful-authentication-total", 0) - m0.get("successful-authentication-total", 0)
    failed = m1.get("failed-authentication-total", 0) - m0.get("failed-authentication-total", 0)
    assert gained >= len(NODE_IDS) and failed == 0, (m0, m1)
    note(f"cluster direct (kafka-clients {res['client_version']}, SASL_SSL OAUTHBEARER, "
         f"jdk.net.hosts.file): {COUNT} records over 3 partitions RF 3 round-tripped and checked; "
         f"produce {res['produce_ms']} ms, consume {res['consume_ms']} ms; {len(accepted)} "
         f"authentications accepted on nodes {sorted({d['node'] for d in accepted})}")


def test_cluster_direct_java_plain(kafka_cluster, fake_google, workdir):
    """PLAIN as Managed Kafka takes it: username = email, password = a Google access token."""
    cluster = kafka_cluster
    access_token = fake_google.metadata_token()["access_token"]
    env = {**os.environ, "INTEROP_PLAIN_PASSWORD": access_token}

    d0 = len(cluster.decision_log())
    status, res, log = direct_client(
        cluster, None, workdir, "cluster-direct-plain",
        ["security=sasl_ssl_plain", f"username={PRINCIPAL}", "mode=describe"], env=env,
        timeout=120)
    assert res is not None and status == 0 and res["ok"], cluster.report(
        "kafka-clients (direct SASL_SSL PLAIN)", (res or {}).get("step", "start"),
        f"exit status {status}; errors: {(res or {}).get('errors')}", client_log=log)
    assert res["described_nodes"] == {str(i): a for i, a in cluster.advertised().items()}, res
    decisions = cluster.decision_log()[d0:]
    assert decisions and all(d["mechanism"] == "PLAIN" and d["decision"] == "accept"
                             and d["principal"] == f"User:{PRINCIPAL}" for d in decisions), decisions
    assert access_token not in log.read_text(errors="replace")

    # The same token under another username: refused, for that reason, and the client is told.
    d0 = len(cluster.decision_log())
    other = "someone-else@interop-project.iam.gserviceaccount.com"
    status, res, log = direct_client(
        cluster, None, workdir, "cluster-direct-plain-wrong-user",
        ["security=sasl_ssl_plain", f"username={other}", "mode=describe", "timeoutSecs=20"],
        env=env, timeout=90)
    assert res is not None and status != 0 and not res["ok"], res
    assert res["step"] == "describe-cluster", res
    assert any("SaslAuthenticationException" in e for e in res["errors"]), res["errors"]
    decisions = cluster.decision_log()[d0:]
    assert decisions and {(d["mechanism"], d["decision"], d["reason"]) for d in decisions} == {
        ("PLAIN", "refuse", "username_mismatch")}, decisions
    assert decisions[0]["detail"] == f"username={other} but tokeninfo email={PRINCIPAL}"
    note(f"cluster direct PLAIN: accepted as User:{PRINCIPAL}; refused "
         f"{len(decisions)}x for username_mismatch under another username")

"""(12) The proxy started from a Managed Kafka cluster name, as Cloud SQL Auth Proxy users
start theirs: fake-google's Managed Kafka API (`clusters.get`) resolves
`projects/P/locations/L/clusters/C` to the 3-node cluster's bootstrap address, the proxy
becomes ready from that alone, and librdkafka, given only the proxy's address, gets exactly the
proxy's broker addresses and round-trips records. The API call carried the proxy's token and
the quota project.
"""

from __future__ import annotations

import time

import pytest

from cluster_clients import RdLog, rd_brokers, rd_consume, rd_produce
from conftest import note
from harness import http, http_json

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

NAME = "projects/interop-project/locations/us-central1/clusters/interop"
COUNT = 200
PARTITIONS = 3


def test_proxy_from_a_cluster_name(kafka_cluster, fake_google, start_proxy, workdir):
    cluster = kafka_cluster
    bootstrap = next(iter(cluster.nodes.values())).external
    status, body = http_json("POST", f"{fake_google.base_url}/_fake/managed-kafka/cluster",
                             {"name": NAME, "bootstrap_address": bootstrap})
    assert status == 200, body
    topic = "interop-proxy-cluster-name"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    t0 = time.monotonic()
    proxy = start_proxy(cluster, name="proxy-by-name", cluster_name=NAME,
                        extra_args=["--quota-project", "interop-billing"])
    status, _, started = http("GET", f"http://127.0.0.1:{proxy.http_port}/startup", timeout=3)
    assert status == 200, started
    log = proxy.log_text()
    assert "looked up the cluster's bootstrap address" in log and bootstrap in log, log[-2000:]

    status, requests = http_json("GET", f"{fake_google.base_url}/_fake/requests")
    assert status == 200
    gets = [r for r in requests if r["path"] == f"/v1/{NAME}"]
    assert len(gets) == 1, gets
    headers = {k.lower(): v for k, v in gets[0]["headers"]}
    assert headers.get("x-goog-user-project") == "interop-billing", headers
    token = headers["authorization"].removeprefix("Bearer ")
    assert fake_google.lookup(token) is not None, "the API call's token is not one the fake issued"

    rdlog = RdLog()
    conf = {"bootstrap.servers": proxy.bootstrap, **rdlog.conf()}
    try:
        brokers = rd_brokers(conf)
        p = rd_produce(conf, topic, topic, PARTITIONS, count=COUNT)
        c = rd_consume(conf, topic, topic, PARTITIONS, f"interop-{topic}", lambda: COUNT,
                       timeout=90)
    finally:
        rdlog.write(workdir / f"{topic}.client.log")
    assert brokers == proxy.broker_addresses(), cluster.report(
        "librdkafka via proxy by name", "metadata",
        f"brokers {brokers}, want exactly {proxy.broker_addresses()}", proxy=proxy)
    assert not p["failed"] and len(p["acked"]) == p["sent"] == COUNT, p
    assert c["consumed"] == COUNT and not c["bad"], c
    assert not rdlog.leaks(), rdlog.leaks()
    note(f"proxy from cluster name {NAME} -> {bootstrap} (fake Managed Kafka API): "
         f"{COUNT} records round-tripped; {time.monotonic() - t0:.1f} s")

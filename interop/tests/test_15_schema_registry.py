"""(15) Schema'd records through the proxy and the schema registry endpoint, with no
credentials in any client: the proxy runs with `--schema-registry NAME` against fake-google's
registry (a bearer token the fake issued required, Google-shaped errors), confluent-kafka-python
sets only `bootstrap.servers` and the registry `url`, registers an Avro schema through
`AvroSerializer`, produces to the 3-node cluster, and a consumer with a fresh registry client
decodes every record with `AvroDeserializer`. An incompatible schema is refused with HTTP 409 and
Confluent's error code 409, a missing subject with 40401: the codes confluent-kafka-python reads
from Confluent's error shape, which Google's registry does not send.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import note
from harness import free_port, http_json, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

REGISTRY = "projects/interop-project/locations/us-central1/schemaRegistries/interop_registry"
COUNT = 120
PARTITIONS = 3
ORDER = ('{"type":"record","name":"Order","namespace":"interop","fields":['
         '{"name":"id","type":"long"},{"name":"note","type":"string"}]}')
# A new field without a default: data written with ORDER cannot be read with it (BACKWARD).
ORDER_INCOMPATIBLE = ('{"type":"record","name":"Order","namespace":"interop","fields":['
                      '{"name":"id","type":"long"},{"name":"note","type":"string"},'
                      '{"name":"qty","type":"int"}]}')


def test_python_avro_round_trip_through_the_registry_endpoint(kafka_cluster, fake_google,
                                                              start_proxy, workdir):
    cluster = kafka_cluster
    status, body = http_json("POST", f"{fake_google.base_url}/_fake/schema-registry/registry",
                             {"name": REGISTRY})
    assert status == 200, body
    topic = "interop-schema-registry"
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    registry_port = free_port()
    t0 = time.monotonic()
    proxy = start_proxy(cluster, name="proxy-with-registry", extra_args=[
        "--schema-registry", REGISTRY,
        "--schema-registry-listen", f"127.0.0.1:{registry_port}",
        "--schema-registry-endpoint", fake_google.base_url,
    ])
    url = f"http://127.0.0.1:{registry_port}"
    wait_until("the registry endpoint listens",
               lambda: "schema registry endpoint is" in proxy.log_text(), timeout=30,
               proc=proxy.proc)

    serializer = AvroSerializer(SchemaRegistryClient({"url": url}), ORDER)
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": proxy.bootstrap})
    failed: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(str(err))

    for i in range(COUNT):
        producer.produce(topic, key=f"k-{i}", value=serializer({"id": i, "note": f"n-{i}"}, ctx),
                         partition=i % PARTITIONS, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed

    # A fresh registry client: every schema the consumer needs comes through the endpoint.
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": url}))
    consumer = Consumer({"bootstrap.servers": proxy.bootstrap, "group.id": f"interop-{topic}",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + 90
    try:
        while len(seen) < COUNT and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            record = deserializer(msg.value(), ctx)
            seen[record["id"]] = record
    finally:
        consumer.close()
    assert len(seen) == COUNT, f"decoded {len(seen)} of {COUNT} records"
    assert all(seen[i] == {"id": i, "note": f"n-{i}"} for i in range(COUNT))

    client = SchemaRegistryClient({"url": url})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(f"{topic}-value", Schema(ORDER_INCOMPATIBLE, "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409), refused.value
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version("no-such-subject")
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40401), missing.value
    assert missing.value.error_message == "Subject 'no-such-subject' not found."

    # Every registry call the fake received carried a token it issued, under Google's path.
    status, requests = http_json("GET", f"{fake_google.base_url}/_fake/requests")
    assert status == 200
    calls = [r for r in requests if r["path"].startswith(f"/v1/{REGISTRY}")]
    assert calls, "no registry call reached fake-google"
    for call in calls:
        headers = {k.lower(): v for k, v in call["headers"]}
        token = headers["authorization"].removeprefix("Bearer ")
        assert fake_google.lookup(token) is not None, f"{call['path']}: not a token the fake issued"
    note(f"schema registry endpoint: {COUNT} Avro records produced and decoded by "
         f"confluent-kafka-python with only url set; 409 and 40401 reached the client; "
         f"{len(calls)} registry calls; {time.monotonic() - t0:.1f} s")

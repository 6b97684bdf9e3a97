"""(15) Schema'd records through the proxy and the schema registry endpoint, with no
credentials in any client: the proxy runs with `--schema-registry NAME` against fake-google's
registry (a bearer token the fake issued required, Google-shaped errors). Three registry
clients, each given only the registry URL and the proxy's address, register an Avro schema,
produce to the 3-node cluster, and decode every record with a fresh registry client:
confluent-kafka-python (`AvroSerializer`/`AvroDeserializer`, and `ProtobufSerializer`/
`ProtobufDeserializer`), @kafkajs/confluent-schema-registry
with kafkajs, and franz-go's `sr` client with hamba/avro. An incompatible schema is refused with
HTTP 409 (and Confluent's error code 409 where the client reads codes), a missing subject with
404/40401: Confluent's error shape, which Google's registry does not send.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import note
from harness import free_port, http_json, result_line, run_bounded, wait_until
from matrix_clients import NODE_DIR, node_modules, run_go

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


def start_with_registry(cluster, fake_google, start_proxy, topic: str, name: str):
    """The registry known to fake-google, a topic, and a proxy serving the registry endpoint;
    returns (proxy, registry URL)."""
    status, body = http_json("POST", f"{fake_google.base_url}/_fake/schema-registry/registry",
                             {"name": REGISTRY})
    assert status == 200, body
    cluster.create_topic(topic, partitions=PARTITIONS, replication=3)
    registry_port = free_port()
    proxy = start_proxy(cluster, name=name, extra_args=[
        "--schema-registry", REGISTRY,
        "--schema-registry-listen", f"127.0.0.1:{registry_port}",
        "--schema-registry-endpoint", fake_google.base_url,
    ])
    wait_until("the registry endpoint listens",
               lambda: "schema registry endpoint is" in proxy.log_text(), timeout=30,
               proc=proxy.proc)
    return proxy, f"http://127.0.0.1:{registry_port}"


def registry_calls_carry_issued_tokens(fake_google) -> int:
    """Asserts every registry call fake-google received carried a token it issued, under
    Google's path; returns how many there were."""
    status, requests = http_json("GET", f"{fake_google.base_url}/_fake/requests")
    assert status == 200
    calls = [r for r in requests if r["path"].startswith(f"/v1/{REGISTRY}")]
    assert calls, "no registry call reached fake-google"
    for call in calls:
        headers = {k.lower(): v for k, v in call["headers"]}
        token = headers["authorization"].removeprefix("Bearer ")
        assert fake_google.lookup(token) is not None, f"{call['path']}: not a token the fake issued"
    return len(calls)


def test_schema_registry_python_avro_round_trip(kafka_cluster, fake_google, start_proxy, workdir):
    topic = "interop-schema-registry"
    t0 = time.monotonic()
    proxy, url = start_with_registry(kafka_cluster, fake_google, start_proxy, topic,
                                     "proxy-with-registry")

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

    calls = registry_calls_carry_issued_tokens(fake_google)
    note(f"schema registry endpoint: {COUNT} Avro records produced and decoded by "
         f"confluent-kafka-python with only url set; 409 and 40401 reached the client; "
         f"{calls} registry calls so far; {time.monotonic() - t0:.1f} s")


def order_message_class():
    """interop.Order {int64 id = 1; string note = 2;} built from a descriptor (no protoc)."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="interop_order.proto", package="interop",
                                               syntax="proto3")
    message = proto.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    message.field.add(name="note", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("interop.Order"))


def test_schema_registry_python_protobuf_round_trip(kafka_cluster, fake_google, start_proxy,
                                                    workdir):
    topic = "interop-schema-registry-protobuf"
    t0 = time.monotonic()
    proxy, url = start_with_registry(kafka_cluster, fake_google, start_proxy, topic,
                                     "proxy-with-registry-protobuf")
    order = order_message_class()
    conf = {"use.deprecated.format": False}
    serializer = ProtobufSerializer(order, SchemaRegistryClient({"url": url}), conf)
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": proxy.bootstrap})
    for i in range(COUNT):
        producer.produce(topic, key=f"k-{i}", value=serializer(order(id=i, note=f"n-{i}"), ctx),
                         partition=i % PARTITIONS)
    assert producer.flush(60) == 0
    deserializer = ProtobufDeserializer(order, conf, SchemaRegistryClient({"url": url}))
    consumer = Consumer({"bootstrap.servers": proxy.bootstrap, "group.id": f"interop-{topic}",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 90
    try:
        while len(seen) < COUNT and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            record = deserializer(msg.value(), ctx)
            seen[record.id] = record.note
    finally:
        consumer.close()
    assert seen == {i: f"n-{i}" for i in range(COUNT)}, f"decoded {len(seen)} of {COUNT}"
    versions = SchemaRegistryClient({"url": url}).get_versions(f"{topic}-value")
    assert versions == [1], versions
    calls = registry_calls_carry_issued_tokens(fake_google)
    note(f"schema registry endpoint: {COUNT} Protobuf records produced and decoded by "
         f"confluent-kafka-python with only url set; {calls} registry calls so far; "
         f"{time.monotonic() - t0:.1f} s")


def test_schema_registry_kafkajs_avro_round_trip(kafka_cluster, fake_google, start_proxy, workdir):
    topic = "interop-schema-registry-node"
    t0 = time.monotonic()
    proxy, url = start_with_registry(kafka_cluster, fake_google, start_proxy, topic,
                                     "proxy-with-registry-node")
    node_modules()
    argv = ["node", str(NODE_DIR / "registry.js"), f"bootstrap={proxy.bootstrap}", f"url={url}",
            f"topic={topic}", f"group=interop-{topic}", f"count={COUNT}"]
    status, out = run_bounded("registry.js", argv, workdir / f"{topic}.client.log", timeout=240,
                              cwd=NODE_DIR)
    result = result_line(out)
    assert status == 0 and result and result["ok"], (status, result)
    assert (result["produced"], result["decoded"], result["bad"]) == (COUNT, COUNT, []), result
    assert result["incompatible"]["status"] == 409, result
    # The client prefixes the registry's `message` with its client id (" - " without one).
    assert "Schema being registered is incompatible with an earlier schema" in \
        result["incompatible"]["message"], result
    assert result["missing"]["status"] == 404, result
    assert result["missing"]["message"].endswith("Subject 'no-such-subject' not found."), result
    calls = registry_calls_carry_issued_tokens(fake_google)
    note(f"schema registry endpoint: {COUNT} Avro records through "
         f"@kafkajs/confluent-schema-registry {result['client_version']} + kafkajs with only "
         f"host set; 409 and 404 reached the client; {calls} registry calls so far; "
         f"{time.monotonic() - t0:.1f} s")


def test_schema_registry_go_avro_round_trip(kafka_cluster, fake_google, start_proxy, workdir):
    topic = "interop-schema-registry-go"
    t0 = time.monotonic()
    proxy, url = start_with_registry(kafka_cluster, fake_google, start_proxy, topic,
                                     "proxy-with-registry-go")
    status, result, log = run_go(workdir, workdir, "franz-sr", proxy.bootstrap, topic,
                                 f"interop-{topic}", extra=["-registry", url, "-count", str(COUNT)])
    assert status == 0 and result and result["ok"], (status, result, log)
    assert (result["acked"], result["consumed"], result["bad"]) == (COUNT, COUNT, []), result
    assert result["registry"]["incompatible"]["status"] == 409, result
    assert result["registry"]["incompatible"]["error_code"] == 409, result
    assert result["registry"]["missing"] == {
        "status": 404, "error_code": 40401,
        "message": "Subject 'no-such-subject' not found."}, result
    calls = registry_calls_carry_issued_tokens(fake_google)
    note(f"schema registry endpoint: {COUNT} Avro records through franz-go sr "
         f"{result['client_version']} + hamba/avro with only the URL set; 409/409 and "
         f"404/40401 reached the client; {calls} registry calls so far; "
         f"{time.monotonic() - t0:.1f} s")

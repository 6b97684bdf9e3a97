"""(4) librdkafka through confluent-kafka, configured as Google documents for non-Java clients.

sasl.oauthbearer.method=oidc and sasl.oauthbearer.token.endpoint.url=localhost:<port> (no
scheme): produce 1,000 records, consume every one back, checked one by one.
"""

from __future__ import annotations

import confluent_kafka

from conftest import PRINCIPAL, note, report
from rdkafka import consume, create_topic, oidc_config, produce

COUNT = 1000


def test_librdkafka_round_trip(broker, start_sidecar, workdir):
    sidecar = start_sidecar()
    pyver = confluent_kafka.version()
    pyver = pyver[0] if isinstance(pyver, tuple) else pyver
    label = f"librdkafka {confluent_kafka.libversion()[0]} (confluent-kafka {pyver})"
    conf = oidc_config(broker.bootstrap, f"localhost:{sidecar.port}")
    topic = "interop-librdkafka"
    before = len(broker.decision_log())

    try:
        create_topic(conf, topic)
    except Exception as e:  # noqa: BLE001 - reported with context
        raise AssertionError(report(label, "create topic", repr(e), broker=broker, sidecar=sidecar))

    p = produce(conf, topic, COUNT, topic)
    offsets = [p["acked"].get(i) for i in range(COUNT)]
    problems = []
    if p["failed"] or p["unflushed"] or len(p["acked"]) != COUNT:
        problems.append(f"{len(p['acked'])} of {COUNT} acked; failed={p['failed']}; "
                        f"unflushed={p['unflushed']}; errors={p['errors']}")
    elif offsets != list(range(offsets[0], offsets[0] + COUNT)):
        problems.append("acked offsets are not consecutive")
    assert not problems, report(label, "produce", "; ".join(problems), broker=broker, sidecar=sidecar)

    c = consume(conf, topic, lambda: COUNT, topic, group="interop-librdkafka", timeout=90)
    assert c["consumed"] == COUNT and not c["bad"], report(
        label, "consume", f"consumed {c['consumed']} of {COUNT}; problems: {c['bad']}; "
        f"errors: {c['errors']}", broker=broker, sidecar=sidecar)

    decisions = broker.decision_log()[before:]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    assert accepted and not refused, report(
        label, "broker authentication", f"{len(accepted)} accepted, refused: {refused}",
        broker=broker, sidecar=sidecar)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}
    note(f"{label}: {COUNT} records produced and consumed back intact via "
         f"sasl.oauthbearer.token.endpoint.url=localhost:<port>; {len(accepted)} SASL "
         f"authentications accepted")

"""(5) Apache Beam KafkaIO.read() on the DirectRunner reads the records the Java 3.9 client wrote.

The consumer configuration is the blog post's: SASL OAUTHBEARER, the stock
OAuthBearerLoginCallbackHandler, clientId="unused", our sidecar's URL.
"""

from __future__ import annotations

from conftest import PRINCIPAL, java_client, java_round_trip, note, report
from harness import result_line


def test_beam_kafkaio_read(broker, start_sidecar, workdir, produced_topics):
    sidecar = start_sidecar()
    src = produced_topics.get("clients-39")
    if src is None:
        # Run alone (-k beam): write the records the same way scenario (2) does.
        java_round_trip("clients-39", broker, sidecar, workdir, "interop-clients-39", 1000,
                        allowed_urls=False)
        src = {"topic": "interop-clients-39", "count": 1000, "prefix": "interop-clients-39"}
    log = workdir / "beam.client.log"
    before = len(broker.decision_log())
    status, out = java_client(
        "beam", "interop.beam.ReadWithKafkaIO",
        [broker.bootstrap, sidecar.url, src["topic"], str(src["count"]), src["prefix"]],
        log, timeout=300, extra_jvm=["-Xmx768m"])
    res = result_line(out)
    label = "Beam KafkaIO (DirectRunner)"
    assert res is not None, report(label, "run pipeline", f"no RESULT line (exit status {status})",
                                   broker=broker, client_log=log, sidecar=sidecar)
    label = f"Beam KafkaIO (DirectRunner, kafka-clients {res.get('client_version')})"
    assert status == 0 and res["ok"], report(label, "read records", f"{res}", broker=broker,
                                             client_log=log, sidecar=sidecar)
    assert res["read"] == src["count"] and res["distinct_ok"] == src["count"]
    assert res["missing"] == 0 and res["duplicated"] == 0 and res["mismatched"] == 0
    decisions = broker.decision_log()[before:]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    assert accepted and all(d["decision"] == "accept" for d in decisions), report(
        label, "broker authentication", f"decisions: {decisions[-5:]}", broker=broker,
        sidecar=sidecar)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}
    note(f"{label}: read all {src['count']} records of {src['topic']} (each exactly once, "
         f"checked); {len(accepted)} SASL authentications accepted")

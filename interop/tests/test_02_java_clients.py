"""(2) The real Apache Kafka Java client, 3.9.x and the newest 4.x, through our sidecar.

Stock OAuthBearerLoginCallbackHandler, sasl.oauthbearer.token.endpoint.url=http://localhost:<port>
(the sidecar), clientId="unused": produce 1,000 records and consume every one back, checked one
by one (key, value, offset). kafka-clients 4.x denies every token URL that is not listed in
org.apache.kafka.sasl.oauthbearer.allowed.urls, so the 4.x run sets it (as users must).
"""

from __future__ import annotations

import pytest

from conftest import PRINCIPAL, java_round_trip, note, report

COUNT = 1000

CLIENTS = [
    # (id, Maven module, expected kafka-clients version prefix, set allowed.urls)
    ("java39", "clients-39", "3.9.", False),
    ("java4", "clients-4", "4.", True),
]


@pytest.mark.parametrize("module,version_prefix,allowed_urls",
                         [c[1:] for c in CLIENTS], ids=[c[0] for c in CLIENTS])
def test_java_round_trip(module, version_prefix, allowed_urls, broker, start_sidecar, workdir,
                         produced_topics):
    sidecar = start_sidecar()
    topic = f"interop-{module}"
    res = java_round_trip(module, broker, sidecar, workdir, topic, COUNT, allowed_urls=allowed_urls)
    label = f"kafka-clients {res.get('client_version')}"
    assert res["client_version"].startswith(version_prefix), res
    assert res["produced"] == COUNT and res["consumed"] == COUNT and res["mismatched"] == 0, report(
        label, "check records", str(res), broker=broker, sidecar=sidecar)
    decisions = res["decisions"]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    # Admin, producer and consumer connections each authenticated through the sidecar's token.
    assert len(accepted) >= 3 and not refused, report(
        label, "broker authentication", f"{len(accepted)} accepted, refused: {refused}",
        broker=broker, sidecar=sidecar)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}
    for client in ("admin_metrics", "producer_metrics", "consumer_metrics"):
        m = res.get(client, {})
        assert m.get("successful-authentication-total", 0) >= 1, (client, m)
        assert m.get("failed-authentication-total", 0) == 0, (client, m)
    produced_topics[module] = {"topic": topic, "count": COUNT, "prefix": topic}
    note(f"{label}: {COUNT} records produced and consumed back intact in "
         f"{res['elapsed_ms'] / 1000:.1f} s; {len(accepted)} SASL authentications accepted "
         f"as User:{PRINCIPAL}")


def test_java4_refuses_token_url_not_in_allowed_urls(broker, start_sidecar, workdir):
    """kafka-clients 4.x without org.apache.kafka.sasl.oauthbearer.allowed.urls refuses to call
    the sidecar at all (what users hit when they copy a 3.x configuration); the README says so."""
    from conftest import java_client
    from harness import result_line

    sidecar = start_sidecar()
    log = workdir / "java4-no-allowed-urls.client.log"
    status, out = java_client(
        "clients-4", "interop.clients.RoundTrip",
        [f"bootstrap={broker.bootstrap}", f"tokenUrl={sidecar.url}", "topic=interop-never",
         "count=1", "timeoutSecs=20"], log, timeout=90)
    res = result_line(out)
    assert res is not None and status != 0 and not res["ok"], (status, res)
    assert res["step"] == "create-topic", res
    assert any("org.apache.kafka.sasl.oauthbearer.allowed.urls" in e for e in res["errors"]), \
        res["errors"]

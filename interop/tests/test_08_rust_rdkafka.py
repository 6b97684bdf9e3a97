"""(8) Rust: an rdkafka producer with the library's ManagedKafkaContext, no sidecar.

Runs examples/rdkafka_producer.rs (feature `rdkafka`, librdkafka 2.12 built from source by
rdkafka-sys) with Application Default Credentials that find the fake's metadata server; the
broker validates every token it presents. The records are consumed back through the sidecar
with librdkafka (confluent-kafka) and checked one by one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import PRINCIPAL, note, report
from harness import ROOT, result_line, run_bounded
from rdkafka import consume, create_topic, oidc_config

COUNT = 200


def example_bin() -> Path:
    explicit = os.environ.get("INTEROP_RDKAFKA_EXAMPLE_BIN")
    if explicit:
        return Path(explicit)
    profile = os.environ.get("INTEROP_CARGO_PROFILE", "debug")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / profile / "examples" / "rdkafka_producer"


def test_rust_rdkafka_producer_authenticates_with_the_library(broker, fake_google, start_sidecar,
                                                              workdir):
    binary = example_bin()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: cargo build --features rdkafka --example rdkafka_producer")
    label = "Rust rdkafka (ManagedKafkaContext)"
    topic = "interop-rust-rdkafka"
    sidecar = start_sidecar()
    conf = oidc_config(broker.bootstrap, f"localhost:{sidecar.port}")
    create_topic(conf, topic)
    before = len(broker.decision_log())

    home = workdir / "rust-rdkafka-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
                        "CLOUDSDK_CONFIG", "http_proxy", "https_proxy", "HTTP_PROXY",
                        "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}
    env.update({
        "HOME": str(home),
        "GCE_METADATA_HOST": fake_google.metadata_host,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_TOPIC": topic,
        "KAFKA_MESSAGES": str(COUNT),
    })
    log = workdir / "rust-rdkafka-producer.log"
    status, out = run_bounded("rdkafka_producer", [str(binary)], log, timeout=120, env=env)
    result = result_line(out)
    assert status == 0 and result is not None, report(
        label, "produce", f"exit status {status}, result {result}", broker=broker, client_log=log)
    assert result["acked"] == COUNT and result["principal"] == PRINCIPAL, result
    offsets = [o for _, o in result["offsets"]]
    assert offsets == list(range(offsets[0], offsets[0] + COUNT)), "offsets are not consecutive"

    decisions = broker.decision_log()[before:]
    accepted = [d for d in decisions if d["decision"] == "accept"]
    refused = [d for d in decisions if d["decision"] == "refuse"]
    assert accepted and not refused, report(
        label, "broker authentication", f"{len(accepted)} accepted, refused: {refused}",
        broker=broker, client_log=log)
    assert {d["principal"] for d in accepted} == {f"User:{PRINCIPAL}"}

    c = consume(conf, topic, lambda: COUNT, topic, group="interop-rust-rdkafka", timeout=90)
    assert c["consumed"] == COUNT and not c["bad"], report(
        label, "consume", f"consumed {c['consumed']} of {COUNT}; problems: {c['bad']}",
        broker=broker, sidecar=sidecar)
    note(f"{label}: {COUNT} records produced by the Rust example with tokens from the library "
         f"(no sidecar) and consumed back intact; {len(accepted)} SASL authentications accepted")

"""Kafka clients before 4.2 decode the claims part with the standard Base64 alphabet
(KAFKA-17089). A principal://... subject with '~', '?' or '>' at the wrong offsets
base64url-encodes to text with '-' or '_', which kafka-clients 3.9 rejects, unless the sidecar
escapes those characters. This scenario runs the 3.9 client with such a principal.
"""

from __future__ import annotations

import json

from conftest import AWKWARD_PRINCIPAL, PRINCIPAL, java_round_trip, note, report
from harness import b64url, split_kafka_token

COUNT = 100


def test_awkward_principal_java39(fake_google, broker, start_sidecar, workdir):
    # The principal really is awkward: written naively, its claims are not standard Base64.
    naive = json.dumps({"exp": 1800000000, "iat": 1799996400, "iss": "Google", "scope": "kafka",
                        "sub": AWKWARD_PRINCIPAL}, separators=(",", ":"))
    naive_b64 = b64url(naive)
    assert "-" in naive_b64 or "_" in naive_b64

    fake_google.configure(metadata_email=AWKWARD_PRINCIPAL)
    try:
        sidecar = start_sidecar("sidecar-awkward")
        status, _, payload = sidecar.token_response()
        assert status == 200, report("sidecar", "POST /", f"{status} {payload}", sidecar=sidecar)
        token = payload["access_token"]
        _, claims, _, _, _ = split_kafka_token(token)
        claims_part = token.split(".")[1]
        assert claims["sub"] == AWKWARD_PRINCIPAL, claims
        assert "-" not in claims_part and "_" not in claims_part, report(
            "sidecar", "encode claims", f"claims part {claims_part!r} is not valid standard "
            "Base64: kafka-clients before 4.2 will reject it", sidecar=sidecar)
        res = java_round_trip("clients-39", broker, sidecar, workdir, "interop-awkward-java39",
                              COUNT, allowed_urls=False,
                              label="kafka-clients 3.9 with a principal:// subject")
    finally:
        fake_google.configure(metadata_email=PRINCIPAL)
    assert res["consumed"] == COUNT and res["mismatched"] == 0, res
    accepted = [d for d in res["decisions"] if d["decision"] == "accept"]
    assert accepted and {d["principal"] for d in accepted} == {f"User:{AWKWARD_PRINCIPAL}"}, \
        res["decisions"][-5:]
    assert all(d.get("claims_std_b64_ok") for d in accepted)
    note(f"kafka-clients {res['client_version']} with sub={AWKWARD_PRINCIPAL}: {COUNT} records "
         f"round-tripped; broker saw User:<that principal>")

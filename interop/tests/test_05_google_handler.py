"""(6) Cross-check against Google's own Java handler (managed-kafka-auth-login-handler).

Google's GcpLoginCallbackHandler and our sidecar both take Application Default Credentials from
the same fake metadata server. Their tokens must agree: the same header, the same `sub`, an
`exp` that is the access token's real expiry, the same claim values Google sends, and the broker
must accept both as the same principal.
"""

from __future__ import annotations

import os

from conftest import JVM_CLIENT_OPTS, PRINCIPAL, classpath, JAVA_BIN, note, report
from harness import result_line, run_bounded, split_kafka_token
from rdkafka import try_static_token

GOOGLE_HANDLER_ARTIFACT = "com.google.cloud.hosted.kafka:managed-kafka-auth-login-handler:1.0.6"


def test_google_handler_cross_check(fake_google, broker, start_sidecar, workdir):
    # The real metadata server hands every caller its cached token; the fake does the same in
    # this mode, so both handlers must end up with the same raw token and the same exp.
    fake_google.configure(metadata_cache=True)
    try:
        _cross_check(fake_google, broker, start_sidecar, workdir)
    finally:
        fake_google.configure(metadata_cache=False)


def _cross_check(fake_google, broker, start_sidecar, workdir):
    sidecar = start_sidecar()
    home = workdir / "google-handler-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")}
    env.update({"HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
                "GCE_METADATA_HOST": fake_google.metadata_host})
    log = workdir / "google-handler.log"
    status, out = run_bounded(
        "google handler",
        [JAVA_BIN] + JVM_CLIENT_OPTS + ["-cp", classpath("google-handler"),
                                        "interop.google.GoogleHandlerToken"],
        log, timeout=120, env=env)
    g = result_line(out, "TOKEN ")
    label = f"Google GcpLoginCallbackHandler ({GOOGLE_HANDLER_ARTIFACT})"
    assert status == 0 and g is not None, report(
        label, "get a token from the fake metadata server", f"exit status {status}",
        client_log=log)

    s_status, _, s_payload = sidecar.token_response()
    assert s_status == 200 and "access_token" in s_payload, report(
        "sidecar", "POST /", f"status {s_status}: {s_payload}", sidecar=sidecar)

    g_header, g_claims, g_raw, g_header_text, _ = split_kafka_token(g["value"])
    o_header, o_claims, o_raw, o_header_text, _ = split_kafka_token(s_payload["access_token"])
    facts = {"google": {"header": g_header_text, "claims": g_claims},
             "ours": {"header": o_header_text, "claims": o_claims}}

    # Same header, byte for byte.
    assert o_header_text == g_header_text, facts
    assert o_header == {"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}
    # Same subject, and it is what the handler reports as the principal.
    assert o_claims["sub"] == g_claims["sub"] == g["principal"] == PRINCIPAL, facts
    # Every claim Google sends, we send, with the same type; scope has the same value.
    assert set(g_claims) <= set(o_claims), facts
    for k in g_claims:
        assert type(o_claims[k]) is type(g_claims[k]), (k, facts)
    assert o_claims["scope"] == g_claims["scope"] == "kafka", facts
    # The same raw access token (the metadata server's cached one), known to the fake.
    assert o_raw == g_raw, "the two handlers carry different Google access tokens"
    rec = fake_google.lookup(o_raw)
    assert rec and rec["principal"] == PRINCIPAL and rec["source"] == "metadata", rec
    # exp is that token's real expiry. Both sides compute it as "now + expires_in"; a second
    # boundary falling between the two computations and Google's own can move either by 1 s.
    assert abs(g_claims["exp"] - rec["expires_at_unix"]) <= 1, (g_claims, rec)
    assert abs(o_claims["exp"] - rec["expires_at_unix"]) <= 1, (o_claims, rec)
    assert abs(o_claims["exp"] - g_claims["exp"]) <= 1, facts
    assert g["lifetime_ms"] // 1000 == g_claims["exp"], g

    # The broker accepts both, as the same principal. Its validator refuses an `exp` after the
    # token's real expiry, and Google's handler computes `exp` as its own clock plus the
    # metadata server's whole-second `expires_in`: read late enough in a second, it lands 1 s
    # past the expiry, and then the validator must refuse it for exactly that (ours never does).
    google_late = g_claims["exp"] - rec["expires_at_unix"]
    verdicts = {}
    for who, token in (("google", g["value"]), ("ours", s_payload["access_token"])):
        before = len(broker.decision_log())
        outcome, message = try_static_token(broker.bootstrap, token, PRINCIPAL)
        new = broker.decision_log()[before:]
        if who == "google" and google_late == 1:
            assert outcome != "accepted" and new and all(
                d["decision"] == "refuse" and d["reason"] == "exp_mismatch" and d["exp_skew"] == 1
                for d in new), report(
                f"librdkafka(oauth_cb) with the {who} token, exp 1 s past the expiry",
                "authenticate", f"{outcome} {message}; decisions {new}", broker=broker)
            continue
        assert outcome == "accepted" and new and all(d["decision"] == "accept" for d in new), report(
            f"librdkafka(oauth_cb) with the {who} token", "authenticate",
            f"{outcome} {message}; decisions {new}", broker=broker)
        verdicts[who] = {d["principal"] for d in new}
    assert verdicts["ours"] == {f"User:{PRINCIPAL}"}
    assert verdicts.get("google", verdicts["ours"]) == verdicts["ours"]

    note(f"{label} vs sidecar: header identical ({o_header_text}); sub identical; "
         f"claims Google sends {sorted(g_claims)} all present in ours {sorted(o_claims)}; "
         f"raw access token identical; exp google {g_claims['exp']} ours {o_claims['exp']} "
         f"(token expiry {rec['expires_at_unix']}); broker accepted "
         + ("both as the same principal" if google_late <= 0 else
            "ours, and refused Google's for its exp 1 s past the expiry (exp_mismatch)"))

"""(1) The broker validates tokens the way Managed Kafka does, and refuses bad ones.

Each case hands the broker one exact token through librdkafka's oauth_cb (which sends what it
is given, unchecked), then reads the broker validator's decision for it. The accepted control
case proves the harness itself is not what makes the other cases fail.
"""

from __future__ import annotations

import time

import pytest

from conftest import PRINCIPAL, DEFAULT_LIFETIME, report
from harness import b64url, make_kafka_token, token_fingerprint, wait_until
from rdkafka import try_static_token


def _mint(fake, lifetime: int | None = None, scopes: list[str] | None = None) -> tuple[str, int]:
    """A raw token from the fake metadata server and its real expiry (unix seconds)."""
    if lifetime is not None:
        fake.configure(token_lifetime_secs=lifetime)
    try:
        raw = fake.metadata_token(scopes)["access_token"]
    finally:
        if lifetime is not None:
            fake.configure(token_lifetime_secs=DEFAULT_LIFETIME)
    info = fake.lookup(raw)
    assert info is not None, f"fake-google /_fake/lookup does not know the token it just issued"
    return raw, int(info["expires_at_unix"])


def _present(broker, token: str, principal: str, case: str):
    """Presents `token` and returns (client outcome, client message, the validator's decision
    for exactly this token), found by the fingerprint the validator logs."""
    fp = token_fingerprint(token)
    before = len(broker.decision_log())
    outcome, message = try_static_token(broker.bootstrap, token, principal)
    mine = wait_until(f"the broker validator to log a decision for case {case} (token {fp})",
                      lambda: [d for d in broker.decision_log()[before:]
                               if d.get("presented_fp") == fp] or None, timeout=15)
    # librdkafka may reconnect and present the same token again before it reports the
    # failure; every decision for one token must then be the same decision.
    verdicts = {(d["decision"], d.get("reason")) for d in mine}
    assert len(verdicts) == 1, f"case {case}: token {fp} got differing decisions: {mine}"
    return outcome, message, mine[0]


def test_broker_accepts_well_formed_token(fake_google, broker):
    raw, exp = _mint(fake_google)
    token = make_kafka_token(raw, PRINCIPAL, exp)
    outcome, message, decision = _present(broker, token, PRINCIPAL, "accepted control")
    assert outcome == "accepted" and decision["decision"] == "accept", report(
        "librdkafka(oauth_cb)", "authenticate with a well-formed token",
        f"outcome={outcome} {message}; decision={decision}", broker=broker)
    assert decision["principal"] == f"User:{PRINCIPAL}"
    assert decision["tokeninfo_email"] == PRINCIPAL
    assert decision["exp_skew"] == 0
    assert decision["tokeninfo_scope"] == "https://www.googleapis.com/auth/cloud-platform"


def _wrong_sub(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, "someone-else@interop-project.iam.gserviceaccount.com", exp)


def _expired(fake):
    raw, exp = _mint(fake, lifetime=2)
    wait_until("the short-lived token to expire", lambda: time.time() > exp + 1, timeout=10)
    return make_kafka_token(raw, PRINCIPAL, exp, iat=exp - 2)


def _expired_claims_lie(fake):
    raw, exp = _mint(fake, lifetime=2)
    wait_until("the short-lived token to expire", lambda: time.time() > exp + 1, timeout=10)
    return make_kafka_token(raw, PRINCIPAL, int(time.time()) + 3600)


def _exp_mismatch(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp + 1800)


def _exp_one_second_late(fake):
    # Within the broker's tolerance on the wrong side: the claim outlives the token.
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp + 1)


def _exp_far_too_early(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp - 600)


def _wrong_typ(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp, typ="JWS")


def _exp_as_string(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, str(exp))


def _iat_as_string(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp, iat=str(int(time.time())))


def _third_part_not_base64url(fake):
    # Five characters: no base64 text has a length of 1 mod 4. Only characters the broker's
    # SASL parser lets through ([-_.a-zA-Z0-9]), so the validator is what refuses it.
    _, exp = _mint(fake)
    return make_kafka_token("", PRINCIPAL, exp, third_part="ya29x")


def _third_part_not_a_token(fake):
    # Valid base64url, but of a JSON header rather than of an access token.
    _, exp = _mint(fake)
    return make_kafka_token("", PRINCIPAL, exp, third_part=b64url('{"typ":"JWT"}'))


def _missing_cloud_platform_scope(fake):
    raw, exp = _mint(fake, scopes=["https://www.googleapis.com/auth/userinfo.email"])
    return make_kafka_token(raw, PRINCIPAL, exp)


def _bare(fake):
    raw, _ = _mint(fake)
    return raw


def _wrong_alg(fake):
    raw, exp = _mint(fake)
    return make_kafka_token(raw, PRINCIPAL, exp, alg="RS256")


def _unknown_token(fake):
    _, exp = _mint(fake)
    return make_kafka_token("ya29.c.never-issued-by-google", PRINCIPAL, exp)


REFUSALS = [
    ("wrong_sub", _wrong_sub, {"sub_mismatch"}),
    ("expired", _expired, {"expired"}),
    ("expired_token_with_future_exp_claim", _expired_claims_lie, {"tokeninfo_rejected"}),
    ("exp_not_the_tokens_expiry", _exp_mismatch, {"exp_mismatch"}),
    ("exp_one_second_after_the_tokens_expiry", _exp_one_second_late, {"exp_mismatch"}),
    ("exp_long_before_the_tokens_expiry", _exp_far_too_early, {"exp_mismatch"}),
    ("wrong_typ", _wrong_typ, {"bad_typ"}),
    ("exp_as_string", _exp_as_string, {"bad_exp"}),
    ("iat_as_string", _iat_as_string, {"bad_iat"}),
    ("third_part_not_base64url", _third_part_not_base64url, {"bad_access_token_part"}),
    ("third_part_not_an_access_token", _third_part_not_a_token, {"tokeninfo_rejected"}),
    ("token_without_cloud_platform_scope", _missing_cloud_platform_scope, {"missing_scope"}),
    ("bare_access_token", _bare, {"not_three_parts"}),
    ("wrong_alg", _wrong_alg, {"bad_alg"}),
    ("access_token_google_does_not_know", _unknown_token, {"tokeninfo_rejected"}),
]


@pytest.mark.parametrize("case,make,reasons", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_broker_refuses(fake_google, broker, case, make, reasons):
    token = make(fake_google)
    outcome, message, decision = _present(broker, token, PRINCIPAL, case)
    assert decision["decision"] == "refuse" and decision["reason"] in reasons, report(
        "librdkafka(oauth_cb)", f"present a token with {case}",
        f"broker decision {decision.get('decision')}/{decision.get('reason')} "
        f"({decision.get('detail')}), want refuse/{sorted(reasons)}", broker=broker)
    assert outcome == "refused", report(
        "librdkafka(oauth_cb)", f"present a token with {case}",
        f"the client saw {outcome} ({message}), want an authentication failure", broker=broker)
    assert "Authentication failed" in message or "invalid_token" in message or "SASL" in message, message

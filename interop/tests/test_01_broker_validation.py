"""(1) The broker validates tokens the way Managed Kafka does, and refuses bad ones.

Each case hands the broker one exact token through librdkafka's oauth_cb (which sends what it
is given, unchecked), then reads the broker validator's decision for it. The accepted control
case proves the harness itself is not what makes the other cases fail.
"""

from __future__ import annotations

import time

import pytest

from conftest import PRINCIPAL, DEFAULT_LIFETIME, report
from harness import make_kafka_token, wait_until
from rdkafka import try_static_token


def _mint(fake, lifetime: int | None = None) -> tuple[str, int]:
    """A raw token from the fake metadata server and its real expiry (unix seconds)."""
    if lifetime is not None:
        fake.configure(token_lifetime_secs=lifetime)
    try:
        raw = fake.metadata_token()["access_token"]
    finally:
        if lifetime is not None:
            fake.configure(token_lifetime_secs=DEFAULT_LIFETIME)
    info = fake.lookup(raw)
    assert info is not None, f"fake-google /_fake/lookup does not know the token it just issued"
    return raw, int(info["expires_at_unix"])


def _present(broker, token: str, principal: str, case: str):
    before = len(broker.decision_log())
    outcome, message = try_static_token(broker.bootstrap, token, principal)
    decisions = wait_until(f"the broker validator to log a decision for case {case}",
                           lambda: broker.decision_log()[before:] or None, timeout=15)
    return outcome, message, decisions[0]


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

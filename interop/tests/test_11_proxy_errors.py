"""(11) The proxy in front of the real cluster when something is wrong: it says what, and no
client is left hanging.

- The brokers refuse its credentials (a principal that is not the token's, OAUTHBEARER and
  PLAIN): `/readyz` never answers 200 and names the refusal, the proxy's log carries the
  broker's own error message, a client's connection is closed instead of answered or left
  open, and the brokers' validators logged the refusal for the expected reason.
- The brokers' certificates are signed by a CA the proxy was not given: `/readyz` and the log
  name the certificate problem and the fix (`--upstream-ca-file`), and no broker ever saw a
  SASL attempt.
- A client configured for a direct connection (SASL_SSL, SASL_PLAINTEXT) is pointed at the
  proxy: it fails, and the proxy's log tells the user what to change; with SASL_PLAINTEXT the
  client's own error carries the fix too (the SaslHandshake refusal's mechanism list:
  kafka-clients' exception, librdkafka's error_cb), a bare SaslAuthenticate gets error 58 with
  it; none of the tokens the client was given (fingerprinted as the brokers' validators log
  them) was presented to a broker, while the proxy's own were.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from cluster import make_test_ca
from conftest import PRINCIPAL, note
from harness import http

pytestmark = [pytest.mark.cluster, pytest.mark.proxy]

# The proxy answers a client's SaslHandshake with UNSUPPORTED_SASL_MECHANISM and the fix as
# the "mechanisms" (in three parts: librdkafka prints at most 32 bytes per mechanism). How each
# client prints them, exactly: kafka-clients joins them with ", ", librdkafka with ",".
JAVA_SASL_HINT = ("enabled mechanisms are [the proxy authenticates for you, remove the SASL "
                  "settings, use security.protocol=PLAINTEXT]")
LIBRDKAFKA_SASL_HINT = ("Broker: Unsupported SASL mechanism: broker's supported mechanisms: the "
                        "proxy authenticates for you,remove the SASL settings,use "
                        "security.protocol=PLAINTEXT")

OTHER = "someone-else@interop-project.iam.gserviceaccount.com"


def readyz_history(proxy, secs: float) -> list[tuple[int, str]]:
    """Every /readyz answer over `secs` seconds (one every 0.5 s)."""
    out = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        status, _, body = http("GET", f"http://127.0.0.1:{proxy.http_port}/readyz", timeout=3)
        out.append((status, body.decode("utf-8", "replace")))
        time.sleep(0.5)
    return out


def client_is_closed(address: str, timeout: float = 20) -> tuple[bool, str]:
    """Sends ApiVersions v0 to `address`; (True, how) when the proxy closes the connection
    without answering, (False, what happened) otherwise."""
    host, port = address.rsplit(":", 1)
    client_id = b"interop-refusal-probe"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        s.settimeout(timeout)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return True, "reset"
        except socket.timeout:
            return False, f"no answer and still open after {timeout:.0f} s"
        return (True, "closed") if data == b"" else (False, f"answered {data[:40]!r}")


# Kafka's OAUTHBEARER server answers a refused token per RFC 7628 §3.2.2: SaslAuthenticate
# with error_code 0 and auth_bytes {"status":"invalid_token"}, waiting for the client's %x01;
# only then does it fail the authentication (error 58). The proxy acknowledges the challenge
# and reports the broker's message with the challenge's JSON, so "invalid_token" must appear.
@pytest.mark.parametrize("mechanism,reason,broker_message", [
    # (the broker's error_message: Kafka's PlainSaslServer's text; for OAUTHBEARER the
    # RFC 7628 error JSON our validator's status puts in it)
    pytest.param("oauthbearer", "sub_mismatch", "invalid_token", id="oauthbearer"),
    pytest.param("plain", "username_mismatch",
                 "Authentication failed: Invalid username or password", id="plain")])
def test_proxy_reports_broker_refusal(mechanism, reason, broker_message, kafka_cluster,
                                      start_proxy):
    cluster = kafka_cluster
    d0 = len(cluster.decision_log())
    proxy = start_proxy(cluster, name=f"proxy-refused-{mechanism}", upstream_sasl=mechanism,
                        extra_args=["--principal", OTHER], wait_ready=False)
    history = readyz_history(proxy, 8)
    closed, how = client_is_closed(proxy.bootstrap)
    time.sleep(1)
    log = proxy.log_text()
    decisions = cluster.decision_log()[d0:]
    what = f"proxy, {mechanism} upstream as {OTHER}"

    assert all(status != 200 for status, _ in history), cluster.report(
        what, "/readyz", f"became ready although the brokers refuse it: {history[-1]}",
        proxy=proxy)
    last = history[-1][1]
    assert "refused" in last.lower() and mechanism.upper() in last, cluster.report(
        what, "/readyz", f"does not name the refusal: {history[-1]}", proxy=proxy)
    refusals = [d for d in decisions if d["decision"] == "refuse"]
    assert refusals and {d["reason"] for d in refusals} == {reason}, cluster.report(
        what, "brokers", f"decisions {decisions[:5]}", proxy=proxy)
    assert not [d for d in decisions if d["decision"] == "accept"], decisions
    assert closed, cluster.report(what, "client", f"the client's connection was not closed: "
                                  f"{how}", proxy=proxy)
    assert broker_message in last, cluster.report(
        what, "/readyz", f"does not carry the broker's message {broker_message!r}: {last}",
        proxy=proxy)
    refused_lines = [l for l in log.splitlines()
                     if "refused" in l.lower() and broker_message in l]
    assert refused_lines, cluster.report(
        what, "proxy log", f"no line names the refusal with the broker's message "
        f"{broker_message!r}", proxy=proxy)
    # The broker's own error code: SaslAuthenticate's SASL_AUTHENTICATION_FAILED (58), for
    # OAUTHBEARER after the RFC 7628 error challenge was acknowledged, for PLAIN at once.
    code58 = f"refused SASL/{mechanism.upper()} authentication (error 58)"
    assert code58 in last and all(code58 in l for l in refused_lines), cluster.report(
        what, "error code", f"/readyz or the proxy log does not carry {code58!r}: {last}; "
        f"{refused_lines[:2]}", proxy=proxy)
    note(f"proxy refused ({mechanism}, principal {OTHER}): /readyz {history[-1][0]} "
         f"'{last.strip()[:200]}'; client connection {how}; brokers refused "
         f"{len(refusals)}x ({reason}); log: {refused_lines[0][:300]}")


def test_proxy_reports_unknown_ca(kafka_cluster, start_proxy, workdir):
    cluster = kafka_cluster
    # Another name too: a CA of the same name would make this a bad signature instead.
    other = make_test_ca(workdir / "other-ca", [], name="some other CA")
    d0 = len(cluster.decision_log())
    proxy = start_proxy(cluster, name="proxy-unknown-ca", wait_ready=False,
                        ca_file=other.ca_file)
    history = readyz_history(proxy, 6)
    closed, how = client_is_closed(proxy.bootstrap)
    what = "proxy with another CA"
    assert all(status != 200 for status, _ in history), history[-1]
    last = history[-1][1]
    assert "unknown issuer" in last and "--upstream-ca-file" in last, cluster.report(
        what, "/readyz", f"does not name the certificate problem and the fix: {history[-1]}",
        proxy=proxy)
    assert "unknown issuer" in proxy.log_text(), cluster.report(what, "log", "", proxy=proxy)
    assert closed, cluster.report(what, "client", how, proxy=proxy)
    # TLS failed before any SASL: no broker saw a token.
    assert cluster.decision_log()[d0:] == []
    note(f"proxy with an unknown CA: /readyz {history[-1][0]} '{last.strip()[:200]}'; client "
         f"connection {how}")


@pytest.mark.parametrize("security,hint", [
    # TLS against the plaintext listener: the proxy sees a ClientHello, says so, closes.
    pytest.param("sasl_ssl", "this listener is plaintext: use security.protocol=PLAINTEXT",
                 id="sasl_ssl"),
    # SASL against the proxy: refused, never forwarded.
    pytest.param("sasl_plaintext", "the proxy authenticates for you: remove the SASL settings",
                 id="sasl_plaintext"),
])
def test_proxy_tells_a_misconfigured_client_what_to_change(security, hint, kafka_cluster,
                                                           start_proxy, start_sidecar, workdir):
    """kafka-clients 4.x pointed at the proxy with a direct-connection configuration (SASL_SSL
    or SASL_PLAINTEXT, OAUTHBEARER through the sidecar): the client fails, the proxy's log
    says what to change, the client's own error says it too where the protocol can carry
    text (the SaslHandshake refusal; a TLS handshake cannot), and no credential the client was
    given reaches a broker (by fingerprint, in the brokers' decision log)."""
    from cluster_clients import TokenRecorder, assert_no_client_credential_reached_a_broker, \
        run_java
    cluster = kafka_cluster
    # Before the proxy starts: its own start-up authentications are in the window, so the
    # isolation check below has the proxy's tokens to tell the client's from.
    d0 = len(cluster.decision_log())
    proxy = start_proxy(cluster, name=f"proxy-{security}-client")
    sidecar = start_sidecar()
    # The client fetches its token through the recorder: every token it was given is known.
    recorder = TokenRecorder(sidecar.url)
    try:
        status, res, log = run_java(
            f"proxy-{security}-client", proxy.bootstrap, workdir,
            [f"security={security}", f"tokenUrl={recorder.url}",
             f"truststore={cluster.ca_file}", "mode=describe", "timeoutSecs=15"], timeout=90,
            extra_jvm=[f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={recorder.url}"])
    finally:
        recorder.stop()
    time.sleep(1)
    decisions = cluster.decision_log()[d0:]
    what = f"kafka-clients via proxy with security.protocol={security.upper()}"
    assert res is not None and status != 0 and not res["ok"], cluster.report(
        what, "describe", f"the client should have failed: {res}", client_log=log, proxy=proxy)
    assert res["step"] == "describe-cluster", res
    hints = [l for l in proxy.log_text().splitlines() if hint in l]
    assert hints, cluster.report(what, "proxy log", f"no line says {hint!r}", client_log=log,
                                 proxy=proxy)
    # What the client itself reports.
    client_text = " ".join(res["errors"])
    if security == "sasl_plaintext":
        # SaslHandshake has no error message; the proxy's refusal names the fix as the
        # mechanisms offered, which kafka-clients prints in its exception.
        assert "UnsupportedSaslMechanismException" in client_text and \
            JAVA_SASL_HINT in client_text, cluster.report(
                what, "client error", f"the client's exception does not carry "
                f"{JAVA_SASL_HINT!r}: {res['errors']}", client_log=log, proxy=proxy)
    else:
        # A TLS client cannot be told text by a plaintext peer: it reports the connection
        # ending during its (TLS) authentication, and the proxy's log names the fix.
        ended = [l for l in log.read_text(errors="replace").splitlines()
                 if f"Connection to node -1 (localhost/{proxy.bootstrap})" in l
                 and "terminated during authentication" in l]
        assert ended, cluster.report(what, "client log", "no 'terminated during "
                                     "authentication' for the proxy's address", client_log=log,
                                     proxy=proxy)
        client_text = ended[0].split(" - ", 1)[-1]
    # Credential isolation, exact: none of the client's tokens was presented to a broker.
    refused = [d for d in decisions if d["decision"] == "refuse"]
    assert not refused, cluster.report(what, "brokers", f"refused: {refused[:3]}", proxy=proxy)
    given = recorder.given()
    checked, seen = assert_no_client_credential_reached_a_broker(decisions, given, PRINCIPAL)
    note(f"proxy, kafka-clients with {security.upper()}: fails at describeCluster; the client "
         f"reports: {client_text[:320]}; proxy log: {hints[0].split(': ', 1)[-1][:200]}; "
         f"{len(given)} token(s) given to the client, {checked} fingerprints, none among "
         f"{seen} broker decisions in the window (the proxy's own accepted)")


def sasl_authenticate_probe(address: str, timeout: float = 10) -> tuple[int, str | None]:
    """Sends SaslAuthenticate v1 (no SaslHandshake before it, as no client would) with an
    OAUTHBEARER initial response; returns the answer's (error_code, error_message)."""
    host, port = address.rsplit(":", 1)
    client_id = b"interop-sasl-probe"
    auth = b"n,,\x01auth=Bearer not-a-token\x01\x01"
    body = struct.pack(">hhih", 36, 1, 11, len(client_id)) + client_id \
        + struct.pack(">i", len(auth)) + auth
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        s.settimeout(timeout)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"the proxy closed the connection without answering "
                                     f"SaslAuthenticate (got {data!r})")
            data += chunk
    # size, correlation id, error_code, error_message (nullable string), ...
    corr, code = struct.unpack(">ih", data[4:10])
    assert corr == 11, corr
    n = struct.unpack(">h", data[10:12])[0]
    return code, (None if n < 0 else data[12:12 + n].decode("utf-8", "replace"))


def test_proxy_refuses_client_sasl_with_the_hint(kafka_cluster, start_proxy, start_sidecar,
                                                 workdir):
    """The client side of a SASL refusal: librdkafka (confluent-kafka) with SASL_PLAINTEXT and
    OAUTHBEARER (a token from the sidecar) sees SaslHandshake offered in the proxy's
    ApiVersions answer (as a broker offers it on a PLAINTEXT listener), sends it, and its own
    error_cb report names the fix: the refusal's mechanism list, which librdkafka prints as
    "broker's supported mechanisms: the proxy authenticates for you,remove the SASL
    settings,use security.protocol=PLAINTEXT". A bare SaslAuthenticate (any client that skips
    the handshake) gets SASL_AUTHENTICATION_FAILED (58) whose error_message is the hint.
    Either way the token the client was given never reaches a broker."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException
    from cluster_clients import RdLog, assert_no_client_credential_reached_a_broker
    cluster = kafka_cluster
    hint = "the proxy authenticates for you: remove the SASL settings"
    d0 = len(cluster.decision_log())
    proxy = start_proxy(cluster, name="proxy-client-sasl")
    sidecar = start_sidecar()
    status, _, payload = sidecar.token_response()
    assert status == 200 and payload.get("access_token"), (status, payload)
    token = payload["access_token"]
    rdlog = RdLog()
    conf = {"bootstrap.servers": proxy.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "socket.timeout.ms": 5000,
            "oauth_cb": lambda _cfg: (token, time.time() + 600), **rdlog.conf(),
            "debug": "broker,security"}
    admin = AdminClient(conf)
    with pytest.raises(KafkaException) as err:
        admin.list_topics(timeout=8)
    # librdkafka's error_cb and log reach Python only when the client is polled.
    for _ in range(10):
        admin.poll(0.2)
    del admin
    rdlog.write(workdir / "librdkafka-sasl-plaintext.client.log")
    what = "librdkafka via proxy with SASL_PLAINTEXT/OAUTHBEARER"
    want = f"SASL OAUTHBEARER mechanism handshake failed: {LIBRDKAFKA_SASL_HINT}"
    told = [e for e in rdlog.errors if e.startswith("_AUTHENTICATION: ") and want in e]
    assert told, cluster.report(what, "client error", f"no error_cb report says {want!r}: "
                                f"{rdlog.errors[:5]}", proxy=proxy)
    code, message = sasl_authenticate_probe(proxy.bootstrap)
    assert (code, message) == (58, f"{hint}, use security.protocol=PLAINTEXT"), cluster.report(
        what, "SaslAuthenticate", f"answered error {code} {message!r}, want 58 (SASL_"
        f"AUTHENTICATION_FAILED) with the hint", proxy=proxy)
    time.sleep(1)
    decisions = cluster.decision_log()[d0:]
    checked, seen = assert_no_client_credential_reached_a_broker(decisions, [token], PRINCIPAL)
    assert not [d for d in decisions if d["decision"] == "refuse"], decisions[-5:]
    note(f"proxy, librdkafka with SASL_PLAINTEXT/OAUTHBEARER: list_topics fails "
         f"({err.value.args[0].name()}); librdkafka reports: {told[0][:300]} (the hint in "
         f"{len(told)} of its {len(rdlog.errors)} error reports); a bare "
         f"SaslAuthenticate gets error {code}: {message!r}; the client's token ({checked} "
         f"fingerprints) is among none of {seen} broker decisions in the window")

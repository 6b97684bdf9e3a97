"""Fixtures of the interop suite: the fake Google, a real Kafka 4.x broker, our sidecar.

One fake Google and one broker serve the whole session (the broker's validator asks that
fake's tokeninfo about every token); each scenario starts its own sidecar, so a scenario that
changes the fake's token lifetime or principal never leaks into another.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_node import SINGLE_NODE_SIZING, BrokerNode, broker_jvm, start_nodes  # noqa: E402
from harness import (  # noqa: E402
    INTEROP, JAVA, ROOT, Proc, b64url, client_log_excerpt, decisions_excerpt, free_port, http,
    http_json, result_line, run_bounded, tail, wait_until,
)

# The 3-node TLS cluster and the proxy fixtures (tests/cluster.py), started only on first use.
pytest_plugins = ["cluster"]

# The principal the fake's metadata server hands out for the whole session.
PRINCIPAL = "interop-client@interop-project.iam.gserviceaccount.com"
# A principal://... subject whose claims JSON, written naively, base64url-encodes to text with
# '-' and '_' (three '~', '?' and '>' in a row put one of each at a byte offset of 2 mod 3),
# which kafka-clients before 4.2 cannot decode (KAFKA-17089).
AWKWARD_PRINCIPAL = ("principal://iam.googleapis.com/projects/123456789/locations/global/"
                     "workloadIdentityPools/interop.svc.id.goog/subject/ns/sa~~~x???y>>>z")
# Broker: re-authenticate every connection at least this often (Managed Kafka sets it too).
REAUTH_MS = 20_000
DEFAULT_LIFETIME = 3600


def _bin(name: str, env_var: str) -> Path:
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit)
    profile = os.environ.get("INTEROP_CARGO_PROFILE", "debug")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / profile / name


FAKE_BIN = _bin("fake-google", "INTEROP_FAKE_GOOGLE_BIN")
SIDECAR_BIN = _bin("gcp-kafka-auth-handler", "INTEROP_SIDECAR_BIN")
JAVA_BIN = os.environ.get("JAVA", shutil.which("java") or "java")
# Small, quick-starting JVMs: 2 cores run the broker and a client side by side.
JVM_CLIENT_OPTS = ["-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                   "-Djava.net.preferIPv4Stack=true"]


def classpath(module: str) -> str:
    base = JAVA / module / "target"
    if not (base / "lib").is_dir():
        pytest.fail(f"{base / 'lib'} is missing: build the Java modules first "
                    f"(interop/run.sh does: mvn -q -B -f interop/java/pom.xml package)")
    return f"{base / 'classes'}:{base / 'lib'}/*"


@pytest.fixture(scope="session")
def workdir() -> Path:
    base = Path(os.environ.get("INTEROP_WORK", INTEROP / "work"))
    d = base / time.strftime("run-%Y%m%d-%H%M%S")
    d.mkdir(parents=True, exist_ok=True)
    latest = base / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(d.name)
    except OSError:
        pass
    return d


# ---- fake Google -------------------------------------------------------------------------


@dataclass
class FakeGoogle:
    proc: Proc
    base_url: str
    metadata_host: str
    token_uri: str
    tokeninfo_url: str

    def stats(self) -> dict:
        status, body = http_json("GET", f"{self.base_url}/_fake/stats")
        assert status == 200, f"fake-google /_fake/stats answered {status}: {body}"
        return body

    def configure(self, **cfg) -> None:
        status, body = http_json("POST", f"{self.base_url}/_fake/config", cfg)
        assert status in (200, 204), f"fake-google /_fake/config {cfg} answered {status}: {body}"

    def lookup(self, access_token: str) -> dict | None:
        from urllib.parse import quote
        status, body = http_json(
            "GET", f"{self.base_url}/_fake/lookup?access_token={quote(access_token, safe='')}")
        return body if status == 200 else None

    def metadata_token(self, scopes: list[str] | None = None) -> dict:
        """A token straight from the fake metadata server, as the sidecar would get it (with
        `?scopes=` when given, else the instance's scopes)."""
        from urllib.parse import quote
        query = "" if scopes is None else "?scopes=" + quote(",".join(scopes), safe=",")
        status, body = http_json(
            "GET",
            f"http://{self.metadata_host}/computeMetadata/v1/instance/service-accounts/default/token"
            + query,
            headers={"Metadata-Flavor": "Google"})
        assert status == 200, f"fake metadata token answered {status}: {body}"
        return body


def start_fake_google(workdir: Path) -> FakeGoogle:
    """Starts fake-google (logging to workdir/fake-google.log) and reads the JSON line it
    prints; RuntimeError when it prints none within 20 s."""
    import select
    log = workdir / "fake-google.log"
    proc = Proc("fake-google",
                [str(FAKE_BIN), "--port", "0", "--token-lifetime-secs", str(DEFAULT_LIFETIME),
                 "--metadata-email", PRINCIPAL],
                log, stdout_pipe=True)
    line = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        if select.select([proc.popen.stdout], [], [], 0.5)[0]:
            chunk = os.read(proc.popen.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    try:
        info = json.loads(line.decode().strip().splitlines()[0])
    except (ValueError, IndexError):
        proc.stop()
        raise RuntimeError(f"fake-google ({FAKE_BIN}) did not print its JSON line within 20 s "
                           f"(got {line!r}); log:\n{tail(log)}") from None
    (workdir / "fake-google.json").write_text(json.dumps(info))
    return FakeGoogle(proc, info["base_url"].rstrip("/"), info["metadata_host"],
                      info["token_uri"], info["tokeninfo_url"])


@pytest.fixture(scope="session")
def fake_google(workdir: Path):
    if not FAKE_BIN.exists():
        pytest.fail(f"fake-google binary {FAKE_BIN} is missing: cargo build --bins")
    try:
        fake = start_fake_google(workdir)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield fake
    fake.proc.stop()


# ---- the broker --------------------------------------------------------------------------


@dataclass
class Broker(BrokerNode):
    """The session's single broker: a one-node KRaft cluster (broker_node.BrokerNode) with a
    SASL_PLAINTEXT listener for OAUTHBEARER only, replication factor 1."""
    principals: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.external

    @property
    def port(self) -> int:
        return self.external_port

    def auth_metrics(self) -> dict:
        """The broker's own SASL counters on the OAUTHBEARER listener."""
        return self.read_metrics()


@pytest.fixture(scope="session")
def broker(workdir: Path, fake_google: FakeGoogle):
    classpath("broker")  # fails clearly when the Java build is missing
    b = Broker(1, "127.0.0.1", workdir / "broker", label="the Kafka broker",
               listener="SASL_PLAINTEXT", protocol="SASL_PLAINTEXT",
               principals=[PRINCIPAL, AWKWARD_PRINCIPAL])
    b.write_config(title="Single-node KRaft broker+controller for the interop suite",
                   voters=b.voter, tokeninfo=fake_google.tokeninfo_url,
                   principals=b.principals, reauth_ms=REAUTH_MS, sizing=SINGLE_NODE_SIZING)
    jvm = broker_jvm(JAVA_BIN, ["-Xms256m", "-Xmx768m", "-XX:+UseSerialGC",
                                "-Djava.net.preferIPv4Stack=true"])
    try:
        start_nodes([b], jvm, timeout=120)
    except AssertionError:
        if b.proc is not None:
            b.proc.stop()
        raise
    yield b
    b.proc.stop(grace=20)


# ---- the sidecar -------------------------------------------------------------------------


def product_env(home: Path, fake: FakeGoogle, rust_log: str) -> dict:
    """The environment our binary (sidecar or proxy) runs in: ADC finds only the fake metadata
    server, nothing of the caller's Google or proxy settings leaks in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
                        "CLOUDSDK_CONFIG", "http_proxy", "https_proxy", "HTTP_PROXY",
                        "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "RUST_LOG")
           and not k.startswith("GCP_KAFKA_AUTH_")}
    env.update({
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "GCE_METADATA_HOST": fake.metadata_host,
        "GCP_KAFKA_AUTH_TOKENINFO_URL": fake.tokeninfo_url,
        "RUST_LOG": rust_log,
    })
    return env


@dataclass
class Sidecar:
    proc: Proc
    port: int
    home: Path

    @property
    def url(self) -> str:
        """The endpoint URL as users write it."""
        return f"http://localhost:{self.port}"

    def token_response(self, path: str = "/", method: str = "POST") -> tuple[int, dict, dict]:
        body = b"grant_type=client_credentials" if method == "POST" else None
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json",
                   "Authorization": "Basic " + b64url(b"unused:unused")}
        status, hdrs, data = http(method, f"http://127.0.0.1:{self.port}{path}", body,
                                  headers if method == "POST" else {})
        try:
            payload = json.loads(data)
        except ValueError:
            payload = {"_raw": data.decode("utf-8", "replace")}
        return status, hdrs, payload


@pytest.fixture
def start_sidecar(workdir: Path, fake_google: FakeGoogle, request):
    """Starts our sidecar against the fake Google; stopped when the test ends."""
    started: list[Sidecar] = []

    def start(name: str = "sidecar", extra_env: dict | None = None,
              extra_args: list[str] | None = None, ready_timeout: float = 30) -> Sidecar:
        if not SIDECAR_BIN.exists():
            pytest.fail(f"sidecar binary {SIDECAR_BIN} is missing: cargo build --bins")
        test_dir = workdir / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        home = test_dir / f"{name}-home"
        home.mkdir(parents=True, exist_ok=True)
        env = product_env(home, fake_google, os.environ.get("INTEROP_SIDECAR_RUST_LOG", "info"))
        env.update(extra_env or {})
        port = free_port()
        proc = Proc(name, [str(SIDECAR_BIN), "serve", "--port", str(port)] + (extra_args or []),
                    test_dir / f"{name}.log", env=env)
        sc = Sidecar(proc, port, home)
        started.append(sc)

        def ready():
            status, _, _ = http("GET", f"http://127.0.0.1:{port}/readyz", timeout=2)
            return status == 200

        wait_until(f"the sidecar ({name}) /readyz to answer 200", ready, timeout=ready_timeout,
                   proc=proc)
        return sc

    yield start
    for sc in started:
        sc.proc.stop()


# ---- failure reports ---------------------------------------------------------------------


def report(client: str, step: str, problem: str, *, broker: Broker | None = None,
           client_log: Path | None = None, sidecar: Sidecar | None = None,
           decisions: int = 8) -> str:
    """A failure message that says which client, which step, and what everyone logged."""
    parts = [f"[{client}] step '{step}' failed: {problem}"]
    if client_log is not None:
        parts.append(client_log_excerpt(client, client_log))
    if sidecar is not None:
        parts.append(f"--- sidecar log ({sidecar.proc.log}), last lines:\n{sidecar.proc.tail(15)}")
    if broker is not None:
        parts.append(decisions_excerpt("broker validator decisions", broker.decision_log(),
                                       decisions, ("decision", "reason", "detail", "principal",
                                                   "token_fp", "exp_skew")))
        parts.append(f"--- broker log ({broker.proc.log}), last lines:\n{broker.log_tail(25)}")
    return "\n".join(parts)


def java_client(module: str, main: str, args: list[str], log: Path, timeout: float,
                extra_jvm: list[str] | None = None, env: dict | None = None) -> tuple[int, str]:
    argv = [JAVA_BIN] + JVM_CLIENT_OPTS + (extra_jvm or []) + [
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        "-cp", classpath(module), main] + args
    return run_bounded(module, argv, log, timeout=timeout, env=env)


# ---- shared between scenarios ------------------------------------------------------------


@pytest.fixture(scope="session")
def produced_topics() -> dict:
    """Topics a scenario wrote and checked, for later scenarios that read them (Beam)."""
    return {}


NOTES: list[str] = []


def note(text: str) -> None:
    """A measured fact printed in the end-of-run summary (and kept in work/latest/notes.txt)."""
    NOTES.append(text)


def pytest_terminal_summary(terminalreporter):
    if NOTES:
        terminalreporter.section("interop measurements")
        for n in NOTES:
            terminalreporter.write_line(n)
        base = Path(os.environ.get("INTEROP_WORK", INTEROP / "work")) / "latest"
        try:
            (base / "notes.txt").write_text("\n".join(NOTES) + "\n")
        except OSError:
            pass


def java_round_trip(module: str, broker: Broker, sidecar: Sidecar, workdir: Path, topic: str,
                    count: int, *, allowed_urls: bool, extra_args: list[str] | None = None,
                    timeout: float = 240, label: str | None = None) -> dict:
    """Runs the Java round-trip program; fails with a readable report unless every record
    came back intact and the broker accepted only the expected principal's tokens."""
    label = label or f"kafka-clients ({module})"
    log = workdir / f"{topic}.client.log"
    jvm = []
    if allowed_urls:
        jvm.append(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={sidecar.url}")
    before = len(broker.decision_log())
    status, out = java_client(
        module, "interop.clients.RoundTrip",
        [f"bootstrap={broker.bootstrap}", f"tokenUrl={sidecar.url}", f"topic={topic}",
         f"count={count}", f"prefix={topic}", "timeoutSecs=120"] + (extra_args or []),
        log, timeout=timeout, extra_jvm=jvm)
    res = result_line(out)
    if res is None:
        pytest.fail(report(label, "start", f"no RESULT line (exit status {status})",
                           broker=broker, client_log=log, sidecar=sidecar))
    if status != 0 or not res.get("ok"):
        pytest.fail(report(label, res.get("step", "?"),
                           f"exit status {status}; errors: {res.get('errors')}",
                           broker=broker, client_log=log, sidecar=sidecar))
    res["decisions"] = broker.decision_log()[before:]
    return res

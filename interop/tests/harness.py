"""Process and file plumbing for the interop suite: free ports, bounded subprocesses, log tails.

Everything binds to 127.0.0.1 on ports the kernel hands out, every wait has a deadline, and
every process started here is stopped by the fixture that started it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

INTEROP = Path(__file__).resolve().parent.parent
ROOT = INTEROP.parent
JAVA = INTEROP / "java"


def hms(ts: float) -> str:
    """Epoch seconds as HH:MM:SS.mmm (UTC), as the clients' and the proxy's logs stamp lines."""
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, key: str) -> int:
    """One `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {key}")


def tail(path: Path | str, lines: int = 40) -> str:
    """The last `lines` lines of a log file (or a note that it is missing)."""
    p = Path(path)
    if not p.exists():
        return f"<{p} does not exist>"
    data = p.read_bytes()[-200_000:].decode("utf-8", "replace").splitlines()
    return "\n".join(data[-lines:])


def client_log_excerpt(client: str, log: Path, lines: int = 30) -> str:
    """A failure report's section of a client's log: its last lines, stack frames left out."""
    kept = [l for l in tail(log, 400).splitlines()
            if not l.startswith("\tat ") and not l.startswith("\t... ")]
    return (f"--- {client} log ({log}), last lines (stack frames left out):\n"
            + "\n".join(kept[-lines:]))


def decisions_excerpt(title: str, decisions: list[dict], last: int, keys: tuple) -> str:
    """A failure report's section of the validators' last `last` decisions, `keys` of each."""
    recent = decisions[-last:]
    return "--- {} (last {}):\n{}".format(title, len(recent), "\n".join(
        json.dumps({k: r.get(k) for k in keys}) for r in recent))


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def split_kafka_token(token: str) -> tuple[dict, dict, str, str, str]:
    """(header, claims, raw Google token, header text, claims text) of a three-part token."""
    parts = token.split(".")
    assert len(parts) == 3, f"token has {len(parts)} parts, want 3: {token[:80]}..."
    header_text = b64url_decode(parts[0]).decode()
    claims_text = b64url_decode(parts[1]).decode()
    raw = b64url_decode(parts[2]).decode()
    return json.loads(header_text), json.loads(claims_text), raw, header_text, claims_text


def make_kafka_token(raw: str, sub: str, exp: int | str, iat: int | str | None = None,
                     alg: str = "GOOG_OAUTH2_TOKEN", typ: str = "JWT",
                     third_part: str | None = None) -> str:
    """A token shaped like Google's handlers build it, for the broker-refusal scenarios.

    `exp`/`iat` may be strings (to test non-numeric claims); `third_part` replaces
    base64url(raw) verbatim (to test a third part that is not base64url).
    """
    header = json.dumps({"typ": typ, "alg": alg}, separators=(",", ":"))
    claims = json.dumps({"exp": exp, "iat": iat if iat is not None else int(time.time()),
                         "iss": "Google", "scope": "kafka", "sub": sub},
                        separators=(",", ":"))
    last = b64url(raw) if third_part is None else third_part
    return ".".join([b64url(header), b64url(claims), last])


def token_fingerprint(token: str) -> str:
    """What the broker validator logs as `presented_fp` for `token`: the first 12 hex digits
    of the SHA-256 of the exact token text."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one HTTP request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_json(method: str, url: str, payload=None, headers=None, timeout: float = 10.0):
    body = None
    hdrs = dict(headers or {})
    if payload is not None:
        body = json.dumps(payload).encode()
        hdrs.setdefault("Content-Type", "application/json")
    status, _, data = http(method, url, body, hdrs, timeout)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data.decode("utf-8", "replace")


class Proc:
    """A long-running child process whose stdout+stderr go to a log file.

    It is started in its own process group and stopped (SIGTERM, then SIGKILL after a grace
    period) by `stop()`, which fixtures always call.
    """

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None,
                 cwd: Path | None = None, stdout_pipe: bool = False):
        self.name = name
        self.argv = argv
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = open(log, "ab")
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if stdout_pipe else self._logf,
            stderr=self._logf,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        if self.popen.stdout:
            self.popen.stdout.close()
        self._logf.close()
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2, proc: Proc | None = None):
    """Polls `predicate` until it returns a truthy value; fails with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise AssertionError(
                f"{proc.name} exited with status {proc.popen.returncode} while waiting for {what}; "
                f"its log ({proc.log}) ends:\n{proc.tail()}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled predicate, keep the last reason
            last_exc = e
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f} s waiting for {what}"
    if last_exc is not None:
        msg += f" (last error: {last_exc!r})"
    if proc is not None:
        msg += f"; {proc.name} log ({proc.log}) ends:\n{proc.tail()}"
    raise AssertionError(msg)


def run_bounded(name: str, argv: list[str], log: Path, timeout: float, env: dict | None = None,
                cwd: Path | None = None) -> tuple[int, str]:
    """Runs a program to completion within `timeout` s; returns (exit status, stdout).

    stderr goes to `log` (stdout is appended there too). On time-out the whole process group
    is killed and the status is -9.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as logf:
        logf.write(f"$ {' '.join(argv)}\n".encode())
        logf.flush()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate(timeout=30)
            logf.write(f"\n[interop] {name} killed after {timeout:.0f} s\n".encode())
            text = out.decode("utf-8", "replace")
            logf.write(text.encode())
            return -9, text
        text = out.decode("utf-8", "replace")
        logf.write(text.encode())
        return p.returncode, text


def result_line(stdout: str, prefix: str = "RESULT ") -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(prefix):
            return json.loads(line[len(prefix):])
    return None


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSON-lines file another process appends to.

    A final line without its newline is a write still in progress and is left for the next
    read; any complete line that is not JSON is an error (a validator writing garbage must fail
    the test, not vanish from it).
    """
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    # The element after the last "\n": empty for a complete file, else the unfinished line.
    complete = lines[:-1]
    out = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"{path}:{number} is not JSON ({e}): {line[:200]!r}") from e
    return out



"""What the benchmarks measure and report with: the machine and its load, percentiles, the CPU
share of a server and of the load generator, the load generators themselves (``wrk``, or bare
keep-alive HTTP/1.1 on asyncio), the order of alternating rounds, setting accounts up through
the API, and the results file.

Imported as ``bench.common`` by the scripts in ``bench/`` (each puts the project root on
``sys.path``); ``bench.servers`` starts and stops what they measure.
"""

import asyncio
import json
import os
import platform
import re
import resource
import secrets
import subprocess
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"

T = TypeVar("T")

# --- the machine ----------------------------------------------------------------------------


def machine_note() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}"


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def print_machine() -> None:
    """The first line of every run: the machine, and how loaded it is before the run."""
    print(f"machine: {machine_note()}; {load_average()} before the run")


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """``bench/results/<name>-<UTC time>.json``: when, on what machine, the load average after
    the run, then ``figures``."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"at": stamp, "machine": machine_note(), "load_average_after": load_average(), **figures}
    path.write_text(json.dumps(payload, indent=2))
    return path


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def p50_p99(milliseconds: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": percentile(milliseconds, 0.5), "p99_ms": percentile(milliseconds, 0.99)}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def client_cpu_seconds() -> float:
    """CPU time of this process and of its finished children (wrk)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """How busy the server ``pid`` and this load generator (with its finished children) were
    from the meter's creation to ``shares()``, as shares of one CPU core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._server = process_cpu_seconds(pid)
        self._client = client_cpu_seconds()

    def shares(self, seconds: float) -> tuple[float, float]:
        """(server, client) CPU seconds per second over ``seconds``; the server's is 0.0 where
        its CPU time cannot be read."""
        server_after = process_cpu_seconds(self.pid)
        server = 0.0
        if self._server is not None and server_after is not None:
            server = (server_after - self._server) / seconds
        return server, (client_cpu_seconds() - self._client) / seconds


def in_turns(names: Sequence[str], rounds: int, *, rotate: bool = False) -> Iterator[tuple[int, str]]:
    """(round number, name) for ``rounds`` rounds over ``names``, so that none always runs first:
    the order is reversed every other round, or with ``rotate`` shifted by one every round."""
    for round_no in range(rounds):
        if rotate:
            shift = round_no % len(names)
            order = [*names[shift:], *names[:shift]]
        else:
            order = list(names) if round_no % 2 == 0 else list(reversed(names))
        for name in order:
            yield round_no, name


# --- load -----------------------------------------------------------------------------------


@dataclass
class Measure:
    """One load run against one URL."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float = 0.0  # share of one core the server used during the round
    client_cpu: float = 0.0  # share of one core the load generator used


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    pid: int


def run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` on uvloop when it is installed (as the servers do), else on asyncio."""
    try:
        import uvloop  # installed with uvicorn[standard]
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def drive_asyncio(
    url: str, headers: dict[str, str], requests: int | None, concurrency: int, *, seconds: float | None = None
) -> Measure:
    """``concurrency`` keep-alive connections sending GETs one after the other: ``requests`` in
    all, or for ``seconds`` when ``requests`` is ``None`` (answers too slow for a fixed count).

    Bare HTTP/1.1 on asyncio streams: the responses of the servers measured carry a Content-Length."""
    if (requests is None) == (seconds is None):
        raise ValueError("give either requests or seconds")
    parts = urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.perf_counter() + (seconds or 0.0)

    def more() -> bool:
        nonlocal remaining
        if remaining is None:
            return time.perf_counter() < deadline
        remaining -= 1
        return remaining >= 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while more():
                started = time.perf_counter()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:
                    raise RuntimeError(f"response without Content-Length: {head!r}")
                await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - started)
                errors += head[9:12] != b"200"
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Measure(
        requests=len(latencies),
        errors=errors,
        seconds=elapsed,
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def run_async_client(url: str, headers: dict[str, str], requests: int, concurrency: int) -> Measure:
    return run_fast(drive_asyncio(url, headers, requests, concurrency))


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise RuntimeError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]


def drive_wrk(url: str, headers: dict[str, str], seconds: int, concurrency: int) -> Measure:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m))", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)$", out, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)$", out, re.MULTILINE)
    if not (total and rps and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    elapsed = _wrk_ms(total.group(2)) / 1000
    return Measure(
        requests=int(total.group(1)),
        errors=errors,
        seconds=elapsed,
        rps=float(rps.group(1)),
        p50_ms=_wrk_ms(p50.group(1)),
        p99_ms=_wrk_ms(p99.group(1)),
    )


# --- accounts through the API ---------------------------------------------------------------


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON body of ``response``, which must have answered ``status``."""
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


def log_in(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of a fresh login."""
    login = expect(http.post("/api/auth/login", json={"email": email, "password": password}), 200)
    return {"Authorization": f"Bearer {login['accessToken']}"}


def sign_up(
    http: httpx.Client, persona: str, password: str, *, email: str = "", name: str = ""
) -> dict[str, str]:
    """Signs a ``persona`` up (a random ``@bench.example`` address unless ``email`` is given) and
    logs in: the ``Authorization`` header."""
    email = email or f"bench-{persona}-{secrets.token_hex(4)}@bench.example"
    body = {"email": email, "password": password, "name": name or f"Bench {persona}", "persona": persona}
    expect(http.post("/api/users", json=body), 201)
    return log_in(http, email, password)

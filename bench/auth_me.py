"""Login latency and GET /api/auth/me throughput, against a no-op FastAPI route in the same run.

The real API runs as ``bazaar serve`` (uvicorn, one worker) on a fresh database ``bazaar_bench``
on the machine's Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379, keys under
``bazaar-bench:``; the in-process fallback when Redis does not answer). The baseline is
``bench/noop_app.py`` under the same uvicorn options. The script signs a user up, logs in a
bounded number of times, then drives both routes in alternating rounds (``wrk`` when it is
installed, else a minimal keep-alive HTTP/1.1 client on asyncio: httpx itself saturates long
before the no-op server does) and prints the medians and the ratio me/noop. Each round also
reports how busy the server and the client were (share of one CPU core), so a client-bound or
noisy run shows. Target: ratio >= 0.5. Everything listens on 127.0.0.1 only; both servers, the
database and the Redis keys are removed at the end.

    make bench                      # or: .venv/bin/python bench/auth_me.py --help
"""

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.servers``.
from bench.servers import (  # noqa: E402
    HOST,
    REDIS_URL,
    Server,
    api_env,
    clean_redis,
    create_database,
    drop_database,
    free_port,
    reachable,
    start,
    stop,
    wait_ready,
)

DATABASE = "bazaar_bench"
REDIS_PREFIX = "bazaar-bench:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
TARGET_RATIO = 0.5


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=20, help="sequential logins timed (default 20)")
    parser.add_argument(
        "--concurrent-logins",
        type=int,
        default=16,
        help="logins sent 4 at a time, for throughput (default 16)",
    )
    parser.add_argument("--requests", type=int, default=10000, help="requests per round, asyncio client")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round, wrk client (default 5)")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per route, alternating (default 3)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    for name in ("logins", "concurrent_logins", "requests", "seconds", "concurrency", "rounds"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk), or use --client asyncio")
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    return args


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sign_up_and_log_in(api: str, logins: int, concurrent: int) -> tuple[str, dict[str, float]]:
    """Sign a builder up through the API, time sequential logins, then logins 4 at a time."""
    email = f"bench-{secrets.token_hex(4)}@bench.example"
    body = {"email": email, "password": PASSWORD, "name": "Bench User", "persona": "builder"}
    with httpx.Client(base_url=api, timeout=30) as http:
        created = http.post("/api/users", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"sign-up failed: {created.status_code} {created.text}")
        latencies, token = [], ""
        for _ in range(logins):
            started = time.perf_counter()
            response = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"login failed: {response.status_code} {response.text}")
            token = response.json()["accessToken"]

    async def parallel_logins() -> float:
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            gate = asyncio.Semaphore(4)

            async def one() -> None:
                async with gate:
                    response = await client.post(
                        "/api/auth/login", json={"email": email, "password": PASSWORD}
                    )
                    if response.status_code != 200:
                        raise RuntimeError(f"login failed: {response.status_code} {response.text}")

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrent)))
            return concurrent / (time.perf_counter() - started)

    login_stats = {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "sequential_per_s": logins / sum(latencies),
        "concurrent4_per_s": asyncio.run(parallel_logins()),
    }
    return token, login_stats


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
    try:
        import uvloop  # installed with uvicorn[standard]; the servers use it too
    except ImportError:
        return asyncio.run(drive_asyncio(url, headers, requests, concurrency))
    return uvloop.run(drive_asyncio(url, headers, requests, concurrency))


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


def drive(args: argparse.Namespace, target: Target, *, warmup: bool = False) -> Measure:
    server_before, client_before = process_cpu_seconds(target.pid), client_cpu_seconds()
    if args.client == "wrk":
        measure = drive_wrk(target.url, target.headers, 1 if warmup else args.seconds, args.concurrency)
    else:
        requests = max(args.requests // 10, 100) if warmup else args.requests
        measure = run_async_client(target.url, target.headers, requests, args.concurrency)
    server_after = process_cpu_seconds(target.pid)
    if server_before is not None and server_after is not None:
        measure.server_cpu = (server_after - server_before) / measure.seconds
    measure.client_cpu = (client_cpu_seconds() - client_before) / measure.seconds
    return measure


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


def main() -> int:
    args = parse_args()
    if not reachable(5432):
        print(
            f"Postgres does not answer on {HOST}:5432; start it first (see bench/README.md).", file=sys.stderr
        )
        return 2
    use_redis = reachable(6379)
    print(f"machine: {machine_note()}; {load_average()} before the run")
    print(f"client: {args.client}, concurrency {args.concurrency}, {args.rounds} rounds per route")
    print(f"redis: {REDIS_URL if use_redis else 'not answering: in-process fallback'}")

    database_url = create_database(DATABASE)
    if use_redis:
        clean_redis(REDIS_PREFIX)
    env = api_env(database_url, REDIS_PREFIX, use_redis=use_redis)
    api_port, noop_port = free_port(), free_port()
    venv_bin = ROOT / ".venv" / "bin"
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-") as logs:
        try:
            servers.append(
                start(
                    "api",
                    [str(venv_bin / "bazaar"), "serve", "--port", str(api_port), "--workers", "1"],
                    env,
                    Path(logs),
                )
            )
            servers.append(
                start(
                    "noop",
                    [str(venv_bin / "python"), "-m", "bench.noop_app", "--port", str(noop_port)],
                    env,
                    Path(logs),
                )
            )
            api, noop = f"http://{HOST}:{api_port}", f"http://{HOST}:{noop_port}"
            wait_ready(servers[0], f"{api}/healthz")
            wait_ready(servers[1], f"{noop}/noop")

            token, login = sign_up_and_log_in(api, args.logins, args.concurrent_logins)
            print(
                f"login: p50 {login['p50_ms']:.1f} ms, p95 {login['p95_ms']:.1f} ms over {args.logins} "
                f"sequential logins ({login['sequential_per_s']:.1f}/s); "
                f"{login['concurrent4_per_s']:.1f}/s with 4 at a time"
            )

            targets = {
                "me": Target(
                    f"{api}/api/auth/me", {"Authorization": f"Bearer {token}"}, servers[0].process.pid
                ),
                "noop": Target(f"{noop}/noop", {}, servers[1].process.pid),
            }
            for target in targets.values():
                check = httpx.get(target.url, headers=target.headers, timeout=10)
                if check.status_code != 200:
                    raise RuntimeError(f"{target.url} answered {check.status_code}: {check.text}")
                drive(args, target, warmup=True)

            runs: dict[str, list[Measure]] = {"me": [], "noop": []}
            for round_no in range(args.rounds):
                order = ["me", "noop"] if round_no % 2 == 0 else ["noop", "me"]
                for name in order:
                    measure = drive(args, targets[name])
                    if measure.errors:
                        raise RuntimeError(f"{name}: {measure.errors} failed requests of {measure.requests}")
                    runs[name].append(measure)
                    print(
                        f"round {round_no + 1} {name:<4} {measure.rps:>8.0f} req/s  "
                        f"p50 {measure.p50_ms:6.2f} ms  p99 {measure.p99_ms:6.2f} ms  "
                        f"({measure.requests} requests in {measure.seconds:.2f} s; "
                        f"cpu server {measure.server_cpu:.2f} client {measure.client_cpu:.2f})"
                    )
            for server in servers:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} died during the run:\n{server.tail()}")
        finally:
            for server in servers:
                stop(server)
            drop_database(DATABASE)
            if use_redis:
                clean_redis(REDIS_PREFIX)

    me_rps = statistics.median(m.rps for m in runs["me"])
    noop_rps = statistics.median(m.rps for m in runs["noop"])
    ratio = me_rps / noop_rps
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print()
    print(f"GET /api/auth/me  {me_rps:8.0f} req/s (median of {args.rounds})")
    print(f"GET /noop         {noop_rps:8.0f} req/s (median of {args.rounds})")
    print(f"ratio me/noop     {ratio:8.2f}  ({verdict} the target of {TARGET_RATIO})")
    print(f"{load_average()} after the run")
    noop_client_cpu = statistics.median(m.client_cpu for m in runs["noop"])
    if noop_client_cpu > 0.9:
        print(
            f"warning: the load generator used {noop_client_cpu:.2f} of a core against /noop: the baseline "
            "may be client-bound, which overstates the ratio"
        )

    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"auth_me-{stamp}.json").write_text(
        json.dumps(
            {
                "at": stamp,
                "machine": machine_note(),
                "load_average_after": load_average(),
                "client": args.client,
                "concurrency": args.concurrency,
                "redis": use_redis,
                "login": login,
                "me": [asdict(m) for m in runs["me"]],
                "noop": [asdict(m) for m in runs["noop"]],
                "me_rps": me_rps,
                "noop_rps": noop_rps,
                "ratio": ratio,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

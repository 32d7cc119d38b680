"""What the benchmarks share: the machine's Postgres and Redis on 127.0.0.1, a fresh migrated
database per run, the Redis keys under a prefix, and servers (``bazaar serve`` and others)
started as subprocesses on a free port and stopped at the end.

The benchmarks run as scripts (``.venv/bin/python bench/<script>.py``); each puts the project
root on ``sys.path`` and imports this module as ``bench.servers``.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
BAZAAR = str(BIN / "bazaar")
PYTHON = str(BIN / "python")

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
REDIS_URL = f"redis://{HOST}:6379/0"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path
    port: int = 0  # where it listens, if it does
    ready_path: str = ""  # answers 200 once it serves; empty: accepting connections is enough
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}" if self.port else ""

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def services_answer(*, redis_required: bool = False) -> bool:
    """Whether Postgres (and, when ``redis_required``, Redis) answers on 127.0.0.1; says what
    does not on stderr."""
    if redis_required and not (reachable(5432) and reachable(6379)):
        print(f"Postgres ({HOST}:5432) and Redis ({HOST}:6379) must both answer.", file=sys.stderr)
        return False
    if not reachable(5432):
        print(
            f"Postgres does not answer on {HOST}:5432; start it first (see bench/README.md).", file=sys.stderr
        )
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def create_database(database: str) -> str:
    """A fresh ``database`` (dropped first if left over), migrated to head; returns its URL."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from app.core.migrate import upgrade_database

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    upgrade_database(url)
    return url


def drop_database(database: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def clean_redis(prefix: str) -> None:
    """Delete the Redis keys under ``prefix``."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start(
    name: str,
    command: list[str],
    env: dict[str, str],
    logs: Path,
    *,
    port: int = 0,
    ready_path: str = "",
    stop_signal: int = signal.SIGTERM,
    stop_timeout: float = 15,
) -> Server:
    """Runs ``command`` from the project root, its output in ``logs/<name>.log``; ``stop()``
    sends it ``stop_signal`` and kills it after ``stop_timeout`` seconds. ``port`` and
    ``ready_path``: where it listens, for ``wait_ready``."""
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server(name, process, log, log_path, port, ready_path, stop_signal, stop_timeout)


def start_api(name: str, env: dict[str, str], logs: Path, *, workers: int | None = 1) -> Server:
    """``bazaar serve`` on a free port (``--workers`` unless ``workers`` is None), ready once
    ``/healthz`` answers."""
    port = free_port()
    command = [BAZAAR, "serve", "--port", str(port), *(["--workers", str(workers)] if workers else [])]
    return start(name, command, env, logs, port=port, ready_path="/healthz")


def start_module(
    name: str, module: str, args: list[str], env: dict[str, str], logs: Path, *, ready_path: str = ""
) -> Server:
    """``python -m module --port <free port> *args``, ready once ``ready_path`` answers 200 (or,
    without one, once the port accepts connections)."""
    port = free_port()
    command = [PYTHON, "-m", module, "--port", str(port), *args]
    return start(name, command, env, logs, port=port, ready_path=ready_path)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(server.stop_signal)
        try:
            server.process.wait(timeout=server.stop_timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)
    server.log.close()


@contextmanager
def stopped_at_exit() -> Iterator[list[Server]]:
    """A list for the servers a run starts: each is stopped when the block ends, also on failure."""
    servers: list[Server] = []
    try:
        yield servers
    finally:
        for server in servers:
            stop(server)


def wait_ready(server: Server, url: str | None = None, timeout: float = 60) -> None:
    """Until ``url`` (by default the server's ``ready_path``) answers 200, or, with neither, the
    server's port accepts connections; fails at once if the server exits."""
    url = url or (server.url + server.ready_path if server.ready_path else "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.tail()}")
        if not url:
            if not server.port:
                raise ValueError(f"{server.name}: nothing to wait for (no ready URL, no port)")
            if reachable(server.port):
                return
        else:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2 if url else 0.1)
    raise RuntimeError(
        f"{server.name} did not answer {url or server.url} within {timeout:.0f} s:\n{server.tail()}"
    )


def ensure_running(servers: list[Server]) -> None:
    """Fails the run if one of ``servers`` has exited."""
    for server in servers:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} died during the run:\n{server.tail()}")


def api_env(database_url: str, redis_prefix: str, *, use_redis: bool) -> dict[str, str]:
    """Environment of a benchmarked API: its own database and Redis prefix, a fresh secret, login
    limits out of the way, quiet logs, no demo data, the local payment provider."""
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATABASE_URL": database_url,
        "REDIS_PREFIX": redis_prefix,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "LOGIN_RATE_LIMIT_ACCOUNT": "100000/minute",
        "LOGIN_RATE_LIMIT_IP": "100000/minute",
        "LOG_LEVEL": "WARNING",
        "SEED_DEMO_ON_EMPTY": "false",
        "PAYMENT_PROVIDER": "local",
        "LISTING_REVIEW_REQUIRED": "false",
    }
    if use_redis:
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    return env


@contextmanager
def bench_database(database: str, redis_prefix: str, *, use_redis: bool) -> Iterator[str]:
    """A fresh migrated ``database`` (its URL) and no Redis keys under ``redis_prefix`` for the
    block; the database is dropped and the keys deleted when it ends, also on failure."""
    try:
        url = create_database(database)
        if use_redis:
            clean_redis(redis_prefix)
        yield url
    finally:
        drop_database(database)
        if use_redis:
            clean_redis(redis_prefix)


def create_admin(env: dict[str, str], email: str, password: str) -> None:
    """A super admin, made with ``bazaar create-admin`` against the database of ``env``."""
    subprocess.run(
        [BAZAAR, "create-admin", "--email", email, "--password", password],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )

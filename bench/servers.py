"""What the benchmarks share: the machine's Postgres and Redis on 127.0.0.1, a fresh migrated
database per run, the Redis keys under a prefix, and servers started as subprocesses on a free
port and stopped at the end.

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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
REDIS_URL = f"redis://{HOST}:6379/0"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


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


def start(name: str, command: list[str], env: dict[str, str], logs: Path) -> Server:
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server(name, process, log, log_path)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)
    server.log.close()


def wait_ready(server: Server, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not answer {url} within {timeout:.0f} s:\n{server.tail()}")


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

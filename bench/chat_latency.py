"""The platform's added latency to the first token of a chat answer.

Time to the first streamed text through ``POST /api/projects/{id}/chat`` (Server-Sent Events,
the real API as ``bazaar serve``, a project on an ``openai_compatible`` model that points at the
fake LLM server) against the same fake's ``/v1/chat/completions`` called directly, in the same
run, alternating one request of each so the machine's speed and load divide out. The platform's
path adds authentication, the project lookup, storing the question (a commit), knowledge
retrieval, the prompt, and its own SSE framing; the answer is stored after the stream.

What it does:

1. creates a fresh database ``bazaar_bench_chat`` on the machine's Postgres (127.0.0.1:5432) and
   migrates it; uses Redis on 127.0.0.1:6379 when it answers (keys under ``bazaar-bench-chat:``);
2. starts the fake LLM (``python -m tests.fakes.llm_server``) and ``bazaar serve --workers 1``
   as subprocesses on free ports;
3. creates an administrator (``bazaar create-admin``), who configures the fake as a provider and
   a model; a builder signs up and creates a project on that model;
4. warms both paths up, then times ``--requests`` sequential requests per path on one keep-alive
   connection each, alternating: the time from sending the request to the first text delta
   (the platform's ``delta`` event, the fake's first non-empty ``content`` chunk), reading every
   stream to its end before the next request;
5. prints p50/p99 of both and of the difference; writes ``bench/results/chat_latency-<UTC>.json``;
6. stops both servers, drops the database and deletes its Redis keys, also on failure.

    .venv/bin/python bench/chat_latency.py --help
"""

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_me import load_average, machine_note, percentile  # noqa: E402
from bench.servers import (  # noqa: E402
    HOST,
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

DATABASE = "bazaar_bench_chat"
REDIS_PREFIX = "bazaar-bench-chat:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
FAKE_KEY = "sk-fake-llm-key-0123456789"
TARGET_ADDED_P50_MS = 15.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="Timed requests per path (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="Untimed requests per path first (default 20)")
    return parser.parse_args()


def configure(api: str, env: dict[str, str], fake: str) -> tuple[str, dict[str, str]]:
    """Admin configures the fake as a model; a builder creates a project on it. Returns the
    project id and the builder's headers."""
    admin_email = f"admin-{secrets.token_hex(4)}@bench.example"
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "bazaar"),
            "create-admin",
            "--email",
            admin_email,
            "--password",
            PASSWORD,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    with httpx.Client(base_url=api, timeout=30) as http:

        def ok(response: httpx.Response) -> Any:
            if response.status_code >= 300:
                raise RuntimeError(f"{response.request.method} {response.request.url}: {response.text}")
            return response.json()

        admin = ok(http.post("/api/auth/login", json={"email": admin_email, "password": PASSWORD}))
        as_admin = {"Authorization": f"Bearer {admin['accessToken']}"}
        provider = ok(
            http.post(
                "/api/llm/providers",
                json={
                    "name": "fake",
                    "kind": "openai_compatible",
                    "baseUrl": f"{fake}/v1",
                    "apiKey": FAKE_KEY,
                },
                headers=as_admin,
            )
        )
        ok(
            http.post(
                "/api/llm/models",
                json={"key": "fake/gpt", "providerId": provider["id"], "model": "gpt"},
                headers=as_admin,
            )
        )
        email = f"builder-{secrets.token_hex(4)}@bench.example"
        ok(
            http.post(
                "/api/users", json={"email": email, "password": PASSWORD, "name": "B", "persona": "builder"}
            )
        )
        builder = ok(http.post("/api/auth/login", json={"email": email, "password": PASSWORD}))
        headers = {"Authorization": f"Bearer {builder['accessToken']}"}
        project = ok(
            http.post(
                "/api/projects",
                json={"name": "Bench", "prompt": "You are a benchmark.", "llm": "fake/gpt"},
                headers=headers,
            )
        )
    return project["id"], headers


async def first_delta_via_platform(client: httpx.AsyncClient, project: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    first: float | None = None
    async with client.stream(
        "POST",
        f"/api/projects/{project}/chat",
        json={"message": "How fast is the first token?"},
        headers={**headers, "Accept": "text/event-stream"},
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"chat answered {response.status_code}: {(await response.aread())[:300]!r}")
        last_event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                last_event = line[7:]
                if last_event == "delta" and first is None:
                    first = time.perf_counter() - started
                elif last_event == "error":
                    raise RuntimeError("the chat stream reported an error")
    if first is None:
        raise RuntimeError("the chat stream had no delta")
    return first


async def first_delta_direct(client: httpx.AsyncClient) -> float:
    body = {
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": "How fast is the first token?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {FAKE_KEY}"}
    ) as response:
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the fake's stream had no content")
    return first


async def measure(
    api: str, fake: str, project: str, headers: dict[str, str], requests: int, warmup: int
) -> tuple[list[float], list[float]]:
    platform: list[float] = []
    direct: list[float] = []
    async with (
        httpx.AsyncClient(base_url=api, timeout=30) as api_client,
        httpx.AsyncClient(base_url=fake, timeout=30) as fake_client,
    ):
        for n in range(warmup + requests):
            # Alternate which goes first, so neither always follows the other.
            if n % 2 == 0:
                p = await first_delta_via_platform(api_client, project, headers)
                d = await first_delta_direct(fake_client)
            else:
                d = await first_delta_direct(fake_client)
                p = await first_delta_via_platform(api_client, project, headers)
            if n >= warmup:
                platform.append(p * 1000)
                direct.append(d * 1000)
    return platform, direct


def main() -> int:
    args = parse_args()
    if not reachable(5432):
        print(f"Postgres does not answer on {HOST}:5432; start it first.", file=sys.stderr)
        return 2
    use_redis = reachable(6379)
    print(f"machine: {machine_note()}; {load_average()} before the run")
    database_url = create_database(DATABASE)
    if use_redis:
        clean_redis(REDIS_PREFIX)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-chat-") as scratch:
        env = {
            **api_env(database_url, REDIS_PREFIX, use_redis=use_redis),
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "VAR_DIR": str(Path(scratch) / "var"),
        }
        api_port, fake_port = free_port(), free_port()
        python = str(ROOT / ".venv" / "bin" / "python")
        try:
            servers.append(
                start(
                    "fake-llm",
                    [python, "-m", "tests.fakes.llm_server", "--port", str(fake_port), "--api-key", FAKE_KEY],
                    env,
                    Path(scratch),
                )
            )
            servers.append(
                start(
                    "api",
                    [
                        str(ROOT / ".venv" / "bin" / "bazaar"),
                        "serve",
                        "--port",
                        str(api_port),
                        "--workers",
                        "1",
                    ],
                    env,
                    Path(scratch),
                )
            )
            api, fake = f"http://{HOST}:{api_port}", f"http://{HOST}:{fake_port}"
            wait_ready(servers[1], f"{api}/healthz")
            deadline = time.monotonic() + 30
            while not reachable(fake_port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the fake LLM did not start:\n{servers[0].tail()}")
                time.sleep(0.1)
            project, headers = configure(api, env, fake)
            platform, direct = asyncio.run(measure(api, fake, project, headers, args.requests, args.warmup))
        finally:
            for server in servers:
                stop(server)
            drop_database(DATABASE)
            if use_redis:
                clean_redis(REDIS_PREFIX)

    added = [p - d for p, d in zip(platform, direct, strict=True)]
    figures = {
        "platform": {"p50_ms": percentile(platform, 0.5), "p99_ms": percentile(platform, 0.99)},
        "direct": {"p50_ms": percentile(direct, 0.5), "p99_ms": percentile(direct, 0.99)},
        "added": {"p50_ms": percentile(added, 0.5), "p99_ms": percentile(added, 0.99)},
    }
    print(f"requests: {args.requests} per path (after {args.warmup} warm-up), sequential, alternating")
    print(f"redis: {'yes' if use_redis else 'no (in-process fallback)'}")
    for name, label in (("direct", "fake LLM directly"), ("platform", "POST /api/projects/{id}/chat")):
        f = figures[name]
        print(f"{label:<30} first delta p50 {f['p50_ms']:7.2f} ms  p99 {f['p99_ms']:7.2f} ms")
    ratio = statistics.median(platform) / statistics.median(direct)
    verdict = "meets" if figures["added"]["p50_ms"] < TARGET_ADDED_P50_MS else "MISSES"
    print(
        f"{'added by the platform':<30} p50 {figures['added']['p50_ms']:7.2f} ms  "
        f"p99 {figures['added']['p99_ms']:7.2f} ms  "
        f"({verdict} the target of < {TARGET_ADDED_P50_MS:g} ms p50; "
        f"median ratio platform/direct {ratio:.1f}x)"
    )
    print(f"{load_average()} after the run")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"chat_latency-{stamp}.json").write_text(
        json.dumps(
            {
                "at": stamp,
                "machine": machine_note(),
                "redis": use_redis,
                "requests": args.requests,
                **figures,
                "median_ratio": ratio,
                "load_average_after": load_average(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

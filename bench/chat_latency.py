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
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from bench.common import (  # noqa: E402
    expect,
    in_turns,
    load_average,
    log_in,
    p50_p99,
    print_machine,
    sign_up,
    write_results,
)
from bench.servers import (  # noqa: E402
    api_env,
    bench_database,
    create_admin,
    reachable,
    services_answer,
    start_api,
    start_module,
    stopped_at_exit,
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
    create_admin(env, admin_email, PASSWORD)
    with httpx.Client(base_url=api, timeout=30) as http:
        as_admin = log_in(http, admin_email, PASSWORD)
        body = {"name": "fake", "kind": "openai_compatible", "baseUrl": f"{fake}/v1", "apiKey": FAKE_KEY}
        provider = expect(http.post("/api/llm/providers", json=body, headers=as_admin), 201)
        body = {"key": "fake/gpt", "providerId": provider["id"], "model": "gpt"}
        expect(http.post("/api/llm/models", json=body, headers=as_admin), 201)
        headers = sign_up(http, "builder", PASSWORD, name="B")
        body = {"name": "Bench", "prompt": "You are a benchmark.", "llm": "fake/gpt"}
        project = expect(http.post("/api/projects", json=body, headers=headers), 201)
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
    """Milliseconds to the first delta through the platform and directly, one request of each
    in turn (alternating which goes first), after ``warmup`` untimed pairs."""
    timings: dict[str, list[float]] = {"platform": [], "direct": []}
    async with (
        httpx.AsyncClient(base_url=api, timeout=30) as api_client,
        httpx.AsyncClient(base_url=fake, timeout=30) as fake_client,
    ):
        for n, path in in_turns(list(timings), warmup + requests):
            if path == "platform":
                seconds = await first_delta_via_platform(api_client, project, headers)
            else:
                seconds = await first_delta_direct(fake_client)
            if n >= warmup:
                timings[path].append(seconds * 1000)
    return timings["platform"], timings["direct"]


def main() -> int:
    args = parse_args()
    if not services_answer():
        return 2
    use_redis = reachable(6379)
    print_machine()
    with (
        bench_database(DATABASE, REDIS_PREFIX, use_redis=use_redis) as database_url,
        tempfile.TemporaryDirectory(prefix="bazaar-bench-chat-") as scratch,
        stopped_at_exit() as servers,
    ):
        env = {
            **api_env(database_url, REDIS_PREFIX, use_redis=use_redis),
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "VAR_DIR": str(Path(scratch) / "var"),
        }
        fake = start_module("fake-llm", "tests.fakes.llm_server", ["--api-key", FAKE_KEY], env, Path(scratch))
        servers.append(fake)
        api = start_api("api", env, Path(scratch))
        servers.append(api)
        wait_ready(api)
        wait_ready(fake, timeout=30)
        project, headers = configure(api.url, env, fake.url)
        platform, direct = asyncio.run(
            measure(api.url, fake.url, project, headers, args.requests, args.warmup)
        )

    added = [p - d for p, d in zip(platform, direct, strict=True)]
    figures = {"platform": p50_p99(platform), "direct": p50_p99(direct), "added": p50_p99(added)}
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
    write_results(
        "chat_latency",
        {"redis": use_redis, "requests": args.requests, **figures, "median_ratio": ratio},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

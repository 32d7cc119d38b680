"""Knowledge files: retrieval latency over 10k chunks, and upload + processing throughput.

Runs in one process against a fresh database ``bazaar_bench_files`` on the machine's Postgres
(127.0.0.1:5432), dropped at the end. The app is driven in-process through httpx's ASGI
transport (no HTTP server in the way), and the real procrastinate worker processes the jobs.

1. **retrieval**: one project whose ready files hold ``--chunks`` chunks (10,000 by default) of
   synthetic prose; ``--queries`` natural-language questions through ``retrieve`` (top 4),
   sequentially, after a ``VACUUM ANALYZE`` (what autovacuum does after the bulk insert). Words
   follow a Zipf-like law over a 3,000-word lexicon, so common words match many chunks and rare
   ones few. Baseline in the same run and on the same connection pool:
   ``SELECT 1`` round trips. Reported: p50/p99 of each and their ratio.
2. **upload + process**: ``--files`` Markdown files of ``--file-kb`` KiB each uploaded through
   ``POST /api/files/upload`` (streamed, sniffed, hashed, stored under a temporary folder), then
   processed by the worker (extract, chunk, index). Baseline in the same run: writing the same
   bytes to files in the same folder (write + fsync + rename, what the local storage does).
   Reported: files/s and MB/s of each and their ratio.

    .venv/bin/python bench/files.py --help
"""

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import load_average, machine_note, percentile  # noqa: E402
from bench.servers import create_database, drop_database, reachable  # noqa: E402

DATABASE = "bazaar_bench_files"
VOCABULARY = (
    "kayak paddle hull warranty refund delivery freight skeg rudder bulkhead hatch seat cockpit "
    "polyethylene carbon touring fishing recreational storage sunlight rinse salt water lake river "
    "dealer order stock webhook signature sandbox key invoice price colour lesson demo shop "
    "harbour weight length capacity buoyancy pump whistle route return exchange cleaning fee"
).split()
FILLER = "the a of to and in for with on is are can be your our each every".split()
QUESTIONS = [
    "How long is the warranty on a polyethylene hull?",
    "What is the refund delivery fee for a returned kayak?",
    "How should I rinse the hatch after salt water?",
    "Which paddle suits a fishing kayak?",
    "How do dealers check stock with the sandbox key?",
    "What does a lesson at the harbour shop cost?",
    "How much weight can the touring kayak carry?",
    "Where is the webhook signature sent?",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in the searched project")
    parser.add_argument("--queries", type=int, default=400, help="retrieval calls measured")
    parser.add_argument("--files", type=int, default=40, help="files uploaded and processed")
    parser.add_argument("--file-kb", type=int, default=256, help="size of each uploaded file, KiB")
    return parser.parse_args()


def _lexicon() -> tuple[list[str], list[float]]:
    """The benchmark's words with Zipf-like frequencies: the domain words above plus 3,000 made-up
    ones (so a chunk holds a realistic share of the vocabulary, not all of it)."""
    rng = random.Random(3)
    syllables = "ka lo mi ne su ra te vo pa di gu fe ho ji be".split()
    made_up = {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(3500)}
    words = list(VOCABULARY)
    rng.shuffle(words)
    words = [*words[:20], *sorted(made_up - set(VOCABULARY))[:3000], *words[20:]]
    rng.shuffle(words)
    return words, list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))


LEXICON, CUMULATIVE_WEIGHTS = _lexicon()


def sentence(rng: random.Random) -> str:
    length = rng.randint(8, 18)
    content = rng.choices(LEXICON, cum_weights=CUMULATIVE_WEIGHTS, k=length)
    words = [content[i] if rng.random() < 0.5 else rng.choice(FILLER) for i in range(length)]
    return " ".join(words).capitalize() + "."


def prose(rng: random.Random, chars: int) -> str:
    paragraphs, size = [], 0
    while size < chars:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:chars]


async def timed(calls: int, call: object) -> list[float]:
    durations = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        durations.append((time.perf_counter() - started) * 1000)
    return durations


async def bench_retrieval(
    args: argparse.Namespace, database_url: str, project_id: UUID, owner_id: UUID
) -> None:
    import psycopg
    from sqlalchemy import text

    from app.core.db import commit, sessionmaker
    from app.files.repository import file_repository
    from app.files.retrieval import retrieve
    from app.models import FileStatus, KnowledgeFile
    from app.worker.queue import libpq_url

    rng = random.Random(7)
    per_file = 500
    async with sessionmaker()() as db:
        for index in range(0, args.chunks, per_file):
            file = KnowledgeFile(
                project_id=project_id,
                uploader_id=owner_id,
                name=f"synthetic-{index // per_file}.md",
                kind="md",
                media_type="text/markdown; charset=utf-8",
                size=0,
                sha256="0" * 64,
                storage_key=f"bench/{index}",
                status=FileStatus.READY,
                chunk_count=min(per_file, args.chunks - index),
                char_count=0,
            )
            db.add(file)
            await db.flush()
            chunks = [prose(rng, 1000) for _ in range(file.chunk_count)]
            await file_repository.replace_chunks(db, file, chunks)
        await commit(db)
    # What autovacuum does after this many inserts: statistics, the visibility map, and the GIN
    # index's pending list merged (a search reads that list whole until then).
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE knowledge_chunks")
        conn.execute("VACUUM ANALYZE files")

    async def one_retrieval() -> None:
        async with sessionmaker()() as db:
            found = await retrieve(db, project_id, rng.choice(QUESTIONS), limit=4)
            assert found, "every benchmark question matches something"

    async def one_select() -> None:
        async with sessionmaker()() as db:
            await db.execute(text("SELECT 1"))

    await timed(20, one_retrieval)  # warm up the pool and the caches
    await timed(20, one_select)
    retrieval = await timed(args.queries, one_retrieval)
    select_one = await timed(args.queries, one_select)
    r50, r99 = statistics.median(retrieval), percentile(retrieval, 0.99)
    s50, s99 = statistics.median(select_one), percentile(select_one, 0.99)
    print(f"retrieval over {args.chunks:,} chunks, {args.queries} questions, top 4")
    print(f"  retrieve    p50 {r50:7.2f} ms   p99 {r99:7.2f} ms")
    print(f"  SELECT 1    p50 {s50:7.2f} ms   p99 {s99:7.2f} ms")
    print(f"  ratio       p50 {r50 / s50:7.1f} x   p99 {r99 / s99:7.1f} x")


async def bench_upload(args: argparse.Namespace, database_url: str, folder: Path) -> None:
    import httpx
    from procrastinate import PsycopgConnector

    from app.core.config import Settings
    from app.main import create_app
    from app.worker.queue import libpq_url, queue
    from tests.factories import create_project, signed_in

    rng = random.Random(11)
    documents = [prose(rng, args.file_kb * 1024).encode() for _ in range(args.files)]
    total_mb = sum(len(d) for d in documents) / 1e6

    disk = folder / "baseline"
    disk.mkdir()
    started = time.perf_counter()
    for index, content in enumerate(documents):
        partial = disk / f".{index}.partial"
        with partial.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(disk / f"{index}.md")
    baseline = time.perf_counter() - started

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="development",
        database_url=database_url,
        var_dir=folder / "var",
        files_dir=folder / "files",
        jwt_secret="bench-secret-0123456789-abcdefghijklmnop",
        log_level="WARNING",
        login_rate_limit_ip="100000/minute",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            owner = await signed_in(client, "builder")
            project = await create_project(owner, name="Upload bench")
            started = time.perf_counter()
            for index, content in enumerate(documents):
                response = await client.post(
                    "/api/files/upload",
                    data={"projectId": str(project)},
                    files={"file": (f"doc-{index}.md", content, "text/markdown")},
                    headers=owner.headers,
                )
                assert response.status_code == 201, response.text
            uploaded = time.perf_counter() - started
            connector = PsycopgConnector(conninfo=libpq_url(database_url))
            with queue.replace_connector(connector) as worker_app:
                async with worker_app.open_async():
                    await worker_app.run_worker_async(
                        queues=["files"], wait=False, listen_notify=False, install_signal_handlers=False
                    )
            processed = time.perf_counter() - started
            listed = await client.get(
                f"/api/files/project/{project}?status=ready&limit=1", headers=owner.headers
            )
            ready = listed.json()["pagination"]["total"]
            assert ready == args.files, f"{ready} of {args.files} files ready"

    print(f"upload + process, {args.files} Markdown files of {args.file_kb} KiB ({total_mb:.1f} MB)")
    for label, seconds in (
        ("disk write (baseline)", baseline),
        ("upload only", uploaded),
        ("upload + process", processed),
    ):
        rates = f"{args.files / seconds:8.1f} files/s   {total_mb / seconds:8.1f} MB/s"
        print(f"  {label:22} {seconds:7.2f} s   {rates}")
    print(f"  ratio upload/disk        {uploaded / baseline:7.1f} x")
    print(f"  ratio upload+process/disk {processed / baseline:6.1f} x")


async def run(args: argparse.Namespace) -> None:
    from app.core.config import Settings
    from app.core.db import dispose_engine, init_engine
    from app.core.runtime import start_runtime, stop_runtime
    from tests.factories import create_user

    database_url = create_database(DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="bazaar-bench-files-") as tmp:
            folder = Path(tmp)
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None, environment="development", database_url=database_url, var_dir=folder / "var0"
            )
            init_engine(settings)
            await start_runtime(settings)
            try:
                from app.core.db import commit, sessionmaker
                from app.models import Project

                owner = await create_user("builder")
                async with sessionmaker()() as db:
                    project = Project(user_id=owner.id, name="Retrieval bench", mcp_servers=[], metadata_={})
                    db.add(project)
                    await db.flush()
                    project_id = project.id
                    await commit(db)
                await bench_retrieval(args, database_url, project_id, owner.id)
            finally:
                await stop_runtime()
                await dispose_engine()
            await bench_upload(args, database_url, folder)
    finally:
        drop_database(DATABASE)


def main() -> int:
    args = parse_args()
    if not reachable(5432):
        print("Postgres must answer on 127.0.0.1:5432", file=sys.stderr)
        return 1
    print(f"# bench/files.py on {machine_note()}, {load_average()}")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

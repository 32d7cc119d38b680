"""The ``bazaar`` command: serve, worker, dev, db upgrade, ledger check, create-admin, seed-demo."""

import asyncio
import getpass
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import AppError

cli = typer.Typer(
    help="Bazaar: marketplace for AI chat applications.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_cli = typer.Typer(help="Database migrations.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
ledger_cli = typer.Typer(help="Ledger invariants.", no_args_is_help=True)
cli.add_typer(ledger_cli, name="ledger")

T = TypeVar("T")


def _require_database_url() -> str:
    url = get_settings().database_url
    if not url:
        typer.echo("DATABASE_URL is not set. `bazaar dev` (make run) starts an embedded Postgres.", err=True)
        raise typer.Exit(2)
    return url


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.core.db import commit, dispose_engine, init_engine, sessionmaker
    from app.core.runtime import start_runtime, stop_runtime

    async def run() -> T:
        settings = get_settings()
        init_engine(settings)
        await start_runtime(settings)
        try:
            async with sessionmaker()() as db:
                result = await work(db)
                await commit(db)
                return result
        finally:
            await stop_runtime()
            await dispose_engine()

    return asyncio.run(run())


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.core.migrate import upgrade_database

    upgrade_database(_require_database_url(), revision)
    if revision == "head":
        _seed_notification_templates()
    typer.echo(f"database upgraded to {revision}")


def _seed_notification_templates() -> None:
    """The shipped notification templates as data, once the schema is migrated: missing ones are
    added, unedited ones follow their changed file, an administrator's edit is kept."""
    from app.notifications.templates import seed_templates

    _in_transaction(seed_templates)


@ledger_cli.command("check")
def ledger_check() -> None:
    """Check the ledger's invariants; print OK or FAIL for each, exit 1 on any failure."""
    from app.revenue.service import check_ledger

    _require_database_url()
    results = _in_transaction(check_ledger)
    for result in results:
        typer.echo(result.line())
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Email of the super admin")],
    name: Annotated[str, typer.Option(help="Display name")] = "Administrator",
    password: Annotated[
        str | None, typer.Option(help="Password (asked for, or generated with --generate-password)")
    ] = None,
    generate_password: Annotated[bool, typer.Option(help="Generate a password and print it")] = False,
) -> None:
    """Create the first super admin, or grant super_admin to an existing account."""
    from app.users.service import bootstrap_admin

    _require_database_url()
    if password is None and generate_password:
        password = secrets.token_urlsafe(14)
        typer.echo(f"generated password: {password}")
    elif password is None and sys.stdin.isatty():
        password = getpass.getpass("Password (empty keeps an existing account's): ") or None
    if password is not None and len(password) < 10:
        typer.echo("password must have at least 10 characters", err=True)
        raise typer.Exit(2)

    try:
        user, created = _in_transaction(
            lambda db: bootstrap_admin(db, email=email, password=password, name=name)
        )
    except AppError as exc:
        typer.echo(f"{exc.message} (use --password or --generate-password)", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{'created' if created else 'updated'} super admin {user.email} ({user.id})")


@cli.command("seed-demo")
def seed_demo_command(
    if_empty: Annotated[bool, typer.Option(help="Only when the database has no users")] = False,
) -> None:
    """Load demo users and projects and print their logins."""
    from app.demo import DEMO_PASSWORD, DemoLogin, database_is_empty, seed_demo

    _require_database_url()

    async def work(db: AsyncSession) -> list[DemoLogin] | None:
        if if_empty and not await database_is_empty(db):
            return None
        return await seed_demo(db, get_settings())

    logins = _in_transaction(work)
    if logins is None:
        typer.echo("database already has users: demo data not loaded")
        return
    typer.echo(f"demo data loaded; every demo account's password is {DEMO_PASSWORD!r}:")
    for login in logins:
        typer.echo(f"  {login.persona:<12} {login.email}")


@cli.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    settings = get_settings()
    _require_database_url()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=settings.trust_forwarded_for,
    )


@cli.command("worker")
def worker() -> None:
    """Run background and periodic jobs."""
    from app.worker.main import main as worker_main

    _require_database_url()
    worker_main()


@cli.command("dev")
def dev() -> None:
    """Start the whole platform (`make run`): embedded services when none are configured,
    migrations, demo data on first start, API, worker, and the Dagster UI and daemon."""
    from app.core.migrate import upgrade_database

    settings = get_settings()
    env = dict(os.environ)
    database_url = settings.database_url
    if database_url is None:
        from app.core.embedded import start_embedded_postgres

        typer.echo(f"starting embedded Postgres (data in {settings.var_dir / 'pgdata'}) ...")
        database_url = start_embedded_postgres(settings.var_dir)
        env["DATABASE_URL"] = database_url
        os.environ["DATABASE_URL"] = database_url
        get_settings.cache_clear()
    typer.echo("applying migrations ...")
    upgrade_database(database_url)
    _seed_notification_templates()
    if settings.seed_demo_on_empty:
        subprocess.run([sys.executable, "-m", "app", "seed-demo", "--if-empty"], env=env, check=True)

    env.update(_dagster_environment())
    processes = {
        "api": subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env),
        "worker": subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env),
    }
    # The Dagster instance's SQLite storage is created (or upgraded) once, before its two
    # processes start: started together on a fresh instance, the UI and the daemon both stamp
    # the schedule storage's schema version and then refuse to start ("more than one head").
    dagster_storage = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    dagster_ui = f"http://{settings.api_host}:{settings.dagster_port}"
    try:
        if _wait_for(f"{base}/healthz", timeout=60):
            # Dagster starts once the API answers: its processes are heavy to import and would slow
            # the API's start on a small machine. The code location parses dbt/ when the manifest
            # is stale, so the UI may still be loading when the banner is printed.
            dagster_storage.wait(timeout=120)
            processes.update(_start_dagster(env))
            dagster_state = (
                "" if _wait_for(f"{dagster_ui}/server_info", timeout=90) else "   (still starting)"
            )
            typer.echo("")
            typer.echo("Bazaar is running:")
            typer.echo(f"  API          {base}")
            typer.echo(f"  API docs     {base}/docs")
            typer.echo(f"  health       {base}/healthz   readiness {base}/readyz   metrics {base}/metrics")
            typer.echo(f"  Dagster UI   {dagster_ui}{dagster_state}")
            typer.echo(f"  warehouse    {settings.warehouse_dir.resolve()}")
            embedded = f"embedded Postgres ({settings.var_dir}/pgdata)"
            typer.echo(f"  database     {embedded if settings.database_url is None else 'DATABASE_URL'}")
            typer.echo(
                f"  redis        {'in-process fallback' if settings.redis_url is None else 'REDIS_URL'}"
            )
            typer.echo("Press Ctrl-C to stop.")
        else:
            typer.echo("the API did not become healthy within 60 s; see its log above", err=True)

        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
    finally:
        # Also after Ctrl-C while waiting above: the Dagster process groups are not ours.
        for name, process in processes.items():
            if process.poll() is None:
                if name.startswith("dagster"):
                    # The whole group: its code servers and any warehouse run (and its dbt) stop too.
                    os.killpg(process.pid, signal.SIGINT)
                else:
                    process.terminate()
            else:
                typer.echo(f"{name} exited with {process.returncode}", err=True)
        for name, process in processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                if name.startswith("dagster"):
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()


def _wait_for(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _dagster_environment() -> dict[str, str]:
    """The Dagster processes' instance (``var/dagster``, from the template in ``pipelines/``) and
    an absolute ``WAREHOUSE_DIR``: runs and dbt start in other working directories."""
    import shutil

    settings = get_settings()
    dagster_home = (settings.var_dir / "dagster").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).resolve().parent.parent / "pipelines" / "dagster.yaml"
    shutil.copyfile(template, dagster_home / "dagster.yaml")
    return {"DAGSTER_HOME": str(dagster_home), "WAREHOUSE_DIR": str(settings.warehouse_dir.resolve())}


def _start_dagster(env: dict[str, str]) -> dict[str, "subprocess.Popen[bytes]"]:
    """The Dagster UI and the daemon (sensors, schedules, the run queue) on the code location,
    each in its own process group so that stopping it also stops the code servers and runs it
    started."""
    settings = get_settings()
    bin_dir = Path(sys.executable).parent
    location = ["-m", "pipelines.definitions"]
    return {
        "dagster-webserver": subprocess.Popen(
            [
                str(bin_dir / "dagster-webserver"),
                *location,
                "--host",
                settings.api_host,
                "--port",
                str(settings.dagster_port),
            ],
            env=env,
            start_new_session=True,
        ),
        "dagster-daemon": subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", *location], env=env, start_new_session=True
        ),
    }


@cli.command("warehouse-build")
def warehouse_build(
    full_refresh: Annotated[
        bool, typer.Option(help="Rebuild every model from all landing files and fold closed days' files")
    ] = False,
) -> None:
    """Compact the landing files, dbt build and publish once, in this process (what Dagster's
    sensor does every minute); prints the published version."""
    from pipelines.build import WarehouseBuildError, build_warehouse
    from pipelines.publish import NothingToPublishError
    from pipelines.resources import warehouse_resource

    try:
        build_warehouse(warehouse_resource(), full_refresh=full_refresh, echo=typer.echo)
    except (WarehouseBuildError, NothingToPublishError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@cli.command("consume-usage")
def consume_usage() -> None:
    """Land widget usage beacons from the Redis Stream into the warehouse (the worker runs the
    same consumer; this runs it alone, e.g. as a separately scaled process)."""
    from app.worker.usage_consumer import main as consumer_main

    if not get_settings().redis_url:
        typer.echo("REDIS_URL is not set: without Redis, beacons go through the outbox relay.", err=True)
        raise typer.Exit(2)
    consumer_main()


def main() -> None:
    cli()

"""`make run`'s command on embedded defaults: nothing configured, a fresh var/ folder."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

DEMO_PASSWORD = "bazaar-demo-pass"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(var_dir: Path, port: int, log: Path, dagster_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        VAR_DIR=str(var_dir),
        API_PORT=str(port),
        DAGSTER_PORT=str(dagster_port),
        WAREHOUSE_DIR=str(var_dir.parent / "warehouse"),
        LOG_LEVEL="WARNING",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "app", "dev"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"bazaar dev exited early:\n{log.read_text()[-3000:]}"
        try:
            healthy = httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and "Press Ctrl-C to stop." in log.read_text():
            return
        time.sleep(0.3)
    raise AssertionError(f"not running within {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_dagster_ui(url: str, timeout: float = 180) -> None:
    # It loads the code location (and parses dbt/ when the manifest is stale) after the API is up.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the Dagster UI did not answer within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def test_bazaar_dev_serves_docs_and_a_demo_login_on_embedded_postgres_and_keeps_data(tmp_path):
    var_dir = tmp_path / "var"
    port = _free_port()
    dagster_port = _free_port()
    base = f"http://127.0.0.1:{port}"
    dagster_ui = f"http://127.0.0.1:{dagster_port}"
    log = tmp_path / "dev.log"
    process = _start(var_dir, port, log, dagster_port)
    try:
        _wait_healthy(base, process, log)
        output = log.read_text()
        assert f"{base}/docs" in output
        assert "admin@bazaar.example" in output
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200
        # The Dagster UI runs next to the API, on the warehouse code location.
        assert f"Dagster UI   {dagster_ui}" in output
        _wait_dagster_ui(dagster_ui)
        assert httpx.get(dagster_ui, timeout=10).status_code == 200
        assert (var_dir / "dagster" / "dagster.yaml").exists()
        assert httpx.get(f"{base}/readyz", timeout=5).json()["checks"]["database"] == "ok"
        login = httpx.post(
            f"{base}/api/auth/login",
            json={"email": "ada@builders.example", "password": DEMO_PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200
        token = login.json()["accessToken"]
        me = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.json()["email"] == "ada@builders.example"
        created = httpx.post(
            f"{base}/api/projects",
            json={"name": "Kept between runs"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert created.status_code == 201
    finally:
        _stop(process)
    assert (var_dir / "pgdata").is_dir()

    # Second start: same data, no second demo load.
    process = _start(var_dir, port, log, dagster_port)
    try:
        _wait_healthy(base, process, log)
        assert "demo data not loaded" in log.read_text()
        login = httpx.post(
            f"{base}/api/auth/login",
            json={"email": "ada@builders.example", "password": DEMO_PASSWORD},
            timeout=10,
        )
        token = login.json()["accessToken"]
        projects = httpx.get(
            f"{base}/api/projects",
            params={"q": "Kept"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert [p["name"] for p in projects.json()["items"]] == ["Kept between runs"]
    finally:
        _stop(process)

"""README command 1 as a user meets it: `accrual serve` starts, answers, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from accrual.store.embedded import create_database

pytestmark = pytest.mark.slow

ACCRUAL = str(Path(sys.executable).parent / "accrual")
KEY = re.compile(r"acr_[A-Za-z0-9_-]{43}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    def __init__(self, env: dict[str, str], cwd: Path, *extra: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [ACCRUAL, "serve", "--port", str(self.port), *extra],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.stop()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)

    def stop(self) -> str:
        """Ctrl-C, then everything it printed; it must exit by itself, with status 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, output
        return output


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ACCRUAL_")} | {
        "ACCRUAL_DATA_DIR": str(tmp_path / ".accrual"),
        "ACCRUAL_WORKER_INTERVAL_SECONDS": "0.2",
    }


def test_serve_against_a_configured_database(
    server_url: str, env: dict[str, str], tmp_path: Path, worker_id: str
) -> None:
    env["ACCRUAL_DATABASE_URL"] = create_database(
        server_url, f"accrual_serve_{worker_id}", drop_existing=True
    )

    first = Served(env, tmp_path)
    try:
        assert httpx.get(f"{first.url}/docs").status_code == 200
        time.sleep(0.5)  # let the worker tick a few times
        metrics = httpx.get(f"{first.url}/metrics").text
        assert "accrual_worker_ticks_total" in metrics
    finally:
        output = first.stop()
    keys = KEY.findall(output)
    assert keys, output
    secret = keys[0]
    assert "Traceback" not in output

    # A second start reuses the data: no new tenant, and the first key still works.
    second = Served(env, tmp_path)
    try:
        response = httpx.get(f"{second.url}/v1/tenant", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200
        assert response.json()["name"] == "Demo"
    finally:
        output = second.stop()
    assert KEY.findall(output) == []


def test_serve_with_embedded_postgres_and_clean_stop(env: dict[str, str], tmp_path: Path) -> None:
    served = Served(env, tmp_path)
    try:
        assert httpx.get(f"{served.url}/readyz").json()["status"] == "ready"
    finally:
        output = served.stop()
    assert KEY.findall(output)
    pgdata = tmp_path / ".accrual" / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    # Ctrl-C stopped PostgreSQL too.
    assert not (pgdata / "postmaster.pid").exists()


def test_serve_with_several_worker_processes(
    server_url: str, env: dict[str, str], tmp_path: Path, worker_id: str
) -> None:
    env["ACCRUAL_DATABASE_URL"] = create_database(
        server_url, f"accrual_serve_{worker_id}", drop_existing=True
    )
    served = Served(env, tmp_path, "--workers", "2")
    try:
        for _ in range(20):
            assert httpx.get(f"{served.url}/readyz").status_code == 200
    finally:
        output = served.stop()
    keys = KEY.findall(output)
    assert keys, output
    assert "Traceback" not in output
    second = Served(env, tmp_path, "--workers", "2")
    try:
        for _ in range(10):
            response = httpx.get(f"{second.url}/v1/tenant", headers={"Authorization": f"Bearer {keys[0]}"})
            assert response.status_code == 200
    finally:
        second.stop()


def test_a_taken_port_is_a_one_line_error(
    server_url: str, env: dict[str, str], tmp_path: Path, worker_id: str
) -> None:
    env["ACCRUAL_DATABASE_URL"] = create_database(
        server_url, f"accrual_serve_{worker_id}", drop_existing=True
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [ACCRUAL, "serve", "--port", str(port)],
            check=False,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert f"could not serve on 127.0.0.1:{port}" in result.stderr

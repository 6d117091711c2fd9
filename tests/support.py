"""Helpers shared by tests."""

from __future__ import annotations

import sqlalchemy as sa

from accrual.store.database import Database


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def count_rows(db: Database, table: str, tenant_id: object) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"select count(*) from {table} where tenant_id = :t"),
                {"t": tenant_id},
            ).scalar_one()
        )


PROBLEM_JSON = "application/problem+json"


def assert_problem(
    response: object, status: int, *, pointer: str | None = None, parameter: str | None = None
) -> dict:  # type: ignore[type-arg]
    """Check an error response is problem+json with `status`, naming the failing input if given."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith(PROBLEM_JSON)  # type: ignore[attr-defined]
    body: dict = response.json()  # type: ignore[attr-defined, type-arg]
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    if pointer is not None:
        assert body["pointer"] == pointer, body
        assert any(e.get("pointer") == pointer for e in body["errors"])
    if parameter is not None:
        assert body["parameter"] == parameter, body
    return body


def run_cli(runner: object, *args: str, code: int = 0) -> str:
    """Run `accrual ARGS`; check its exit code and that it printed no traceback; return its output."""
    from typer.testing import CliRunner

    from accrual.cli.main import app

    assert isinstance(runner, CliRunner)
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result.output

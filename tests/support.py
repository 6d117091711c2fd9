"""Helpers shared by tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.services.unit_of_work import Actor
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


def metered_subscription(
    db: Database, *, meter: Mapping[str, object], start: dt.datetime, actor: Actor, name: str = "usage"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new tenant with `meter`, a monthly plan `p` charging it per unit, customer `c` and its
    subscription `s` from `start`: (tenant id, subscription id)."""
    tid = tenants.create_tenant(db, name=name, timezone="UTC", actor=actor, now=start).tenant.tenant_id
    catalog.apply_catalog(
        db,
        tenant_id=tid,
        document={
            "meters": [dict(meter)],
            "plans": [
                {
                    "code": "p",
                    "currency": "USD",
                    "interval": "month",
                    "charges": [{"code": "c", "meter": meter["code"], "model": "per_unit", "amount": "1"}],
                }
            ],
        },
        actor=actor,
        now=start,
    )
    customers.create_customer(
        db,
        tenant_id=tid,
        spec={"external_id": "c", "currency": "USD"},
        test_clock_id=None,
        actor=actor,
        now=start,
    )
    sub = subscriptions.create_subscription(
        db,
        tenant_id=tid,
        spec={"customer": "c", "plan": "p", "external_id": "s", "start": start.isoformat()},
        actor=actor,
        now=start,
    )
    return tid, sub.subscription_id


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

"""Meters: create, rename, archive; what a meter counts is frozen once a published version uses it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, meters
from accrual.services.catalog.common import (
    MeterView,
    archive_object,
    get_object,
    list_objects,
    require_row,
)
from accrual.services.unit_of_work import Actor, UnitOfWork, unit_of_work
from accrual.services.usage import quarantine
from accrual.store import catalog as store
from accrual.store import ids, usage_rollups
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page

# --- meters --------------------------------------------------------------------------------


def _meter_values(definition: meters.MeterDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "aggregation": definition.aggregation.value,
        "field": definition.field,
        "filters": {prop: list(values) for prop, values in definition.filters},
        "group_by": list(definition.group_by),
    }


def insert_meter(uow: UnitOfWork, definition: meters.MeterDefinition) -> MeterView:
    row = store.insert_row(
        uow.conn,
        store.METERS,
        {
            "tenant_id": uow.tenant_id,
            "meter_id": ids.new_id(),
            "code": definition.code,
            **_meter_values(definition),
            "created_at": uow.now,
            "updated_at": uow.now,
        },
    )
    view = MeterView.of(row)
    uow.changed(
        "meter.created", entity_type="meter", entity_id=definition.code, before=None, after=view.snapshot()
    )
    quarantine.release_held(uow.conn, tenant_id=uow.tenant_id, now=uow.now, meter_codes=[definition.code])
    return view


def create_meter(
    db: TransactionSource, *, tenant_id: uuid.UUID, spec: Mapping[str, object], actor: Actor, now: dt.datetime
) -> MeterView:
    """Create a meter from `{code, name?, aggregation, field?, filters?, group_by?}`."""
    definition = meters.parse_meter(spec, pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        return insert_meter(uow, definition)


def change_meter(
    uow: UnitOfWork, row: sa.Row[Any], definition: meters.MeterDefinition, *, pointer: str
) -> MeterView:
    before = MeterView.of(row)
    if before.definition == definition:
        return before
    if before.definition.counting_rules() != definition.counting_rules():
        used_by = store.meters_in_published_versions(uow.conn, tenant_id=uow.tenant_id, meter_id=row.meter_id)
        if used_by:
            changed = [
                k
                for k in meters.COUNTING_RULES
                if before.definition.counting_rules()[k] != definition.counting_rules()[k]
            ]
            raise meters.MeterInUse(
                f"meter {definition.code!r} is used by published plan versions ({', '.join(used_by)}), "
                f"so its {', '.join(changed)} cannot change: invoices computed with it must stay "
                "reproducible. Create a new meter with a new code and a new plan version that uses it.",
                field=f"{pointer}/{changed[0]}",
            )
    after = MeterView.of(
        store.update_row(
            uow.conn,
            store.METERS,
            tenant_id=uow.tenant_id,
            code=definition.code,
            values=_meter_values(definition) | {"updated_at": uow.now},
        )
    )
    if before.definition.counting_rules() != definition.counting_rules():
        usage_rollups.refold_meter(uow.conn, tenant_id=uow.tenant_id, meter_id=row.meter_id)
    uow.changed(
        "meter.updated",
        entity_type="meter",
        entity_id=definition.code,
        before=before.snapshot(),
        after=after.snapshot(),
    )
    return after


def update_meter(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    changes: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> MeterView:
    """Change a meter's name, or (while no published plan version uses it) what it counts.

    Raises `MeterInUse` naming the versions that use it when its aggregation, field, filters
    or group-by would change.
    """
    codes.only_keys(
        changes, ("name", "aggregation", "field", "filters", "group_by"), pointer="", what="a meter change"
    )
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        row = require_row(uow.conn, store.METERS, tenant_id=tenant_id, code=code, for_update=True)
        merged = MeterView.of(row).definition.to_spec() | dict(changes)
        return change_meter(uow, row, meters.parse_meter(merged, pointer=""), pointer="")


def get_meter(db: TransactionSource, *, tenant_id: uuid.UUID, code: str) -> MeterView:
    return get_object(db, store.METERS, tenant_id=tenant_id, code=code, view=MeterView.of)


def list_meters(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_archived: bool, cursor: str | None, limit: int
) -> Page[MeterView]:
    return list_objects(
        db,
        store.METERS,
        tenant_id=tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
        view=MeterView.of,
    )


def archive_meter(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, actor: Actor, now: dt.datetime
) -> MeterView:
    return archive_object(
        db, store.METERS, tenant_id=tenant_id, code=code, view=MeterView.of, actor=actor, now=now
    )

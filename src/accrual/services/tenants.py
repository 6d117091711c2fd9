"""Tenants: create (with a first admin key), read, update, list."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Mapping

import sqlalchemy as sa

from accrual.domain import codes, timezones
from accrual.domain.errors import InvalidInput, NotFound
from accrual.services import api_keys
from accrual.services.unit_of_work import Actor, read_only, unit_of_work
from accrual.services.webhooks import update_settings as webhook_settings
from accrual.store import ids, usage_rollups
from accrual.store import tenants as tenant_store
from accrual.store.database import BoundTransactions, Database, TransactionSource
from accrual.store.pagination import Page, fetch_page

DEMO_TENANT_NAME = "Demo"
# Serializes first-start checks of several servers sharing one database.
_DEMO_LOCK = 0x44_45_4D_4F  # "DEMO"


class TenantNotFound(NotFound):
    title = "Tenant not found"


@dataclasses.dataclass(frozen=True)
class CreatedTenant:
    tenant: tenant_store.Tenant
    admin_key: api_keys.IssuedKey


def _validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="/name")
    return name


def create_tenant(
    db: TransactionSource, *, name: str, timezone: str, actor: Actor, now: dt.datetime
) -> CreatedTenant:
    """Create a tenant and its first admin API key, in one transaction."""
    timezones.zone(timezone, field="/timezone")
    tenant = tenant_store.Tenant(
        tenant_id=ids.new_id(), name=_validate_name(name), timezone=timezone, created_at=now
    )
    with unit_of_work(db, tenant_id=tenant.tenant_id, actor=actor, now=now) as uow:
        tenant_store.insert(uow.conn, tenant)
        usage_rollups.start_tenant(uow.conn, tenant_id=tenant.tenant_id, now=now)
        uow.changed(
            "tenant.created",
            entity_type="tenant",
            entity_id=str(tenant.tenant_id),
            before=None,
            after=tenant.snapshot(),
        )
        key = api_keys.issue_key(uow, name="Initial admin key", scopes=["admin"])
    return CreatedTenant(tenant=tenant, admin_key=key)


def get_tenant(db: TransactionSource, *, tenant_id: uuid.UUID) -> tenant_store.Tenant:
    with read_only(db) as conn:
        tenant = tenant_store.get(conn, tenant_id)
    if tenant is None:
        raise TenantNotFound(f"no tenant {tenant_id}")
    return tenant


_PREFIX = re.compile(r"[A-Za-z0-9_/-]{0,16}")
_SELLER_FIELDS = ("name", "address", "tax_id", "email", "phone")


def _billing_settings(spec: Mapping[str, object]) -> dict[str, object]:
    """The invoicing settings in `spec`, checked, as tenant column values."""
    codes.only_keys(spec, _BILLING_SETTINGS, pointer="", what="tenant settings")
    values: dict[str, object] = {}
    for key in ("grace_period_days", "payment_terms_days"):
        if spec.get(key) is not None:
            values[key] = codes.integer(spec[key], field=f"/{key}", minimum=0, maximum=365)
    for key in ("invoice_prefix", "credit_note_prefix"):
        value = spec.get(key)
        if value is not None:
            if not isinstance(value, str) or not _PREFIX.fullmatch(value):
                raise InvalidInput(f"{key} is up to 16 letters, digits, '-', '_' or '/'", field=f"/{key}")
            values[key] = value
    zero = spec.get("zero_amount_invoices")
    if zero is not None:
        if zero not in ("mark_paid", "leave_open"):
            raise InvalidInput(
                "zero_amount_invoices is mark_paid or leave_open", field="/zero_amount_invoices"
            )
        values["zero_amount_invoices"] = zero
    seller = spec.get("seller")
    if seller is not None:
        if not isinstance(seller, Mapping):
            raise InvalidInput("seller is {name, address, tax_id, email, phone}", field="/seller")
        codes.only_keys(seller, _SELLER_FIELDS, pointer="/seller", what="the seller")
        for key, value in seller.items():
            if value is not None and not isinstance(value, str | Mapping):
                raise InvalidInput(f"seller {key} is text", field=f"/seller/{key}")
        values["seller"] = dict(seller)
    return values


_BILLING_SETTINGS = (
    "grace_period_days",
    "payment_terms_days",
    "invoice_prefix",
    "credit_note_prefix",
    "zero_amount_invoices",
    "seller",
)


def update_tenant(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    name: str | None = None,
    timezone: str | None = None,
    maker_checker: bool | None = None,
    proration: str | None = None,
    late_events: str | None = None,
    billing: Mapping[str, object] | None = None,
    webhooks: Mapping[str, object] | None = None,
    actor: Actor,
    now: dt.datetime,
) -> tenant_store.Tenant:
    """Change the tenant's name, default time zone, maker-checker, proration or late-events
    setting, or its invoicing settings (`billing`: grace_period_days, payment_terms_days,
    invoice_prefix, credit_note_prefix, zero_amount_invoices, seller), or its webhook settings
    (`webhooks`: allow_insecure, allowed_networks).

    A change that changes nothing writes nothing.
    """
    values: dict[str, object] = dict(_billing_settings(billing or {}))
    if webhooks is not None:
        codes.only_keys(
            webhooks, ("allow_insecure", "allowed_networks"), pointer="/webhooks", what="webhook settings"
        )
        values.update(webhook_settings(**webhooks))
    if name is not None:
        values["name"] = _validate_name(name)
    if timezone is not None:
        timezones.zone(timezone, field="/timezone")
        values["timezone"] = timezone
    if maker_checker is not None:
        values["maker_checker"] = maker_checker
    if proration is not None:
        if proration not in ("day", "second"):
            raise InvalidInput("proration is day or second", field="/proration")
        values["proration"] = proration
    if late_events is not None:
        if late_events not in ("bill_next", "reject"):
            raise InvalidInput("late_events is bill_next or reject", field="/late_events")
        values["late_events"] = late_events
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        before = tenant_store.get(uow.conn, tenant_id, for_update=True)
        if before is None:
            raise TenantNotFound(f"no tenant {tenant_id}")
        if all(getattr(before, k) == v for k, v in values.items()):
            return before
        after = tenant_store.update(uow.conn, tenant_id, **values)
        uow.changed(
            "tenant.updated",
            entity_type="tenant",
            entity_id=str(tenant_id),
            before=before.snapshot(),
            after=after.snapshot(),
        )
        return after


def list_tenants(db: TransactionSource, *, cursor: str | None, limit: int) -> Page[tenant_store.Tenant]:
    query = tenant_store.select_all()
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.tenant_id,
            cursor=cursor,
            limit=limit,
            descending=False,
            to_item=tenant_store.tenant_from_row,
            key_of=lambda t: t.tenant_id,
            parse_key=uuid.UUID,
        )


def ensure_demo_tenant(db: Database, *, actor: Actor, now: dt.datetime) -> CreatedTenant | None:
    """On a database without tenants, create the demo tenant and return it; else return None."""
    with db.transaction() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DEMO_LOCK)))
        if tenant_store.count(conn) > 0:
            return None
        # Created inside the lock's transaction, so a second server waits and then sees it.
        return create_tenant(
            BoundTransactions(conn), name=DEMO_TENANT_NAME, timezone="UTC", actor=actor, now=now
        )

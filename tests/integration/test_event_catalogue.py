"""The event catalogue is complete and true: every event the services write is listed, with
the entity type it names, and its data validates against the model the API documents.

One broad flow through the services (catalog, maker-checker, a test clock, a subscription's
whole lifecycle, drafts, payments, credit notes, voids, write-offs, quarantined usage, API
keys) writes one tenant's outbox; every row of it is checked. The types the flow does not
reach are listed in `NOT_EXERCISED`, so leaving one out is a decision, not an accident.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrual.api.event_schemas import DATA_MODELS
from accrual.domain.events import EVENT_TYPES
from accrual.services import (
    api_keys,
    catalog,
    customers,
    ledger,
    subscriptions,
    tenants,
    test_clocks,
    webhooks,
)
from accrual.services.billing import corrections, invoices
from accrual.services.registry import default_registry
from accrual.services.unit_of_work import Actor
from accrual.services.usage import ingest, intake
from accrual.store import catalog as catalog_store
from accrual.store.database import Database

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "src" / "accrual" / "services"

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MAKER = Actor.cli("maker")
CHECKER = Actor.cli("checker")

# Every catalogued type is exercised by the flow below; list here any that a change makes
# unreachable from it, with the reason.
NOT_EXERCISED: frozenset[str] = frozenset()

CATALOG: dict[str, Any] = {
    "meters": [{"code": "calls", "aggregation": "count"}, {"code": "old_meter", "aggregation": "count"}],
    "taxes": [{"code": "VAT", "rate": "20"}, {"code": "OLD_TAX", "rate": "5"}],
    "products": [{"code": "api", "name": "API"}],
    "coupons": [
        {"code": "TEN", "kind": "percentage", "value": "10", "duration": "forever"},
        {"code": "OLD", "kind": "fixed", "value": "5", "currency": "USD", "duration": "once"},
    ],
    "plans": [
        {
            "code": "basic",
            "product": "api",
            "currency": "USD",
            "interval": "month",
            "tax_rates": ["VAT"],
            "charges": [{"code": "base", "model": "flat", "amount": "31.00"}],
        },
        {
            "code": "premium",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "62.00"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.01"},
            ],
        },
        {
            "code": "trial",
            "currency": "USD",
            "interval": "month",
            "trial_days": 14,
            "charges": [{"code": "base", "model": "flat", "amount": "20.00"}],
        },
        {
            "code": "legacy",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "1"}],
        },
    ],
}


class Flow:
    """One tenant driven through the services, on a test clock."""

    def __init__(self, db: Database) -> None:
        self.db = db
        created = tenants.create_tenant(db, name="Catalogue", timezone="UTC", actor=MAKER, now=T0)
        self.tid = created.tenant.tenant_id
        clock = test_clocks.create_test_clock(
            db, tenant_id=self.tid, name="catalogue", frozen_time=T0, actor=MAKER, now=T0
        )
        self.clock_id = clock.test_clock_id

    def advance(self, to: dt.datetime) -> None:
        test_clocks.advance_test_clock(
            self.db,
            tenant_id=self.tid,
            test_clock_id=self.clock_id,
            to=to,
            registry=default_registry(),
            actor=MAKER,
            now=T0,
        )

    def customer(self, external_id: str) -> None:
        customers.create_customer(
            self.db,
            tenant_id=self.tid,
            spec={"external_id": external_id, "currency": "USD"},
            test_clock_id=self.clock_id,
            actor=MAKER,
            now=T0,
        )

    def subscribe(self, **spec: Any) -> subscriptions.SubscriptionView:
        return subscriptions.create_subscription(self.db, tenant_id=self.tid, spec=spec, actor=MAKER, now=T0)

    def invoice_of(self, subscription: subscriptions.SubscriptionView, status: str) -> uuid.UUID:
        with self.db.connect() as conn:
            found: uuid.UUID = conn.execute(
                sa.text(
                    "select invoice_id from invoices where tenant_id = :t and subscription_id = :s "
                    "and status = :status order by created_at, invoice_id limit 1"
                ),
                {"t": self.tid, "s": subscription.subscription_id, "status": status},
            ).scalar_one()
        return found

    def outbox(self) -> list[Any]:
        with self.db.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "select event_type, entity_type, entity_id, payload from outbox_events "
                        "where tenant_id = :t order by seq"
                    ),
                    {"t": self.tid},
                )
            )


def _catalog(flow: Flow) -> None:
    db, tid = flow.db, flow.tid
    kw: dict[str, Any] = {"tenant_id": tid, "actor": MAKER, "now": T0}
    catalog.apply_catalog(db, document=CATALOG, **kw)
    catalog.update_product(db, code="api", name="The API", description="Calls", **kw)
    catalog.update_meter(db, code="calls", changes={"name": "API calls"}, **kw)
    catalog.archive_meter(db, code="old_meter", **kw)
    catalog.update_plan(db, code="legacy", name="Legacy", description=None, **kw)
    catalog.archive_plan(db, code="legacy", **kw)
    catalog.rename_coupon(db, code="TEN", name="Ten percent", **kw)
    catalog.archive_coupon(db, code="OLD", **kw)
    catalog.rename_tax_rate(db, code="VAT", name="Value added tax", **kw)
    catalog.archive_tax_rate(db, code="OLD_TAX", **kw)
    catalog.archive_product(db, code="api", **kw)
    # A new version under maker-checker: drafted, edited, submitted, rejected, approved.
    tenants.update_tenant(db, tenant_id=tid, maker_checker=True, actor=MAKER, now=T0)
    draft = catalog.create_draft(db, code="premium", terms=None, **kw)
    terms = draft.row.terms_spec() | {"trial_days": 7}
    catalog.update_draft(db, code="premium", terms=terms, **kw)
    version = draft.row.version
    catalog.publish_version(db, code="premium", version=version, **kw)
    catalog.reject_version(
        db, tenant_id=tid, code="premium", version=version, reason="no", actor=CHECKER, now=T0
    )
    catalog.publish_version(db, code="premium", version=version, **kw)
    catalog.approve_version(db, tenant_id=tid, code="premium", version=version, actor=CHECKER, now=T0)
    tenants.update_tenant(
        db, tenant_id=tid, maker_checker=False, billing={"grace_period_days": 3}, actor=MAKER, now=T0
    )


def _keys(flow: Flow) -> None:
    issued = api_keys.create_api_key(
        flow.db, tenant_id=flow.tid, name="ingest", scopes=["ingest"], actor=MAKER, now=T0
    )
    api_keys.revoke_api_key(
        flow.db, tenant_id=flow.tid, api_key_id=issued.key.api_key_id, actor=MAKER, now=T0
    )


def _subscription_lifecycle(flow: Flow, main: subscriptions.SubscriptionView) -> None:
    db, tid, sid = flow.db, flow.tid, main.subscription_id
    kw: dict[str, Any] = {"tenant_id": tid, "subscription_id": sid, "actor": MAKER, "now": T0}
    subscriptions.update_subscription(db, changes={"metadata": {"team": "core"}}, **kw)
    subscriptions.change_subscription(db, spec={"quantity": 2, "timing": "immediate"}, **kw)
    subscriptions.change_subscription(db, spec={"plan": "premium", "timing": "immediate"}, **kw)
    scheduled = subscriptions.change_subscription(db, spec={"quantity": 1, "timing": "period_end"}, **kw)
    assert scheduled.scheduled is not None
    subscriptions.cancel_scheduled_change(
        db, scheduled_change_id=scheduled.scheduled.scheduled_change_id, **kw
    )
    subscriptions.pause_subscription(db, **kw)
    subscriptions.resume_subscription(db, **kw)
    subscriptions.cancel_subscription(db, timing="period_end", **kw)
    subscriptions.uncancel_subscription(db, **kw)
    subscriptions.mark_past_due(db, **kw)
    subscriptions.recover(db, **kw)
    subscriptions.cancel_subscription(db, timing="immediate", **kw)


def _invoices(flow: Flow, main: subscriptions.SubscriptionView, b: Any, c: Any, d: Any) -> None:
    db, tid = flow.db, flow.tid
    kw: dict[str, Any] = {"tenant_id": tid, "actor": MAKER, "now": T0}
    # Drafts (a three-day grace period): edited and finalized by hand, or deleted.
    draft = flow.invoice_of(main, "draft")
    invoices.add_line(db, invoice_id=draft, spec={"description": "Setup", "amount": "10.00"}, **kw)
    added = invoices.get_invoice(db, tenant_id=tid, invoice_id=draft).lines[-1].line_no
    invoices.remove_line(db, invoice_id=draft, line_no=added, **kw)
    invoices.refresh_draft(db, invoice_id=draft, **kw)
    invoices.finalize_draft(db, invoice_id=draft, **kw)
    invoices.delete_draft(db, invoice_id=flow.invoice_of(b, "draft"), **kw)
    flow.advance(T0 + dt.timedelta(days=4))  # the other drafts finalize on their own
    # A failed then a successful payment; a credit note and a void; a write-off.
    paid = flow.invoice_of(main, "open")
    corrections.record_payment(
        db, invoice=paid, spec={"outcome": "failed", "failure_reason": "declined"}, **kw
    )
    corrections.record_payment(db, invoice=paid, spec={"method": "card"}, **kw)
    credited = flow.invoice_of(c, "open")
    corrections.create_credit_note(db, invoice=credited, spec={"amount": "1.00", "reason": "goodwill"}, **kw)
    invoices.void_invoice(db, invoice_id=credited, **kw)
    invoices.mark_uncollectible(db, invoice_id=flow.invoice_of(d, "open"), **kw)


def _periods(flow: Flow) -> None:
    """The month before the flow's start closed, and reopened."""
    kw: dict[str, Any] = {"tenant_id": flow.tid, "actor": MAKER, "now": T0}
    month = (T0.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    ledger.close_period(flow.db, month=month, **kw)
    ledger.reopen_period(flow.db, month=month, reason="a correction", **kw)


def _usage(flow: Flow) -> None:
    events = intake.parse_events(
        [
            {"id": "held-1", "customer": "acme", "meter": "searches", "properties": {"q": "x"}},
            {"id": "held-2", "subscription": "nobody", "meter": "calls"},
        ],
        now=T0,
    )
    results = ingest.ingest(flow.db, tenant_id=flow.tid, events=events, now=T0)
    assert [r.quarantined for r in results] == ["unknown_meter", "unknown_subscription"]


def _endpoints(flow: Flow) -> None:
    """A webhook endpoint through its life (disabled and closed at the end, so no relay of a
    later test tries to reach it)."""
    tid, db = flow.tid, flow.db
    created = webhooks.create_endpoint(
        db, tenant_id=tid, url="https://example.com/hooks", event_types=["invoice.*"], actor=MAKER, now=T0
    )
    eid = created.endpoint.endpoint_id
    webhooks.update_endpoint(db, tenant_id=tid, endpoint_id=eid, description="ERP", actor=MAKER, now=T0)
    webhooks.rotate_secret(db, tenant_id=tid, endpoint_id=eid, actor=MAKER, now=T0)
    webhooks.set_enabled(db, tenant_id=tid, endpoint_id=eid, enabled=False, actor=MAKER, now=T0)
    webhooks.set_enabled(db, tenant_id=tid, endpoint_id=eid, enabled=True, actor=MAKER, now=T0)
    webhooks.set_enabled(db, tenant_id=tid, endpoint_id=eid, enabled=False, actor=MAKER, now=T0)


def run_flow(db: Database) -> Flow:
    flow = Flow(db)
    _catalog(flow)
    _keys(flow)
    _endpoints(flow)
    for name in ("acme", "bravo", "charlie", "delta", "echo"):
        flow.customer(name)
    customers.update_customer(
        db,
        tenant_id=flow.tid,
        customer_id=customers.get_customer(db, tenant_id=flow.tid, external_id="acme").customer_id,
        changes={"name": "Acme Inc."},
        actor=MAKER,
        now=T0,
    )
    main = flow.subscribe(customer="acme", plan="basic", external_id="main", coupon="TEN")
    b = flow.subscribe(customer="bravo", plan="basic", external_id="b")
    c = flow.subscribe(customer="charlie", plan="basic", external_id="c")
    d = flow.subscribe(customer="delta", plan="basic", external_id="d")
    flow.subscribe(customer="echo", plan="trial", external_id="e")
    flow.advance(T0 + dt.timedelta(hours=1))  # the start invoices, as drafts
    _invoices(flow, main, b, c, d)
    _subscription_lifecycle(flow, main)
    _usage(flow)
    _periods(flow)
    flow.advance(T0 + dt.timedelta(days=40))  # the trial ends; the others renew
    return flow


def test_every_event_written_is_catalogued_with_its_entity_and_a_valid_payload(db: Database) -> None:
    flow = run_flow(db)
    rows = flow.outbox()
    problems = []
    for row in rows:
        known = EVENT_TYPES.get(row.event_type)
        if known is None:
            problems.append(f"{row.event_type}: not in the catalogue")
            continue
        if row.entity_type != known.entity_type:
            problems.append(f"{row.event_type}: entity {row.entity_type}, catalogued {known.entity_type}")
        try:
            DATA_MODELS[row.event_type].model_validate(row.payload)
        except ValueError as error:
            problems.append(f"{row.event_type}: {error}")
    assert problems == []
    exercised = {row.event_type for row in rows}
    assert set(EVENT_TYPES) - exercised == NOT_EXERCISED
    assert not NOT_EXERCISED & exercised, "exercised now: take it off NOT_EXERCISED"


def test_every_catalogued_type_has_a_data_model() -> None:
    assert set(DATA_MODELS) == set(EVENT_TYPES)


# --- the services' source: every type it can emit is catalogued, and nothing else ---------------

# Dotted string constants in the services that are not event types.
NOT_EVENT_TYPES = frozenset(
    {
        "accrual.billing",
        "accrual.relay",
        "accrual.streams",
        "e.late",
        "e.subscription_id",
        "m.code",
        "s.customer_id",
    }
)
_DOTTED = re.compile(r"[a-z][a-z_]*\.[a-z][a-z_]*")


def _literal_types() -> set[str]:
    """Dotted string constants in the services, leaving out audit-only actions (`uow.record`)."""
    found: set[str] = set()
    for path in SERVICES.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        audit_only = {
            id(call.args[0])
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "record"
            and call.args
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _DOTTED.fullmatch(node.value)
                and id(node) not in audit_only
            ):
                found.add(node.value)
    return found - NOT_EVENT_TYPES


def _dynamic_types() -> set[str]:
    """The types built at run time: catalog objects' `updated`/`archived`, and subscription
    transitions named by the subscription service's table."""
    kinds = (
        catalog_store.PRODUCTS,
        catalog_store.METERS,
        catalog_store.PLANS,
        catalog_store.COUPONS,
        catalog_store.TAX_RATES,
    )
    archived = {f"{kind.entity}.archived" for kind in kinds}
    renamed = {f"{kind.entity}.updated" for kind in kinds if kind is not catalog_store.METERS}
    return archived | renamed | set(subscriptions._EVENTS.values())


def test_every_type_the_services_can_emit_is_catalogued() -> None:
    assert (_literal_types() | _dynamic_types()) - set(EVENT_TYPES) == set()


def test_every_catalogued_type_is_emitted_somewhere_in_the_services() -> None:
    assert set(EVENT_TYPES) - (_literal_types() | _dynamic_types()) == set()

"""`accrual simulate`: run a scenario file on a fresh tenant whose customers live on a test clock.

The scenario format and its report are specified in SCENARIOS.md (docs/scenarios.md). A
scenario is checked whole before anything runs: every error names the JSON pointer of the
offending key, which the CLI turns into a file line. Running drives the very services the
HTTP API uses (tenants, catalog, customers, subscriptions, usage, billing, test clocks), so
a scenario exercises production code paths, not a model of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec
import sqlalchemy as sa

from accrual.domain import codes
from accrual.domain.clock import require_aware
from accrual.domain.errors import InvalidInput
from accrual.services import customers as customer_service
from accrual.services import ledger, test_clocks
from accrual.services import subscriptions as subscription_service
from accrual.services import tenants as tenant_service
from accrual.services.billing import corrections, invoices, views
from accrual.services.billing.views import CreditNoteView, InvoiceView, period_json, stamp
from accrual.services.catalog.apply import apply_catalog
from accrual.services.due_work import DueWorkRegistry
from accrual.services.unit_of_work import Actor, read_only
from accrual.services.usage import ingest, intake
from accrual.store import invoices as invoice_store
from accrual.store.database import Database
from accrual.store.schema import credit_notes as credit_notes_table
from accrual.store.schema import invoices as invoices_table

TOP_LEVEL = (
    "name",
    "start",
    "timezone",
    "proration",
    "grace_period_days",
    "late_events",
    "catalog",
    "customers",
    "steps",
    "end",
    "expect",
)
CUSTOMER_KEYS = ("id", "name", "email", "currency", "timezone", "tax", "grace_period_days", "payment_method")
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # action: (required keys, optional keys)
    "subscribe": (
        ("id", "customer", "plan"),
        ("billing", "quantity", "start", "coupon", "trial_days", "anchor", "trial_end_behavior"),
    ),
    "change": (("subscription",), ("plan", "quantity", "timing")),
    "cancel": (("subscription",), ("timing",)),
    "uncancel": (("subscription",), ()),
    "pause": (("subscription",), ()),
    "resume": (("subscription",), ()),
    "void": (("invoice",), ()),
    "credit_note": (("invoice", "reason"), ("amount", "lines")),
    "pay": (("invoice",), ("amount", "outcome", "method", "reference")),
    "finalize": (("invoice",), ()),
    "mark_uncollectible": (("invoice",), ()),
}
EVENT_KEYS = ("id", "repeat", "subscription", "customer", "meter", "timestamp", "properties")
MAX_REPEAT = 1_000_000


class InvalidScenario(InvalidInput):
    title = "Invalid scenario"


@dataclasses.dataclass(frozen=True)
class Step:
    pointer: str
    at: dt.datetime
    action: str | None
    spec: Mapping[str, Any]
    events: tuple[intake.IncomingEvent, ...] = ()


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    start: dt.datetime
    end: dt.datetime
    timezone: str
    proration: str
    grace_period_days: int
    late_events: str
    catalog: Mapping[str, Any]
    customers: tuple[Mapping[str, Any], ...]
    steps: tuple[Step, ...]
    expect: Mapping[str, Any] | None


def _instant(value: object, *, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidScenario(f"{value!r} is not an RFC 3339 instant", field=field) from None
    else:
        raise InvalidScenario(f"{value!r} is not an RFC 3339 instant", field=field)
    if instant.tzinfo is None:
        raise InvalidScenario(f"{value!r} has no UTC offset (add Z)", field=field)
    return instant.astimezone(dt.UTC)


def _mapping(value: object, *, field: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidScenario(f"{what} is a mapping", field=field)
    return value


def _list(value: object, *, field: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidScenario(f"{what} is a list", field=field)
    return value


def _text(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidScenario(f"{value!r} is not a name", field=field)
    return value


def _events(items: list[Any], *, pointer: str, at: dt.datetime) -> tuple[intake.IncomingEvent, ...]:
    """The step's events, `repeat` expanded (ids id-1 … id-N), each checked like the API checks it."""
    expanded: list[intake.IncomingEvent] = []
    for i, raw in enumerate(items):
        where = f"{pointer}/{i}"
        item = dict(_mapping(raw, field=where, what="an event"))
        codes.only_keys(item, EVENT_KEYS, pointer=where, what="an event")
        repeat = item.pop("repeat", None)
        count = (
            1
            if repeat is None
            else codes.integer(repeat, field=f"{where}/repeat", minimum=1, maximum=MAX_REPEAT)
        )
        try:
            (event,) = intake.parse_events([_jsonable(item)], now=at)
        except intake.InvalidBatch as error:
            first = error.bad[0]
            raise InvalidScenario(first.detail, field=where + first.field.removeprefix("/0")) from None
        if repeat is None:
            expanded.append(event)
            continue
        copies = [_jsonable(item | {"id": f"{item.get('id')}-{n}"}) for n in range(1, count + 1)]
        expanded += intake.parse_events(copies, now=at) if count <= 10_000 else _in_batches(copies, at)
    return tuple(expanded)


def _in_batches(items: list[Any], at: dt.datetime) -> list[intake.IncomingEvent]:
    found: list[intake.IncomingEvent] = []
    for start in range(0, len(items), 10_000):
        found += intake.parse_events(items[start : start + 10_000], now=at)
    return found


def _jsonable(value: Any) -> Any:
    """A scenario value as JSON would carry it (YAML may give dates and exact decimals)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _customers(doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    customers = []
    known: set[str] = set()
    for i, raw in enumerate(_list(doc.get("customers"), field="/customers", what="customers")):
        where = f"/customers/{i}"
        customer = _mapping(raw, field=where, what="a customer")
        codes.only_keys(customer, CUSTOMER_KEYS, pointer=where, what="a customer")
        customer_id = _text(customer.get("id"), field=f"{where}/id")
        if customer_id in known:
            raise InvalidScenario(f"customer {customer_id!r} is defined twice", field=f"{where}/id")
        known.add(customer_id)
        customers.append(customer)
    return tuple(customers)


def _action(
    where: str, action: str, raw: object, *, customers: set[str], subscriptions: set[str]
) -> Mapping[str, Any]:
    spec = _mapping(raw, field=f"{where}/{action}", what=action)
    required, optional = ACTIONS[action]
    codes.only_keys(spec, (*required, *optional), pointer=f"{where}/{action}", what=action)
    for key in required:
        if spec.get(key) is None:
            raise InvalidScenario(f"{action} needs {key}", field=f"{where}/{action}/{key}")
    if action == "subscribe":
        if spec["customer"] not in customers:
            raise InvalidScenario(
                f"there is no customer {spec['customer']!r} in customers", field=f"{where}/{action}/customer"
            )
        if spec["id"] in subscriptions:
            raise InvalidScenario(f"subscription {spec['id']!r} exists already", field=f"{where}/{action}/id")
        subscriptions.add(str(spec["id"]))
    elif "subscription" in required and spec["subscription"] not in subscriptions:
        raise InvalidScenario(
            f"no earlier step subscribes {spec['subscription']!r}", field=f"{where}/{action}/subscription"
        )
    return spec


def _steps(doc: Mapping[str, Any], *, start: dt.datetime, customers: set[str]) -> tuple[Step, ...]:
    steps: list[Step] = []
    previous = start
    subscriptions: set[str] = set()
    for i, raw in enumerate(_list(doc.get("steps"), field="/steps", what="steps")):
        where = f"/steps/{i}"
        item = _mapping(raw, field=where, what="a step")
        codes.only_keys(item, ("at", "events", *ACTIONS), pointer=where, what="a step")
        at = _instant(item.get("at"), field=f"{where}/at") if "at" in item else previous
        if at < previous:
            raise InvalidScenario(
                f"steps run in time order: {stamp(at)} is before {stamp(previous)}", field=f"{where}/at"
            )
        previous = at
        actions = [key for key in item if key != "at"]
        if len(actions) > 1:
            raise InvalidScenario(
                f"a step does one thing; this one has {', '.join(actions)}", field=f"{where}/{actions[1]}"
            )
        if not actions:
            steps.append(Step(where, at, None, {}))
        elif actions[0] == "events":
            items = _list(item["events"], field=f"{where}/events", what="events")
            steps.append(Step(where, at, "events", {}, _events(items, pointer=f"{where}/events", at=at)))
        else:
            spec = _action(
                where, actions[0], item[actions[0]], customers=customers, subscriptions=subscriptions
            )
            steps.append(Step(where, at, actions[0], spec))
    return tuple(steps)


def parse_scenario(data: object) -> Scenario:
    """Check a scenario file's contents whole; raise `InvalidScenario` (or another
    `InvalidInput`) naming the key's JSON pointer at the first error."""
    doc = _mapping(data, field="", what="a scenario")
    codes.only_keys(doc, TOP_LEVEL, pointer="", what="a scenario")
    name = _text(doc.get("name", "scenario"), field="/name")
    if "start" not in doc:
        raise InvalidScenario("a scenario needs start: the instant its test clock starts at", field="/start")
    start = _instant(doc["start"], field="/start")
    timezone = _text(doc.get("timezone", "UTC"), field="/timezone")
    proration = doc.get("proration", "day")
    if proration not in ("day", "second"):
        raise InvalidScenario("proration is day or second", field="/proration")
    grace = codes.integer(doc.get("grace_period_days", 0), field="/grace_period_days", minimum=0, maximum=365)
    late = doc.get("late_events", "bill_next")
    if late not in ("bill_next", "reject"):
        raise InvalidScenario("late_events is bill_next or reject", field="/late_events")
    catalog = _mapping(doc.get("catalog") or {}, field="/catalog", what="catalog")
    customers = _customers(doc)
    steps = _steps(doc, start=start, customers={str(c["id"]) for c in customers})
    previous = steps[-1].at if steps else start
    end = _instant(doc["end"], field="/end") if "end" in doc else previous
    if end < previous:
        raise InvalidScenario(f"end {stamp(end)} is before the last step at {stamp(previous)}", field="/end")
    expect = doc.get("expect")
    if expect is not None:
        _mapping(expect, field="/expect", what="expect")
    return Scenario(
        name=name,
        start=start,
        end=end,
        timezone=timezone,
        proration=str(proration),
        grace_period_days=grace,
        late_events=str(late),
        catalog=catalog,
        customers=customers,
        steps=steps,
        expect=expect,
    )


# --- running ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tally:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Run:
    """A scenario run in progress: its tenant, clock and what it has seen."""

    db: Database
    registry: DueWorkRegistry
    actor: Actor
    tenant_id: uuid.UUID
    clock_id: uuid.UUID
    tally: _Tally

    def advance(self, to: dt.datetime, *, including_target: bool = True) -> None:
        test_clocks.advance_test_clock(
            self.db,
            tenant_id=self.tenant_id,
            test_clock_id=self.clock_id,
            to=to,
            registry=self.registry,
            actor=self.actor,
            now=to,
            including_target=including_target,
        )


def _invoice_id(run: Run, reference: object, *, field: str) -> uuid.UUID:
    """An invoice by number, or "#N": the N-th invoice finalized in this scenario."""
    text = str(reference)
    with read_only(run.db) as conn:
        if text.startswith("#"):
            try:
                n = int(text[1:])
            except ValueError:
                raise InvalidScenario(f"{text!r} is not #N", field=field) from None
            rows = conn.execute(
                sa.select(invoices_table.c.invoice_id)
                .where(invoices_table.c.tenant_id == run.tenant_id, invoices_table.c.number.is_not(None))
                .order_by(
                    invoices_table.c.finalized_at,
                    sa.func.length(invoices_table.c.number),
                    invoices_table.c.number,
                )
            ).all()
            if not 1 <= n <= len(rows):
                raise InvalidScenario(f"only {len(rows)} invoices are finalized so far, not {n}", field=field)
            found: uuid.UUID = rows[n - 1].invoice_id
            return found
        row = invoice_store.get_by_number(conn, tenant_id=run.tenant_id, number=text)
        if row is None:
            raise InvalidScenario(f"there is no invoice {text!r}", field=field)
        return row.invoice_id  # type: ignore[no-any-return]


def _subscription_id(run: Run, external_id: object) -> uuid.UUID:
    view = subscription_service.get_subscription(
        run.db, tenant_id=run.tenant_id, external_id=str(external_id)
    )
    return view.subscription_id


def _ingest(run: Run, step: Step) -> None:
    for result in ingest.ingest(run.db, tenant_id=run.tenant_id, events=step.events, now=step.at):
        if result.outcome is ingest.Outcome.ACCEPTED:
            run.tally.accepted += 1
        elif result.outcome is ingest.Outcome.DUPLICATE:
            run.tally.duplicates += 1
        else:
            run.tally.rejected.append({"id": result.event_id, "error": result.error or "rejected"})


def _subscribe(run: Run, step: Step) -> None:
    spec = {"external_id": step.spec["id"], **{k: v for k, v in step.spec.items() if k != "id"}}
    subscription_service.create_subscription(
        run.db, tenant_id=run.tenant_id, spec=spec, actor=run.actor, now=step.at
    )


def _on_subscription(run: Run, step: Step) -> None:
    subscription_id = _subscription_id(run, step.spec["subscription"])
    rest = {k: v for k, v in step.spec.items() if k != "subscription"}
    if step.action == "change":
        subscription_service.change_subscription(
            run.db,
            tenant_id=run.tenant_id,
            subscription_id=subscription_id,
            spec=rest,
            actor=run.actor,
            now=step.at,
        )
        return
    if step.action == "cancel":
        subscription_service.cancel_subscription(
            run.db,
            tenant_id=run.tenant_id,
            subscription_id=subscription_id,
            timing=str(rest.get("timing") or "period_end"),
            actor=run.actor,
            now=step.at,
        )
        return
    operation = {
        "uncancel": subscription_service.uncancel_subscription,
        "pause": subscription_service.pause_subscription,
        "resume": subscription_service.resume_subscription,
    }[step.action or ""]
    operation(run.db, tenant_id=run.tenant_id, subscription_id=subscription_id, actor=run.actor, now=step.at)


def _on_invoice(run: Run, step: Step) -> None:
    invoice_id = _invoice_id(run, step.spec["invoice"], field=f"{step.pointer}/{step.action}/invoice")
    rest = {k: v for k, v in step.spec.items() if k != "invoice"}
    tenant_id, actor, at = run.tenant_id, run.actor, step.at
    if step.action == "credit_note":
        corrections.create_credit_note(
            run.db, tenant_id=tenant_id, invoice=invoice_id, spec=rest, actor=actor, now=at
        )
    elif step.action == "pay":
        corrections.record_payment(
            run.db, tenant_id=tenant_id, invoice=invoice_id, spec=rest, actor=actor, now=at
        )
    else:
        operation = {
            "void": invoices.void_invoice,
            "finalize": invoices.finalize_draft,
            "mark_uncollectible": invoices.mark_uncollectible,
        }[step.action or ""]
        operation(run.db, tenant_id=tenant_id, invoice_id=invoice_id, actor=actor, now=at)


_PERFORM = {
    "events": _ingest,
    "subscribe": _subscribe,
    "change": _on_subscription,
    "cancel": _on_subscription,
    "uncancel": _on_subscription,
    "pause": _on_subscription,
    "resume": _on_subscription,
    "void": _on_invoice,
    "finalize": _on_invoice,
    "mark_uncollectible": _on_invoice,
    "credit_note": _on_invoice,
    "pay": _on_invoice,
}


def _with_pointer(error: InvalidInput, pointer: str) -> InvalidInput:
    error.field = pointer + (error.field or "")
    return error


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished run: the tenant and test clock it ran on, and its report."""

    tenant_id: uuid.UUID
    test_clock_id: uuid.UUID
    report: dict[str, Any]


def run_scenario(db: Database, scenario: Scenario, *, registry: DueWorkRegistry, actor: Actor) -> Outcome:
    """Run `scenario` on a new tenant in `db`; return its report (SCENARIOS.md's shape)."""
    start = require_aware(scenario.start, name="start")
    created = tenant_service.create_tenant(
        db, name=f"simulation: {scenario.name}"[:200], timezone=scenario.timezone, actor=actor, now=start
    )
    tenant_id = created.tenant.tenant_id
    tenant_service.update_tenant(
        db,
        tenant_id=tenant_id,
        proration=scenario.proration,
        late_events=scenario.late_events,
        billing={"grace_period_days": scenario.grace_period_days},
        actor=actor,
        now=start,
    )
    clock = test_clocks.create_test_clock(
        db, tenant_id=tenant_id, name=scenario.name[:200], frozen_time=start, actor=actor, now=start
    )
    try:
        apply_catalog(
            db, tenant_id=tenant_id, document=scenario.catalog, pointer="/catalog", actor=actor, now=start
        )
    except InvalidInput as error:
        if not (error.field or "").startswith("/catalog"):
            raise _with_pointer(error, "/catalog") from None
        raise
    for i, customer in enumerate(scenario.customers):
        tax = customer.get("tax")
        spec = {
            "external_id": customer["id"],
            "name": customer.get("name") or customer["id"],
            "email": customer.get("email"),
            "currency": customer.get("currency"),
            "timezone": customer.get("timezone"),
            "tax_rates": [] if tax is None else (list(tax) if isinstance(tax, list) else [tax]),
            "grace_period_days": customer.get("grace_period_days"),
            "payment_method": customer.get("payment_method"),
        }
        try:
            customer_service.create_customer(
                db,
                tenant_id=tenant_id,
                spec={k: v for k, v in spec.items() if v is not None},
                test_clock_id=clock.test_clock_id,
                actor=actor,
                now=start,
            )
        except InvalidInput as error:
            raise _with_pointer(error, f"/customers/{i}") from None
    run = Run(db, registry, actor, tenant_id, clock.test_clock_id, _Tally())
    for step in scenario.steps:
        # A change at a boundary applies to the period starting there, on the boundary's own
        # invoice (SCENARIOS.md): it happens before the boundary's work, at the same instant.
        run.advance(step.at, including_target=step.action != "change")
        try:
            if step.action is not None:
                _PERFORM[step.action](run, step)
        except InvalidScenario:
            raise
        except InvalidInput as error:
            action = f"/{step.action}" if step.action else ""
            raise _with_pointer(error, step.pointer + action) from None
        # What the step made due now (an immediate change's invoice) happens at this instant.
        run.advance(step.at)
    run.advance(scenario.end)
    return Outcome(tenant_id, clock.test_clock_id, report(run))


# --- the report ------------------------------------------------------------------------------


def _invoice_report(view: InvoiceView) -> dict[str, Any]:
    found = view.snapshot()
    found.pop("id")
    for line in found["lines"]:
        line.pop("line_no")
    return found


def _credit_note_report(view: CreditNoteView) -> dict[str, Any]:
    found = view.snapshot()
    found.pop("id")
    return found


def report(run: Run) -> dict[str, Any]:
    """The scenario's outcome: invoices in finalization order then drafts, events, credit notes,
    subscriptions, and whether the ledger balances (its trial balance and the revenue part
    come with revenue recognition)."""
    with read_only(run.db) as conn:
        rows = conn.execute(
            invoice_store.select_invoices(tenant_id=run.tenant_id).order_by(
                invoices_table.c.finalized_at.is_(None),
                invoices_table.c.finalized_at,
                sa.func.length(invoices_table.c.number),
                invoices_table.c.number,
                invoices_table.c.created_at,
                invoices_table.c.invoice_id,
            )
        ).all()
        invoice_views = views.views_of(conn, rows)
        note_rows = conn.execute(
            invoice_store.select_credit_notes(tenant_id=run.tenant_id).order_by(
                credit_notes_table.c.created_at,
                sa.func.length(credit_notes_table.c.number),
                credit_notes_table.c.number,
            )
        ).all()
    notes = corrections.credit_notes_of(
        run.db, tenant_id=run.tenant_id, invoice_ids=sorted({r.invoice_id for r in note_rows})
    )
    subscriptions = [
        {
            "id": view.external_id or str(view.subscription_id),
            "customer": view.customer,
            "status": view.status.value,
            "plan": view.plan,
            "quantity": view.quantity,
            "current_period": period_json(view.current_period),
        }
        for view in _all_subscriptions(run)
    ]
    return {
        "invoices": [_invoice_report(v) for v in invoice_views],
        "events": {
            "accepted": run.tally.accepted,
            "duplicates": run.tally.duplicates,
            "rejected": list(run.tally.rejected),
        },
        "credit_notes": [_credit_note_report(n) for n in notes],
        "subscriptions": subscriptions,
        "ledger": {"balanced": ledger.is_balanced(ledger.trial_balance(run.db, tenant_id=run.tenant_id))},
    }


def _all_subscriptions(run: Run) -> list[subscription_service.SubscriptionView]:
    found: list[subscription_service.SubscriptionView] = []
    cursor: str | None = None
    while True:
        page = subscription_service.list_subscriptions(
            run.db, tenant_id=run.tenant_id, customer_id=None, status=None, cursor=cursor, limit=100
        )
        found += page.items
        if page.next_cursor is None:
            return sorted(found, key=lambda v: (v.created_at, v.subscription_id))
        cursor = page.next_cursor


# --- expect ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Difference:
    path: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.path}: expected {_shown(self.expected)}, got {_shown(self.actual)}"


_MISSING = object()


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    return msgspec.json.encode(_plain(value)).decode()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return stamp(value)
    return value


def _scalar_equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, dt.datetime):
        expected = stamp(expected)
    if isinstance(expected, Decimal):
        expected = format(expected, "f")
    return str(expected) == str(actual)


def _compare_lists(expected: list[Any], actual: Any, path: str) -> list[Difference]:
    if not isinstance(actual, list):
        return [Difference(path, expected, actual)]
    if len(expected) != len(actual):
        return [Difference(f"{path} (length)", len(expected), len(actual))]
    pairs = enumerate(zip(expected, actual, strict=True))
    return [d for i, (e, a) in pairs for d in compare(e, a, f"{path}/{i}")]


def compare(expected: Any, actual: Any, path: str = "") -> list[Difference]:
    """Where `actual` differs from the partial report `expected` (SCENARIOS.md's rule)."""
    if isinstance(expected, list):
        return _compare_lists(expected, actual, path)
    if not isinstance(expected, Mapping):
        return [] if _scalar_equal(expected, actual) else [Difference(path, expected, actual)]
    if not isinstance(actual, Mapping):
        return [Difference(path or "/", expected, actual)]
    found: list[Difference] = []
    for key, value in expected.items():
        where = f"{path}/{key}"
        found += compare(value, actual[key], where) if key in actual else [Difference(where, value, _MISSING)]
    return found


def check(scenario: Scenario, outcome: Mapping[str, Any]) -> list[Difference]:
    return [] if scenario.expect is None else compare(scenario.expect, outcome)

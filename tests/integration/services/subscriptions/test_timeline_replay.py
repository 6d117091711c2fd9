"""The timeline replays to the stored state: random operations on a test clock, then a replay of
the stored history through the pure state machine must land on exactly the stored subscription."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accrual.domain import subscriptions as rules
from accrual.domain.periods import ProrationUnit
from accrual.domain.subscriptions import Action
from accrual.services import catalog, subscriptions, tenants, test_clocks
from accrual.services.subscriptions import TimelineEntry
from accrual.store import subscriptions as store
from accrual.store.database import Database
from tests.integration.services.subscriptions.conftest import ACTOR, CATALOG, T0, World

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "advance",
                "advance",
                "quantity",
                "quantity_later",
                "upgrade",
                "pause",
                "resume",
                "cancel",
                "uncancel",
            ]
        ),
        st.integers(1, 40),  # days to advance, or a quantity
    ),
    min_size=3,
    max_size=12,
)


def _operate(world: World, sid: uuid.UUID, name: str, n: int, now: dt.datetime) -> dt.datetime:
    try:
        if name == "advance":
            now = now + dt.timedelta(days=n, hours=n % 7)
            world.advance(now)
        elif name in ("quantity", "quantity_later"):
            spec = {"quantity": 1 + n % 5, "timing": "immediate" if name == "quantity" else "period_end"}
            subscriptions.change_subscription(
                world.db, tenant_id=world.tenant_id, subscription_id=sid, spec=spec, actor=ACTOR, now=T0
            )
        elif name == "upgrade":
            subscriptions.change_subscription(
                world.db,
                tenant_id=world.tenant_id,
                subscription_id=sid,
                spec={"plan": "premium"},
                actor=ACTOR,
                now=T0,
            )
        elif name == "pause":
            subscriptions.pause_subscription(
                world.db, tenant_id=world.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
            )
        elif name == "resume":
            subscriptions.resume_subscription(
                world.db, tenant_id=world.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
            )
        elif name == "cancel":
            subscriptions.cancel_subscription(
                world.db,
                tenant_id=world.tenant_id,
                subscription_id=sid,
                timing="period_end",
                actor=ACTOR,
                now=T0,
            )
        elif name == "uncancel":
            subscriptions.uncancel_subscription(
                world.db, tenant_id=world.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
            )
    except (rules.IllegalTransition, rules.NothingToChange, rules.InvalidSubscription):
        pass  # refused in this state: fine, and nothing was written
    return now


def _replay(world: World, entries: list[TimelineEntry], sid: uuid.UUID) -> rules.State:
    """Rebuild the state from the stored history alone, through the pure state machine."""
    with world.db.connect() as conn:
        row = store.get(conn, tenant_id=world.tenant_id, subscription_id=sid)
        assert row is not None
        ids = [e.plan_version_id for e in entries] + [uuid.UUID(str(entries[0].details["plan_version_id"]))]
        terms = subscriptions.load_terms(conn, world.tenant_id, ids)
        context = subscriptions._context(conn, world.tenant_id, row.customer_id)
    first = entries[0]
    state = rules.create(
        terms=terms[uuid.UUID(str(first.details["plan_version_id"]))],
        quantity=int(first.details["quantity"]),
        billing=rules.BillingMode(first.details["billing"]),
        tz=context.tz,
        proration=ProrationUnit.DAY,
        start=dt.datetime.fromisoformat(str(first.details["start"])),
        now=dt.datetime.fromisoformat(str(first.details["created_at"])),
        trial_days=first.details.get("trial_days"),
    ).state
    rest = entries[1:]
    i = 0
    while i < len(rest):
        entry = rest[i]
        action = Action(entry.action)
        target = (terms[entry.plan_version_id], entry.quantity)
        changed = target != (state.terms, state.quantity)
        if action in (Action.START, Action.END_TRIAL, Action.RENEW, Action.END):
            step = rules.due_step(
                state,
                terms_by_version=terms,
                change_at_boundary=target if changed and action is not Action.END else None,
                has_payment_method=context.has_payment_method,
                trial_end_behavior=rules.TrialEndBehavior.ACTIVATE,
            )
            state = step.state
            i += len(step.transitions)  # a boundary change is recorded as its own entry
            continue
        if action is Action.CHANGE and changed:
            state = rules.change(
                state, at=entry.at, terms=target[0], quantity=target[1], terms_by_version=terms
            ).state
        elif action is Action.PAUSE:
            state = rules.pause(state, at=entry.at).state
        elif action is Action.RESUME:
            state = rules.resume(state, at=entry.at).state
        elif action is Action.CANCEL:
            state = rules.cancel(state, at=entry.at, timing=rules.ChangeTiming.PERIOD_END).state
        elif action is Action.CANCEL_NOW:
            state = rules.cancel(state, at=entry.at, timing=rules.ChangeTiming.IMMEDIATE).state
        elif action is Action.UNCANCEL:
            state = rules.uncancel(state, at=entry.at).state
        i += 1
    return state


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=OPERATIONS,
    plan=st.sampled_from(["basic", "premium", "trial", "arrears"]),
    billing=st.sampled_from(["anniversary", "calendar"]),
    tz=st.sampled_from(["UTC", "Europe/Paris", "Australia/Sydney"]),
)
def test_the_timeline_replays_to_the_stored_state(
    db: Database, operations: list[tuple[str, int]], plan: str, billing: str, tz: str
) -> None:
    tenant = tenants.create_tenant(db, name="replay", timezone=tz, actor=ACTOR, now=T0)
    tid = tenant.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=T0)
    clock = test_clocks.create_test_clock(db, tenant_id=tid, name="sim", frozen_time=T0, actor=ACTOR, now=T0)
    world = World(db, tid, clock.test_clock_id)
    world.customer()
    sid = world.subscribe(plan=plan, billing=billing).subscription_id
    now = T0
    for name, n in operations:
        now = _operate(world, sid, name, n, now)
    entries = subscriptions.timeline(db, tenant_id=tid, subscription_id=sid)
    replayed = _replay(world, entries, sid)
    with db.connect() as conn:
        row = store.get(conn, tenant_id=tid, subscription_id=sid)
        assert row is not None
        context = subscriptions._context(conn, tid, row.customer_id)
        terms = subscriptions.load_terms(conn, tid, [row.plan_version_id])
    stored = subscriptions._state(row, terms[row.plan_version_id], context)
    assert replayed == stored
    # Exactly one state at any instant: the history's statuses chain without gaps.
    for earlier, later in itertools.pairwise(entries):
        assert later.from_status == earlier.to_status
        assert later.at >= earlier.at

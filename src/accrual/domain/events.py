"""The event catalogue: every type of event Accrual writes to its outbox, and endpoint filters.

An event's type is `<prefix>.<what happened>` (`invoice.finalized`); its data is the state of
the entity it names (`entity_type`) after the change. Webhook endpoints choose what they
receive with filters: an exact type, `<prefix>.*` for every type of one prefix, or `*`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

WILDCARD = "*"


@dataclasses.dataclass(frozen=True)
class EventType:
    """One type of event: its name, the kind of entity it is about, and what it announces."""

    name: str
    entity_type: str
    description: str

    @property
    def prefix(self) -> str:
        """The part of the name before the dot, which `<prefix>.*` filters select on."""
        return self.name.split(".", 1)[0]


def _catalogue(*groups: tuple[str, str, Mapping[str, str]]) -> Mapping[str, EventType]:
    types: dict[str, EventType] = {}
    for prefix, entity_type, described in groups:
        for action, description in described.items():
            name = f"{prefix}.{action}"
            types[name] = EventType(name=name, entity_type=entity_type, description=description)
    return MappingProxyType(types)


EVENT_TYPES: Mapping[str, EventType] = _catalogue(
    (
        "tenant",
        "tenant",
        {
            "created": "A tenant was created.",
            "updated": "A tenant's name, time zone, proration, approval or invoicing settings changed.",
        },
    ),
    (
        "api_key",
        "api_key",
        {
            "created": "An API key was issued (the data never contains its secret).",
            "revoked": "An API key was revoked and is refused from now on.",
        },
    ),
    (
        "test_clock",
        "test_clock",
        {
            "created": "A test clock was created, stopped at its frozen time.",
            "advanced": "A test clock was advanced, after all the work that fell due on the way ran.",
        },
    ),
    (
        "customer",
        "customer",
        {
            "created": "A customer was created.",
            "updated": "A customer's name, email, address, tax rates, payment method or metadata changed.",
        },
    ),
    (
        "product",
        "product",
        {
            "created": "A product was created.",
            "updated": "A product's name or description changed.",
            "archived": "A product was archived: kept for what uses it, refused for anything new.",
        },
    ),
    (
        "meter",
        "meter",
        {
            "created": "A meter was created.",
            "updated": "A meter's name or (while no published plan version uses it) what it counts changed.",
            "archived": "A meter was archived: kept for what uses it, refused for anything new.",
        },
    ),
    (
        "plan",
        "plan",
        {
            "created": "A plan was created (its first version is announced separately).",
            "updated": "A plan's name, description or product changed.",
            "archived": "A plan was archived: its subscriptions keep it, new ones cannot choose it.",
        },
    ),
    (
        "plan_version",
        "plan_version",
        {
            "created": "A draft version of a plan was created.",
            "updated": "A draft plan version's terms changed.",
            "submitted": "A plan version was submitted for approval (maker-checker tenants).",
            "published": "A plan version was published: its terms are frozen and new subscriptions get it.",
            "rejected": "A plan version awaiting approval went back to draft, with the reviewer's reason.",
        },
    ),
    (
        "coupon",
        "coupon",
        {
            "created": "A coupon was created; its terms never change.",
            "updated": "A coupon's name changed.",
            "archived": "A coupon was archived: existing redemptions keep it, new ones are refused.",
        },
    ),
    (
        "tax_rate",
        "tax_rate",
        {
            "created": "A tax rate was created; its rate never changes.",
            "updated": "A tax rate's name changed.",
            "archived": "A tax rate was archived: kept for what uses it, refused for anything new.",
        },
    ),
    (
        "subscription",
        "subscription",
        {
            "created": "A subscription was created (pending, trialing or active).",
            "trial_started": "A subscription's trial began.",
            "trial_ended": "A subscription's trial ended.",
            "activated": "A subscription became active: created active, started, or its trial ended into it.",
            "renewed": "A subscription's period ended and the next one began.",
            "plan_changed": "A subscription moved to another plan or plan version.",
            "quantity_changed": "A subscription's quantity changed.",
            "change_scheduled": "A plan or quantity change was scheduled for a later instant.",
            "scheduled_change_canceled": "A scheduled change was canceled before it took effect.",
            "updated": "A subscription's metadata or trial-end behaviour changed, with no change of state.",
            "paused": "A subscription was paused: no fees are billed until it resumes.",
            "resumed": "A paused subscription resumed.",
            "canceled": "A subscription was canceled, at the end of its period or at once.",
            "uncanceled": "A cancellation at period end was withdrawn.",
            "ended": "A subscription ended: its cancellation took effect.",
            "past_due": "A subscription became past due because an invoice is overdue.",
            "recovered": "A past-due subscription is active again: its overdue invoices were settled.",
        },
    ),
    (
        "invoice",
        "invoice",
        {
            "created": "An invoice was composed as a draft.",
            "updated": "A draft invoice changed (a one-off line added or removed, or its usage rated again).",
            "deleted": "A draft invoice was deleted; the data is its last state.",
            "finalized": "An invoice was finalized: numbered, frozen and due.",
            "paid": "An invoice was paid in full (by payments, credit notes or the customer's balance).",
            "payment_failed": "A payment attempt on an invoice failed; the data is the invoice, unchanged.",
            "voided": "An invoice was voided: nothing more is owed on it.",
            "marked_uncollectible": "An open invoice was marked uncollectible (written off).",
        },
    ),
    (
        "credit_note",
        "credit_note",
        {
            "created": "A credit note was issued against a finalized invoice.",
        },
    ),
    (
        "payment",
        "payment",
        {
            "succeeded": "A payment was received and applied to an invoice or the customer's balance.",
            "failed": "A payment attempt failed.",
        },
    ),
    (
        "accounting_period",
        "accounting_period",
        {
            "closed": "An accounting month was closed: no ledger entry may be effective in it.",
            "reopened": "A closed accounting month was reopened, with the reason.",
        },
    ),
    (
        "usage",
        "usage_event",
        {
            "quarantined": "A usage event could not be attributed and was quarantined, with the reason.",
        },
    ),
    (
        "endpoint",
        "webhook_endpoint",
        {
            "created": "A webhook endpoint was created.",
            "updated": "A webhook endpoint's URL, description or event filters changed.",
            "enabled": "A webhook endpoint was enabled and receives events again.",
            "disabled": "A webhook endpoint was disabled and receives no events.",
            "secret_rotated": "A webhook endpoint's signing secret was rotated (the data never contains it).",
        },
    ),
)

PREFIXES: frozenset[str] = frozenset(t.prefix for t in EVENT_TYPES.values())


def is_valid_filter(pattern: str) -> bool:
    """Whether `pattern` is a filter an endpoint may hold: a known event type, `<prefix>.*`
    for a known prefix, or `*`."""
    if pattern == WILDCARD or pattern in EVENT_TYPES:
        return True
    prefix, dot, rest = pattern.partition(".")
    return dot == "." and rest == WILDCARD and prefix in PREFIXES


def matches(pattern: str, event_type: str) -> bool:
    """Whether an endpoint filter selects events of `event_type`. An invalid pattern selects
    nothing, so a filter that slipped past validation never widens what is sent."""
    if not is_valid_filter(pattern):
        return False
    if pattern == WILDCARD:
        return True
    if pattern.endswith(".*"):
        return event_type.partition(".")[0] == pattern[:-2]
    return pattern == event_type

"""The event catalogue and endpoint filters."""

from __future__ import annotations

import re

import pytest

from accrual.domain import events
from accrual.domain.events import EVENT_TYPES


def test_every_type_is_named_prefix_dot_action_and_described_in_one_sentence() -> None:
    for name, event_type in EVENT_TYPES.items():
        assert event_type.name == name
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", name), name
        assert re.fullmatch(r"[a-z_]+", event_type.entity_type), name
        description = event_type.description
        assert description[0].isupper(), name
        assert description.endswith("."), name
        assert ". " not in description.rstrip("."), f"{name}: one sentence"


def test_the_catalogue_holds_the_webhook_and_quarantine_types() -> None:
    assert {n for n, t in EVENT_TYPES.items() if t.entity_type == "webhook_endpoint"} == {
        "endpoint.created",
        "endpoint.updated",
        "endpoint.enabled",
        "endpoint.disabled",
        "endpoint.secret_rotated",
    }
    assert EVENT_TYPES["usage.quarantined"].entity_type == "usage_event"
    assert EVENT_TYPES["invoice.finalized"].entity_type == "invoice"


def test_the_catalogue_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        EVENT_TYPES["made.up"] = EVENT_TYPES["invoice.paid"]  # type: ignore[index]


@pytest.mark.parametrize(
    "pattern",
    ["*", "invoice.*", "invoice.paid", "endpoint.*", "endpoint.secret_rotated", "usage.*", "tax_rate.*"],
)
def test_valid_filters(pattern: str) -> None:
    assert events.is_valid_filter(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "**",
        "invoice",
        "invoice.",
        "invoice.**",
        "invoice.pa*",
        "invoice.made_up",
        "made_up.*",
        "*.paid",
        "webhook_endpoint.*",  # an entity type, not a prefix of event names
        "usage_event.*",
        "Invoice.paid",
        " invoice.paid",
        "invoice.paid.*",
    ],
)
def test_invalid_filters(pattern: str) -> None:
    assert not events.is_valid_filter(pattern)


def test_matches_exact_prefix_and_everything() -> None:
    assert events.matches("*", "invoice.paid")
    assert events.matches("invoice.*", "invoice.paid")
    assert events.matches("invoice.paid", "invoice.paid")
    assert not events.matches("invoice.paid", "invoice.voided")
    assert not events.matches("invoice.*", "credit_note.created")
    assert not events.matches("plan.*", "plan_version.published")
    assert events.matches("plan_version.*", "plan_version.published")


def test_an_invalid_pattern_matches_nothing() -> None:
    for event_type in EVENT_TYPES:
        assert not events.matches("invoice.pa*", event_type)
        assert not events.matches("*.paid", event_type)
        assert not events.matches("", event_type)


def test_every_known_type_is_selected_by_itself_its_prefix_and_the_wildcard_only() -> None:
    for name, event_type in EVENT_TYPES.items():
        selecting = {
            p for p in [*EVENT_TYPES, *(f"{x}.*" for x in events.PREFIXES), "*"] if events.matches(p, name)
        }
        assert selecting == {name, f"{event_type.prefix}.*", "*"}

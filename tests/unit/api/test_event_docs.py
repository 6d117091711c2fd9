"""docs/events.md lists every event type and its data's fields, as the catalogue has them."""

from __future__ import annotations

from pathlib import Path

from accrual.api.event_schemas import catalogue_markdown
from accrual.domain.events import EVENT_TYPES

PAGE = Path(__file__).resolve().parents[3] / "docs" / "events.md"


def test_the_page_shows_the_catalogue_as_generated() -> None:
    text = PAGE.read_text()
    generated = text.split("<!-- catalogue: begin -->\n", 1)[1].split("<!-- catalogue: end -->", 1)[0]
    assert generated == catalogue_markdown(), "docs/events.md is stale: run scripts/event-docs"


def test_the_page_lists_every_type_with_its_description() -> None:
    text = PAGE.read_text()
    for name, event_type in EVENT_TYPES.items():
        assert f"| `{name}` | `{event_type.entity_type}` |" in text
        assert event_type.description in text

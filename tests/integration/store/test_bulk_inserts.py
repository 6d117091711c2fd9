"""Bulk inserts store exactly what they were given: plain values sent as array literals, JSON
documents made storable once stored (and hashed) as the database hands them back."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import audit
from accrual.services.tenants import CreatedTenant
from accrual.store import schema
from accrual.store.database import Database, dumps_json, insert_rows, loads_json, stored_json

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_a_stored_document_is_its_round_trip_with_its_canonical_text() -> None:
    value = {
        "b": Decimal("1.50"),
        "a": [AT, uuid.UUID(int=7), ("x", 1)],
        "é": {"z": None, "y": True},
    }
    stored = stored_json(value)
    assert stored == {
        "a": ["2026-03-01T12:00:00+00:00", "00000000-0000-0000-0000-000000000007", ["x", 1]],
        "b": "1.50",
        "é": {"y": True, "z": None},
    }
    assert stored.text.encode() == audit.canonical_json(dict(stored))
    assert loads_json(stored.text) == stored


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        stored_json({"amount": 1.5})


# Every spelling the fast encoder could get wrong: any text (control characters, quotes,
# backslashes, non-ASCII, astral planes; no lone surrogates, which no database stores), huge
# integers, decimals of every form, ids, tuples, and instants and non-string keys (which go
# the standard library's way).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)))
_SCALAR = (
    _TEXT
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.booleans()
    | st.none()
    | st.decimals(allow_nan=True, allow_infinity=True, places=None)
    | st.uuids()
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.dates()
)
_DOCUMENT = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_TEXT, inner, max_size=4)
        | st.dictionaries(st.integers(0, 9), inner, max_size=2)
    ),
    max_leaves=20,
)


def _standard(value: object) -> str:
    """What the standard library writes, as storing did before the fast encoder."""
    import json

    def default(item: object) -> object:
        if isinstance(item, dt.datetime | dt.date):
            return item.isoformat()
        return str(item)

    return json.dumps(value, default=default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _DOCUMENT, max_size=5))
def test_the_fast_encoder_writes_the_standard_librarys_bytes(value: dict[str, object]) -> None:
    assert dumps_json(value) == _standard(value)
    stored = stored_json(value)
    parsed = loads_json(_standard(value))
    assert stored == parsed
    assert stored.text.encode() == audit.canonical_json(parsed)


_NUMBERED = st.recursive(
    _TEXT
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_NUMBERED, st.booleans())
def test_documents_read_back_as_the_standard_library_reads_them(value: object, as_bytes: bool) -> None:
    import json

    text = json.dumps(value, ensure_ascii=False)
    expected = json.loads(text, parse_float=Decimal)
    assert loads_json(text.encode() if as_bytes else text) == expected


def test_documents_with_and_without_their_text_are_stored_alike(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    payloads = [stored_json({"n": Decimal("2.50"), "s": "ü"}), {"n": Decimal("3.50")}, stored_json({})]
    ids = [uuid.uuid4() for _ in payloads]
    with db.transaction() as conn:
        insert_rows(
            conn,
            schema.outbox_events,
            [
                {
                    "tenant_id": tid,
                    "event_id": event_id,
                    "event_type": "thing.changed",
                    "entity_type": "thing",
                    "entity_id": "1",
                    "payload": payload,
                    "occurred_at": AT,
                }
                for event_id, payload in zip(ids, payloads, strict=True)
            ],
        )
        stored = {
            row.event_id: row.payload
            for row in conn.execute(
                sa.select(schema.outbox_events.c.event_id, schema.outbox_events.c.payload).where(
                    schema.outbox_events.c.tenant_id == tid, schema.outbox_events.c.event_id.in_(ids)
                )
            )
        }
    assert [stored[i] for i in ids] == [{"n": "2.50", "s": "ü"}, {"n": "3.50"}, {}]


def test_plain_values_are_stored_exactly(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    names = [
        'a "quoted" name',
        'back\\slash \\"',
        "{braces, commas}",
        "NULL",
        "",
        "ünïcode ✓",
        "tab\tnew\nline",
    ]
    rates = [
        Decimal("20"),
        Decimal("5.50"),
        Decimal("0.000"),
        Decimal("1E+1"),
        Decimal("7.125"),
        Decimal("0"),
        None,
    ]
    archived = [AT, None, AT + dt.timedelta(microseconds=1), None, AT, None, AT]
    rows = [
        {
            "tenant_id": tid,
            "tax_rate_id": uuid.uuid4(),
            "code": f"T{n}",
            "name": name,
            "rate": Decimal(n) if rate is None else rate,
            "inclusive": n % 2 == 0,
            "created_at": AT,
            "archived_at": at,
        }
        for n, (name, rate, at) in enumerate(zip(names, rates, archived, strict=True))
    ]
    with db.transaction() as conn:
        insert_rows(conn, schema.tax_rates, rows)
        stored = {
            row.tax_rate_id: row
            for row in conn.execute(sa.select(schema.tax_rates).where(schema.tax_rates.c.tenant_id == tid))
        }
    for row in rows:
        found = stored[row["tax_rate_id"]]
        assert dict(found._mapping) == row
        assert str(found.rate) == str(row["rate"]) or row["rate"] == Decimal("1E+1")

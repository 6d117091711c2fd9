"""The audit hash chain: canonical bytes, chaining, and naming the first break."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accrual.domain import audit

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def _record(seq: int, after: dict[str, object] | None = None) -> audit.AuditRecord:
    return audit.AuditRecord(
        tenant_id="t1",
        seq=seq,
        occurred_at=T0 + dt.timedelta(seconds=seq),
        actor="cli:ops",
        action="thing.changed",
        entity_type="thing",
        entity_id=str(seq),
        before=None,
        after=after if after is not None else {"n": seq},
    )


def _chain(n: int) -> list[tuple[audit.AuditRecord, bytes, bytes]]:
    rows = []
    prev = audit.GENESIS_HASH
    for seq in range(1, n + 1):
        record = _record(seq)
        digest = audit.chain_hash(prev, record)
        rows.append((record, prev, digest))
        prev = digest
    return rows


@given(json_values)
def test_canonical_json_ignores_key_order(value: object) -> None:
    if isinstance(value, dict):
        reordered = dict(reversed(list(value.items())))
        assert audit.canonical_json(reordered) == audit.canonical_json(value)
    assert audit.canonical_json(value) == audit.canonical_json(value)


@pytest.mark.parametrize("value", [1.5, decimal.Decimal("1.50"), {"a": [1, 2.0]}, {1: "x"}])
def test_canonical_json_refuses_values_with_several_spellings(value: object) -> None:
    with pytest.raises(TypeError):
        audit.canonical_json(value)


def test_instants_have_one_spelling_whatever_their_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert audit.format_instant(T0) == "2026-03-01T12:00:00.000000Z"
    assert audit.format_instant(T0.astimezone(paris)) == "2026-03-01T12:00:00.000000Z"


def test_intact_chain_verifies() -> None:
    assert audit.verify_chain(_chain(5)) == (5, None)
    assert audit.verify_chain([]) == (0, None)


def test_changed_record_is_named() -> None:
    rows = _chain(5)
    record, prev, digest = rows[2]
    rows[2] = (dataclasses.replace(record, after={"n": 999}), prev, digest)
    checked, first_break = audit.verify_chain(rows)
    assert first_break == audit.ChainBreak(3, "hash does not match the record's contents")
    assert checked == 3


def test_removed_record_is_named() -> None:
    rows = _chain(5)
    del rows[1]
    _, first_break = audit.verify_chain(rows)
    assert first_break is not None
    assert first_break.seq == 3


def test_rehashed_record_breaks_the_next_link() -> None:
    rows = _chain(4)
    record, prev, _ = rows[1]
    forged = dataclasses.replace(record, actor="cli:mallory")
    rows[1] = (forged, prev, audit.chain_hash(prev, forged))
    _, first_break = audit.verify_chain(rows)
    assert first_break == audit.ChainBreak(3, "prev_hash does not match the previous record's hash")


@given(
    before=st.none() | st.dictionaries(st.text(), json_values, max_size=4),
    after=st.none() | st.dictionaries(st.text(), json_values, max_size=4),
    words=st.lists(st.text(), min_size=4, max_size=4),
    seq=st.integers(min_value=1),
)
def test_canonical_with_the_states_text_is_the_canonical_bytes(
    before: dict[str, object] | None, after: dict[str, object] | None, words: list[str], seq: int
) -> None:
    record = audit.AuditRecord(
        tenant_id=words[0],
        seq=seq,
        occurred_at=T0,
        actor=words[1],
        action=words[2],
        entity_type="thing",
        entity_id=words[3],
        before=before,
        after=after,
    )

    def text(state: dict[str, object] | None) -> str | None:
        return None if state is None else audit.canonical_json(state).decode()

    canonical = record.canonical_with(before=text(before), after=text(after))
    assert canonical == record.canonical()
    assert audit.chain_hash(audit.GENESIS_HASH, record, canonical=canonical) == audit.chain_hash(
        audit.GENESIS_HASH, record
    )

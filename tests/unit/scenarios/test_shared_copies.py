"""The shared scenarios are vendored under scenarios/shared; they must not drift from the source."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENDORED = ROOT / "scenarios" / "shared"
SOURCE = ROOT.parent / "shared" / "scenarios"


def test_vendored_scenarios_exist() -> None:
    assert sorted(VENDORED.glob("*.yaml"))


@pytest.mark.skipif(
    not SOURCE.is_dir(), reason="the shared folder is not beside this checkout (CI clones alone)"
)
def test_vendored_copies_match_the_shared_folder() -> None:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    vendored = {p.name: p.read_bytes() for p in VENDORED.glob("*.yaml")}
    assert vendored == source, "copy ../shared/scenarios/*.yaml into scenarios/shared/"


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the shared folder is not beside this checkout")
def test_the_format_specification_is_the_shared_one() -> None:
    shared = (SOURCE.parent / "SCENARIOS.md").read_bytes()
    assert (VENDORED / "SCENARIOS.md").read_bytes() == shared, (
        "copy ../shared/SCENARIOS.md into scenarios/shared/"
    )

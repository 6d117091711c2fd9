"""Every scenario file, shared and our own, runs and matches its `expect`."""

from __future__ import annotations

from pathlib import Path

import pytest

from accrual.cli import documents
from accrual.services import simulation
from accrual.services.registry import default_registry
from accrual.store.database import Database
from tests.integration.services.billing.conftest import ACTOR, ledger_ties_out

SCENARIOS = Path(__file__).resolve().parents[4] / "scenarios"
FILES = sorted(SCENARIOS.glob("shared/*.yaml")) + sorted(SCENARIOS.glob("*.yaml"))
# The ledger's trial balance and the revenue part of the report come with revenue recognition
# (issue 9, next step).
NOT_YET = ("/ledger/trial_balance", "/revenue")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SCENARIOS)) for p in FILES])
def test_scenario_matches_expect(db: Database, path: Path) -> None:
    scenario = simulation.parse_scenario(documents.load(path).data)
    assert scenario.expect is not None, f"{path} has no expect"
    outcome = simulation.run_scenario(db, scenario, registry=default_registry(), actor=ACTOR)
    report = outcome.report
    ledger_ties_out(db, outcome.tenant_id)
    differences = simulation.check(scenario, report)
    pending = [d for d in differences if d.path.startswith(NOT_YET)]
    assert [str(d) for d in differences if d not in pending] == []
    if pending:
        pytest.xfail("expects revenue recognition, which issue 9 builds: " + "; ".join(map(str, pending)))


def test_there_are_enough_scenarios_of_our_own() -> None:
    assert len(list(SCENARIOS.glob("*.yaml"))) >= 20

"""The CLI against the test database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ACCRUAL_DATABASE_URL", database_url)
    return CliRunner()

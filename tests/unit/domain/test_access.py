from __future__ import annotations

import pytest

from accrual.domain import access
from accrual.domain.access import Scope


@pytest.mark.parametrize(
    ("held", "needed", "granted"),
    [
        ({Scope.ADMIN}, Scope.FINANCE, True),
        ({Scope.ADMIN}, Scope.INGEST, True),
        ({Scope.WRITE}, Scope.READ, True),
        ({Scope.WRITE}, Scope.INGEST, True),
        ({Scope.WRITE}, Scope.ADMIN, False),
        ({Scope.WRITE}, Scope.FINANCE, False),
        ({Scope.READ}, Scope.WRITE, False),
        ({Scope.INGEST}, Scope.READ, False),
        ({Scope.FINANCE}, Scope.READ, True),
        ({Scope.FINANCE}, Scope.WRITE, False),
        ({Scope.READ, Scope.INGEST}, Scope.INGEST, True),
    ],
)
def test_what_each_scope_grants(held: set[Scope], needed: Scope, granted: bool) -> None:
    assert access.grants(held, needed) is granted


def test_parse_scopes_names_the_unknown_one() -> None:
    with pytest.raises(access.UnknownScope) as caught:
        access.parse_scopes(["read", "superuser"])
    assert caught.value.field == "/scopes/1"
    assert "superuser" in caught.value.detail


def test_parse_scopes_needs_one() -> None:
    with pytest.raises(access.UnknownScope):
        access.parse_scopes([])

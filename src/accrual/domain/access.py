"""API key scopes and what each one grants."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from accrual.domain.errors import InvalidInput


class Scope(enum.StrEnum):
    ADMIN = "admin"  # everything, including keys and tenant settings
    WRITE = "write"  # create and change billing objects; implies read and ingest
    READ = "read"  # read billing objects
    INGEST = "ingest"  # send usage events only: the key a product embeds
    FINANCE = "finance"  # finance reports and period close; implies read


_GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset(Scope),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ, Scope.INGEST}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.INGEST: frozenset({Scope.INGEST}),
    Scope.FINANCE: frozenset({Scope.FINANCE, Scope.READ}),
}


class UnknownScope(InvalidInput):
    title = "Unknown scope"


def parse_scopes(values: Iterable[str], *, field: str = "/scopes") -> frozenset[Scope]:
    """Validate scope names; raise `UnknownScope` naming the first unknown one, or if there are none."""
    scopes: set[Scope] = set()
    for i, value in enumerate(values):
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise UnknownScope(
                f"unknown scope {value!r}; known scopes: {known}", field=f"{field}/{i}"
            ) from None
    if not scopes:
        raise UnknownScope("at least one scope is required", field=field)
    return frozenset(scopes)


def grants(held: Iterable[Scope], needed: Scope) -> bool:
    """Whether a key holding `held` may do what needs `needed`."""
    return any(needed in _GRANTS[scope] for scope in held)

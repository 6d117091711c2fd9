"""Codes: the stable, human-chosen handles of catalog objects ("pro", "api_calls", "VAT20")."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

from accrual.domain.errors import InvalidInput

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class InvalidCode(InvalidInput):
    title = "Invalid code"


class UnknownField(InvalidInput):
    title = "Unknown field"


class MissingField(InvalidInput):
    title = "Missing field"


class InvalidValue(InvalidInput):
    title = "Invalid value"


def code(value: object, *, field: str) -> str:
    """Validate a code: 1–100 of letters, digits, `_`, `.`, `-`, starting with a letter or digit.

    A code that reads as a UUID is refused so that paths can never confuse a code with an id.
    """
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise InvalidCode(
            f"{value!r} is not a code: use 1 to 100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field=field,
        )
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise InvalidCode(f"{value!r} looks like an id; choose a code that does not", field=field)


def name(value: object, *, field: str, default: str) -> str:
    """A display name: 1–200 characters once trimmed; `default` when absent."""
    if value is None:
        return default
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200:
        raise InvalidValue("a name must be 1 to 200 characters", field=field)
    return value.strip()


def only_keys(spec: Mapping[str, object], allowed: Sequence[str], *, pointer: str, what: str) -> None:
    """Refuse keys a spec does not know, naming the first one (typos must not pass silently)."""
    if not isinstance(spec, Mapping):
        raise InvalidValue(f"{what} must be an object", field=pointer or "/")
    for key in spec:
        if key not in allowed:
            known = ", ".join(allowed)
            raise UnknownField(
                f"{what} has no field {key!r}; known fields: {known}", field=f"{pointer}/{key}"
            )


def required(spec: Mapping[str, object], key: str, *, pointer: str, what: str) -> object:
    if spec.get(key) is None:
        raise MissingField(f"{what} needs {key!r}", field=f"{pointer}/{key}")
    return spec[key]


def integer(value: object, *, field: str, minimum: int, maximum: int | None = None) -> int:
    """An integer within bounds; booleans and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{value!r} is not an integer", field=field)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InvalidValue(f"{value} must be {bound}", field=field)
    return value


def code_list(value: object, *, field: str) -> tuple[str, ...]:
    """A list of distinct codes (order kept)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidValue("expected a list of codes", field=field)
    codes = tuple(code(item, field=f"{field}/{i}") for i, item in enumerate(value))
    for i, item in enumerate(codes):
        if item in codes[:i]:
            raise InvalidValue(f"{item!r} is listed twice", field=f"{field}/{i}")
    return codes

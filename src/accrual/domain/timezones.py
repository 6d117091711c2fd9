"""IANA time zones, validated once."""

from __future__ import annotations

import functools
import zoneinfo

from accrual.domain.errors import InvalidInput

# Names the zone database answers to that do not denote a customer's civil time: what
# "localtime" and "posixrules" mean depends on the machine, "Factory" means "no zone
# configured", and the "right/" zones count leap seconds, which would shift every
# boundary by some seconds.
_NOT_CIVIL_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_CIVIL_PREFIXES = ("right/", "posix/")


class UnknownTimeZone(InvalidInput):
    title = "Unknown time zone"


@functools.cache
def _load(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def zone(name: str, *, field: str | None = None) -> zoneinfo.ZoneInfo:
    """Return the IANA zone `name` (e.g. "Europe/Paris"); raise `UnknownTimeZone` if there is none."""
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or name.startswith(("/", "."))
        or ".." in name
        or name in _NOT_CIVIL_ZONES
        or name.startswith(_NOT_CIVIL_PREFIXES)
    ):
        raise UnknownTimeZone(f"{name!r} is not an IANA time zone name", field=field)
    try:
        return _load(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError) as exc:
        raise UnknownTimeZone(f"{name!r} is not an IANA time zone name", field=field) from exc

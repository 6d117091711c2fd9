"""Webhook rules: where a webhook may go, and when a failed delivery is tried again.

Retries follow the Standard Webhooks schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h and 24 h after each failure (about three days in all), each delay stretched or
shrunk by up to a tenth so that many failing deliveries do not retry in lockstep. The jitter
is derived from the delivery and attempt, so a schedule is reproducible. A receiver's
`Retry-After` can only push the next attempt later, never sooner.

Targets must be https; plain http only to a loopback address and only for a tenant that
allows insecure webhooks (tests, development). Private, link-local, loopback and other
non-public addresses are refused unless the tenant allow-lists their network; loopback is
allowed for a tenant with insecure webhooks on. The relay checks every address a host name
resolves to when it sends, and connects to the address it checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from accrual.domain.errors import InvalidInput

RETRY_DELAYS: tuple[dt.timedelta, ...] = tuple(
    dt.timedelta(seconds=s)
    for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600)
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER_PPM = 100_000  # a tenth either way, in parts per million
MAX_RETRY_AFTER = dt.timedelta(hours=24)
# Five days of nothing but failures disable an endpoint.
FAILING_LIMIT = dt.timedelta(days=5)
MAX_URL_LENGTH = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def next_attempt_at(
    *,
    delivery_id: uuid.UUID,
    attempts: int,
    failed_at: dt.datetime,
    retry_after: dt.timedelta | None = None,
) -> dt.datetime | None:
    """When to try again after attempt number `attempts` (1-based) failed at `failed_at`; None
    when that was the last attempt."""
    if attempts >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempts - 1]
    digest = hashlib.sha256(f"{delivery_id}:{attempts}".encode()).digest()
    # In integers (the domain has no floats): a factor in [0.9, 1.1) in parts per million.
    ppm = 1_000_000 - JITTER_PPM + ((2 * JITTER_PPM * int.from_bytes(digest[:8], "big")) >> 64)
    delay = dt.timedelta(microseconds=delay // dt.timedelta(microseconds=1) * ppm // 1_000_000)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return failed_at + delay


def parse_retry_after(value: str | None, *, now: dt.datetime) -> dt.timedelta | None:
    """A `Retry-After` header's delay: seconds, or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return dt.timedelta(seconds=int(value))
    from email.utils import parsedate_to_datetime  # noqa: PLC0415 - only for the rare date form

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, dt.timedelta(0))


@dataclasses.dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a tenant's webhooks may reach besides public ones."""

    allow_insecure: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def of(cls, *, allow_insecure: bool, allowed_networks: Sequence[str]) -> AddressPolicy:
        return cls(
            allow_insecure=allow_insecure,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks),
        )

    def refusal(self, address: IpAddress) -> str | None:
        """Why `address` may not be reached, or None if it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_loopback:
            return None if self.allow_insecure else f"{address} is a loopback address"
        if address.is_global and not address.is_multicast:
            return None
        return f"{address} is not a public address (allow-list its network to reach it)"


def parse_networks(values: Sequence[object], *, field: str) -> list[str]:
    """Allow-listed networks as canonical CIDR strings."""
    networks = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidInput("a network is a CIDR string such as 10.0.0.0/8", field=f"{field}/{i}")
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(f"{value!r} is not a network (CIDR)", field=f"{field}/{i}") from None
    return networks


@dataclasses.dataclass(frozen=True)
class Target:
    """A webhook URL taken apart."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with its query

    @property
    def literal_address(self) -> IpAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_target(url: str, *, policy: AddressPolicy, field: str = "/url") -> Target:
    """Check a webhook URL against the rules above (all but DNS, which the relay checks when it
    sends); return it taken apart."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is 1 to {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidInput(f"url is not a valid URL: {error}", field=field) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("url is an absolute https:// URL", field=field)
    if parts.username or parts.password:
        raise InvalidInput("url may not carry a user name or password", field=field)
    if parts.fragment:
        raise InvalidInput("url may not have a #fragment", field=field)
    host = parts.hostname.lower()
    target = Target(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )
    address = target.literal_address
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if parts.scheme == "http" and not (loopback and policy.allow_insecure):
        raise InvalidInput(
            "url must be https (plain http only to loopback, with allow_insecure_webhooks on)", field=field
        )
    if host == "localhost" and not policy.allow_insecure:
        raise InvalidInput("url may not point at localhost", field=field)
    if address is not None and (reason := policy.refusal(address)) is not None:
        raise InvalidInput(f"url may not point there: {reason}", field=field)
    return target

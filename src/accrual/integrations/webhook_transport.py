"""Sending one webhook request over HTTP, safely.

The transport resolves the target's host itself, refuses the request if any address it
resolves to is not allowed for the tenant (see `domain.webhooks.AddressPolicy`), and connects
to the address it checked, so a name cannot be re-pointed between the check and the connection
(DNS rebinding). It never follows redirects, reads at most 64 KB of a response, and gives up
after the request's timeout. It never raises for a network failure: the reply says what went
wrong, and the relay records it as a failed attempt.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import threading
import time
from collections.abc import Mapping
from typing import Protocol

import urllib3

from accrual.domain.errors import AccrualError
from accrual.domain.webhooks import AddressPolicy, IpAddress, Target, parse_target

MAX_RESPONSE_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Outgoing:
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout: float
    policy: AddressPolicy


@dataclasses.dataclass(frozen=True)
class Reply:
    status_code: int | None
    body: str
    headers: Mapping[str, str]  # names in lower case
    latency_ms: int
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookTransport(Protocol):
    def send(self, request: Outgoing) -> Reply:
        """POST the request; never raise for what the network or the receiver does."""
        ...


class HttpTransport:
    """HTTP/1.1 with kept-alive connections per (address, port, host), shared by threads."""

    def __init__(self, *, connections_per_host: int = 32) -> None:
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()
        self._per_host = connections_per_host

    def send(self, request: Outgoing) -> Reply:
        started = time.perf_counter()

        def reply(status: int | None, body: str = "", headers: Mapping[str, str] | None = None,
                  error: str | None = None) -> Reply:  # fmt: skip
            latency = int((time.perf_counter() - started) * 1000)
            return Reply(status, body, dict(headers or {}), latency, error)

        try:
            target = parse_target(request.url, policy=request.policy)
            address = self._checked_address(target, request.policy)
        except (OSError, ValueError, AccrualError) as error:
            return reply(None, error=f"refused: {error}")
        pool = self._pool(target, address)
        headers = dict(request.headers)
        default_port = 443 if target.scheme == "https" else 80
        headers["Host"] = target.host if target.port == default_port else f"{target.host}:{target.port}"
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=request.body,
                headers=headers,
                timeout=urllib3.Timeout(total=request.timeout),
                retries=False,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as error:
            return reply(None, error=_describe(error))
        try:
            data = response.read(MAX_RESPONSE_BYTES + 1)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            response.close()
            return reply(response.status, error=f"reading the response: {_describe(error)}")
        if len(data) > MAX_RESPONSE_BYTES:
            data = data[:MAX_RESPONSE_BYTES]
            response.close()  # the rest is not read, so the connection cannot be reused
        else:
            response.release_conn()
        answered = {k.lower(): v for k, v in response.headers.items()}
        return reply(response.status, data.decode("utf-8", "replace"), answered)

    def _checked_address(self, target: Target, policy: AddressPolicy) -> str:
        literal = target.literal_address
        addresses: list[IpAddress]
        if literal is not None:
            addresses = [literal]
        else:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise OSError(f"{target.host} has no address")
        for address in addresses:
            reason = policy.refusal(address)
            if reason is not None:
                raise ValueError(f"{target.host}: {reason}")
        return str(addresses[0])

    def _pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = (
                    urllib3.HTTPSConnectionPool(
                        address,
                        target.port,
                        maxsize=self._per_host,
                        server_hostname=target.host,
                        assert_hostname=target.host,
                        cert_reqs="CERT_REQUIRED",
                    )
                    if target.scheme == "https"
                    else urllib3.HTTPConnectionPool(address, target.port, maxsize=self._per_host)
                )
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    text = str(reason or error)
    return text[:500]

"""The HTTP transport: refuses what the policy refuses before connecting, reads at most 64 KB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accrual.domain.webhooks import AddressPolicy
from accrual.integrations.webhook_transport import MAX_RESPONSE_BYTES, HttpTransport, Outgoing
from tests.webhook_support import Receiver


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    instance = HttpTransport()
    yield instance
    instance.close()


def test_a_refused_address_is_never_connected_to(transport: HttpTransport, receiver: Receiver) -> None:
    reply = transport.send(
        Outgoing(
            url=receiver.url, headers={}, body=b"{}", timeout=5.0, policy=AddressPolicy(allow_insecure=False)
        )
    )
    assert reply.status_code is None
    assert reply.error is not None
    assert reply.error.startswith("refused")
    assert receiver.received == []
    # A name that resolves to loopback is refused the same way.
    by_name = receiver.url.replace("127.0.0.1", "localhost").replace("http://", "https://")
    reply = transport.send(Outgoing(url=by_name, headers={}, body=b"{}", timeout=5.0, policy=AddressPolicy()))
    assert reply.error is not None
    assert "refused" in reply.error


def test_a_large_response_is_cut_at_64_kb(transport: HttpTransport, receiver: Receiver) -> None:
    receiver.answer((200, {"content-type": "text/plain"}, b"x" * (MAX_RESPONSE_BYTES * 4)))
    receiver.answer(204)
    policy = AddressPolicy(allow_insecure=True)
    reply = transport.send(Outgoing(url=receiver.url, headers={}, body=b"{}", timeout=5.0, policy=policy))
    assert reply.status_code == 200
    assert len(reply.body) == MAX_RESPONSE_BYTES
    # The connection it left half-read is not reused: the next request still works.
    reply = transport.send(Outgoing(url=receiver.url, headers={}, body=b"{}", timeout=5.0, policy=policy))
    assert reply.status_code == 204


def test_redirects_are_not_followed(transport: HttpTransport, receiver: Receiver) -> None:
    receiver.answer((302, {"Location": "http://127.0.0.1:1/elsewhere"}, b""))
    reply = transport.send(
        Outgoing(
            url=receiver.url, headers={}, body=b"{}", timeout=5.0, policy=AddressPolicy(allow_insecure=True)
        )
    )
    assert reply.status_code == 302
    assert not reply.succeeded
    assert len(receiver.received) == 1


def test_a_receiver_that_is_down_is_an_error_not_an_exception(
    transport: HttpTransport, receiver: Receiver
) -> None:
    receiver.stop()
    reply = transport.send(
        Outgoing(
            url=receiver.url, headers={}, body=b"{}", timeout=2.0, policy=AddressPolicy(allow_insecure=True)
        )
    )
    assert reply.status_code is None
    assert reply.error

"""Where webhooks may go, when they are tried again, and how they are signed."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from accrual.domain.errors import InvalidInput
from accrual.domain.webhooks import AddressPolicy, parse_networks, parse_retry_after, parse_target
from accrual.services.relay import sign

STRICT = AddressPolicy()
INSECURE = AddressPolicy(allow_insecure=True)


def test_signing_reproduces_the_standard_webhooks_test_vector() -> None:
    # From the Standard Webhooks specification's reference tests.
    signature = sign(
        secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=dt.datetime.fromtimestamp(1614265330, dt.UTC),
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_two_secrets_sign_twice_space_separated() -> None:
    at = dt.datetime.fromtimestamp(1614265330, dt.UTC)
    one = sign(secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], msg_id="m", timestamp=at, body=b"{}")
    two = sign(secrets=["whsec_" + "A" * 32], msg_id="m", timestamp=at, body=b"{}")
    both = sign(
        secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "A" * 32],
        msg_id="m",
        timestamp=at,
        body=b"{}",
    )
    assert both == f"{one} {two}"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "https://example.com:8443/a/b?x=1",
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_public_https_targets_are_taken(url: str) -> None:
    assert parse_target(url, policy=STRICT).url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # plain http
        "https://127.0.0.1/hook",  # loopback
        "https://localhost/hook",
        "https://10.0.0.1/hook",  # private
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest",  # link-local (cloud metadata)
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",  # unique local
        "https://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",  # multicast
        "https://u:p@example.com/hook",
        "https://example.com/hook#frag",
        "https://example.com:99999/hook",
        "mailto:a@example.com",
        "",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_unsafe_targets_are_refused_naming_the_url(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_target(url, policy=STRICT)
    assert caught.value.field == "/url"


def test_insecure_allows_plain_http_to_loopback_only() -> None:
    assert parse_target("http://127.0.0.1:8080/hook", policy=INSECURE).port == 8080
    assert parse_target("http://localhost/hook", policy=INSECURE).host == "localhost"
    with pytest.raises(InvalidInput):
        parse_target("http://example.com/hook", policy=INSECURE)
    with pytest.raises(InvalidInput):
        parse_target("https://10.0.0.1/hook", policy=INSECURE)


def test_allow_listed_networks_open_private_addresses() -> None:
    policy = AddressPolicy.of(
        allow_insecure=False, allowed_networks=parse_networks(["10.0.0.0/8"], field="/n")
    )
    assert parse_target("https://10.2.3.4/hook", policy=policy).host == "10.2.3.4"
    assert policy.refusal(ipaddress.ip_address("192.168.0.1")) is not None
    with pytest.raises(InvalidInput) as caught:
        parse_networks(["10.0.0.0/8", "nope"], field="/webhooks/allowed_networks")
    assert caught.value.field == "/webhooks/allowed_networks/1"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert parse_retry_after("120", now=now) == dt.timedelta(seconds=120)
    assert parse_retry_after("Thu, 01 Jan 2026 00:10:00 GMT", now=now) == dt.timedelta(minutes=10)
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == dt.timedelta(0)
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None

"""Which address the login throttle counts (services/auth/handlers.py: client_address).

NGINX overwrites x-forwarded-for with the address it saw and Envoy appends its peer, so with
our two proxies the caller is the entry two from the right; anything further left was
written by the client and must never become the throttle key (else rotating it would give
every guess a fresh per-client budget).
"""

from __future__ import annotations

import pytest
from multidict import MultiDict

from services.auth.domain import (
    InvalidCredentialsError,
    LoginThrottledError,
    ThrottlePolicy,
    address_key,
)
from services.auth.handlers import AuthHandlers, client_address
from services.auth.keys import KeyRing
from services.auth.service import AuthService, TokenSettings
from shop.auth.v1 import auth_pb2 as pb
from tests.unit.auth.fakes import Clock, FakeStore, FakeUsers

PEER = "10.1.0.5"  # the TCP peer: Envoy


def md(*values: str) -> MultiDict:
    return MultiDict([("x-forwarded-for", v) for v in values])


@pytest.mark.parametrize(
    ("xff", "hops", "expected"),
    [
        ("198.51.100.7, 10.1.0.4", 2, "198.51.100.7"),  # NGINX's entry, then Envoy's
        ("198.51.100.7,10.1.0.4", 2, "198.51.100.7"),
        ("  198.51.100.7 ,  10.1.0.4  ", 2, "198.51.100.7"),
        ("198.51.100.7, 10.1.0.4", 1, "10.1.0.4"),  # one trusted hop: the last entry
        ("203.0.113.9, 198.51.100.7, 10.1.0.4", 2, "198.51.100.7"),
        ("10.0.0.1, 192.168.0.1, 127.0.0.1, 198.51.100.7, 10.1.0.4", 2, "198.51.100.7"),
        ("198.51.100.7, , 10.1.0.4", 2, "198.51.100.7"),  # empty entries are not hops
        ("a, b, c", 3, "a"),
    ],
)
def test_the_entry_trusted_hops_from_the_right_is_the_client(xff, hops, expected) -> None:
    assert client_address(md(xff), PEER, hops) == expected


@pytest.mark.parametrize(
    ("metadata", "hops"),
    [
        (md(), 2),  # no header
        (MultiDict(), 2),
        (md(""), 2),
        (md(" , "), 2),
        (md("203.0.113.9"), 2),  # fewer entries than proxies: all client-written
        (md("203.0.113.9, 198.51.100.7"), 0),  # no trusted proxy: the header means nothing
        (md("203.0.113.9, 198.51.100.7"), 3),
        (None, 2),
        ({}, 2),
    ],
)
def test_without_enough_trusted_entries_the_tcp_peer_is_the_client(metadata, hops) -> None:
    assert client_address(metadata, PEER, hops) == PEER


def test_spoofed_left_most_entries_never_become_the_address() -> None:
    spoofs = ["1.2.3.4", "127.0.0.1", "::1", "unknown", "x" * 300, "203.0.113.9, 203.0.113.10"]
    for spoof in spoofs:
        got = client_address(md(f"{spoof}, 198.51.100.7, 10.1.0.4"), PEER, 2)
        assert got == "198.51.100.7", spoof


def test_the_address_is_bounded_whatever_the_trusted_entry_says() -> None:
    assert client_address(md("a" * 500 + ", 10.1.0.4"), PEER, 2) == "a" * 64


class FakeStream:
    """What Login reads from a grpclib stream: the request, metadata and peer."""

    def __init__(self, request: pb.LoginRequest, metadata: MultiDict) -> None:
        self.request, self.metadata, self.sent = request, metadata, []
        self.peer = type("Peer", (), {"addr": staticmethod(lambda: (PEER, 41000))})()

    async def recv_message(self) -> pb.LoginRequest:
        return self.request

    async def send_message(self, message: object) -> None:
        self.sent.append(message)


async def test_login_throttles_the_proxied_client_however_it_rotates_its_own_entries() -> None:
    clock, store = Clock(), FakeStore()
    ring = KeyRing(b"k" * 32, 900, 86400, 300, clock)
    ring.load([ring.next_key_due()])
    users = FakeUsers()
    users.add("alice@example.com", "correct horse", "alice")
    service = AuthService(
        users,
        store,
        ring,
        TokenSettings("https://auth.test", "shop"),
        ThrottlePolicy(max_attempts=100, free_failures=50, window_s=60),
        ThrottlePolicy(max_attempts=100, free_failures=5, window_s=60, base_lock_s=2),
        clock,
    )
    handlers = AuthHandlers(service, trusted_hops=2)

    async def login(email: str, password: str, spoof: str) -> None:
        xff = md(f"{spoof}, 198.51.100.7, 10.1.0.4")
        await handlers.Login(FakeStream(pb.LoginRequest(email=email, password=password), xff))

    # Five different accounts, one wrong password each, every time "from" another address.
    for i in range(5):
        with pytest.raises(InvalidCredentialsError):
            await login(f"user{i}@example.com", "wrong", f"203.0.113.{i}")
    assert set(k for k in store.throttle if k.startswith("ip:")) == {address_key("198.51.100.7")}
    with pytest.raises(LoginThrottledError):  # the right password, yet another "address"
        await login("alice@example.com", "correct horse", "203.0.113.200")
    # Another client behind the same proxies is not affected.
    stream = FakeStream(
        pb.LoginRequest(email="alice@example.com", password="correct horse"),
        md("198.51.100.99, 10.1.0.4"),
    )
    await handlers.Login(stream)
    assert stream.sent[0].tokens.user_id == "alice"

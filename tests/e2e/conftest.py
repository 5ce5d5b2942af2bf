"""Fixtures shared by the e2e modules: the gateway client, two registered shoppers and the
auth service's signing key (tests/e2e/auth_accounts.py). A module defining a fixture of the
same name uses its own."""

from tests.e2e.auth_accounts import alice, bob, gw, signing_key

__all__ = ["alice", "bob", "gw", "signing_key"]

"""Tokens: signed, expiring, and checked on every use (a verified token is remembered, its
expiry is not)."""

from __future__ import annotations

import time

import pytest

from server.auth import TokenSigner
from server.refusals import Unauthenticated

SECRET = b"test-secret-test-secret"


def test_a_remembered_token_still_expires_and_a_forged_one_is_never_remembered():
    signer = TokenSigner(SECRET)
    token = signer.issue("member", "s1", "M1", ttl_s=60)
    first = signer.verify(token)
    assert (first.role, first.session, first.subject) == ("member", "s1", "M1")
    assert signer.verify(token) is first  # remembered: no second HMAC or parse
    with pytest.raises(Unauthenticated) as expired:
        signer.verify(token, now=time.time() + 120)
    assert "expired" in expired.value.reason

    payload, mac = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    for _ in range(2):  # refused each time, however often it is shown
        with pytest.raises(Unauthenticated) as bad:
            signer.verify(forged)
        assert bad.value.reason in ("malformed token", "invalid token signature")
    other = TokenSigner(b"another-secret-another")
    with pytest.raises(Unauthenticated):
        other.verify(token)  # a remembered token is remembered by its own signer only

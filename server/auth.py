"""Signed, expiring tokens: ``base64url(json payload) . base64url(HMAC-SHA256)``.

Roles: ``admin`` (no session), ``lecturer``, ``viewer`` (the open session link), ``room``
(one township classroom) and ``member`` (one person). A token names its session, so a
lecturer's token for one lecture opens nothing of another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from server.files import refuse_shared
from server.interprocess import internal_token
from server.refusals import Forbidden, Unauthenticated

ROLES = ("admin", "school", "lecturer", "viewer", "room", "member")


@dataclass(frozen=True)
class Claims:
    role: str
    session: str | None
    subject: str | None
    expires: int
    # How the subject was identified: "token" (a personal link) or "open" (the member typed
    # their id and name on the session's open link, checked against the roster).
    via: str = "token"

    @property
    def participant(self) -> str:
        """``role:subject``, as attendance names a member or a room (``member:M1``)."""
        return f"{self.role}:{self.subject}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


VERIFIED_CACHE = 16_384  # tokens; the cache starts over when full


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._key = secret
        # Tokens already verified (a page shows its token on every request): the HMAC, the
        # decoding and the parse are done once per token, the expiry is checked every time.
        self._verified: dict[str, Claims] = {}

    def issue(
        self,
        role: str,
        session: str | None,
        subject: str | None = None,
        ttl_s: int = 3600,
        via: str = "token",
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        body = {"r": role, "s": session, "u": subject, "e": int(time.time()) + ttl_s}
        if via != "token":
            body["v"] = via
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return payload + "." + _b64(self._mac(payload))

    def issue_under(
        self,
        presented: Claims,
        role: str,
        session: str | None,
        subject: str | None,
        ttl_s: int,
        via: str | None = None,
    ) -> str:
        """A token minted on the strength of ``presented`` (another session's link, an open
        link's identification): it expires no later than the presented one, and says the
        subject was identified as that one says (``via``, unless given). Minting had made
        7-day tokens from one with minutes left, renewable for ever."""
        left = presented.expires - int(time.time())
        return self.issue(role, session, subject, min(ttl_s, left), via or presented.via)

    def verify(self, token: str, now: float | None = None) -> Claims:
        """Return the claims, or raise Unauthenticated (malformed, forged, expired)."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires < (time.time() if now is None else now):
            raise Unauthenticated("token expired")
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            payload, mac = token.split(".")
            good = hmac.compare_digest(_unb64(mac), self._mac(payload))
        except ValueError:
            raise Unauthenticated("malformed token") from None
        if not good:
            raise Unauthenticated("invalid token signature")
        try:
            body = json.loads(_unb64(payload))
            claims = Claims(body["r"], body["s"], body["u"], int(body["e"]), body.get("v", "token"))
        except (ValueError, KeyError, TypeError):
            raise Unauthenticated("malformed token") from None
        return claims

    def opaque(self, text: str) -> str:
        """A stable stand-in for ``text`` (a room code, a member id) where everyone of a
        session reads it: without the secret, not reversible and not guessable."""
        return hmac.new(self._key, b"opaque:" + text.encode(), hashlib.sha256).hexdigest()[:16]

    def internal_token(self) -> str:
        """The token relay processes show each other (derived, never a token of a user)."""
        return internal_token(self._key)

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()


def load_or_create_secret(data_dir: Path) -> bytes:
    """The install's signing secret, created once with mode 0600; never in git."""
    path = data_dir / "secret.key"
    if path.exists():
        refuse_shared(path)
        return path.read_bytes()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def signer_for(secret: str | None, data_dir: Path) -> TokenSigner:
    """The configured secret, else the install's own (created on first use)."""
    return TokenSigner(secret.encode() if secret else load_or_create_secret(data_dir))


def authorize(claims: Claims, roles: tuple[str, ...], session: str | None = None) -> Claims:
    """Forbidden unless the claims' role is one of ``roles`` and, but for an admin, the token is
    for ``session``."""
    if claims.role not in roles:
        raise Forbidden(f"role {claims.role} may not do this")
    if session is not None and claims.role != "admin" and claims.session != session:
        raise Forbidden("token is for another session")
    return claims

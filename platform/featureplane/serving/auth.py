"""API keys on lookup requests: the ``Authorization`` header verified, and remembered for a while."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from featureplane.serving.protocol import ApiError, Request, Route

if TYPE_CHECKING:
    from featureplane.access.base import Identity
    from featureplane.access.verifier import KeyVerifier

log = logging.getLogger("featureplane.serving")


class RequestAuthenticator:
    """Who a request is, from its ``Authorization: Tecton-key <key>`` (or ``Bearer <key>``) header."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self.verifier = verifier
        self._verified: dict[str, tuple[Identity, float]] = {}  # Authorization header -> (identity, until)

    def authenticate(self, request: Request, route: Route) -> Identity:
        identity = self.known_identity(request)
        if identity is None:
            headers = request.headers
            identity = self._verify(headers.get("authorization") or headers.get("Authorization"))
        if not identity.can(route.permission):
            raise ApiError(403, f"{identity.describe()} may not call {route.endpoint}")
        return identity

    def known_identity(self, request: Request) -> Identity | None:
        """The identity of an ``Authorization`` header verified before and not yet due for checking
        again (see ``_verify``); None otherwise."""
        headers = request.headers
        header = headers.get("authorization") or headers.get("Authorization")
        known = self._verified.get(header) if header else None
        return known[0] if known is not None and known[1] > time.monotonic() else None

    def _verify(self, header: str | None) -> Identity:
        """The identity of a valid ``Authorization`` header; remembered for as long as the verifier
        remembers its key, so that a request with a known header skips parsing and verifying it."""
        challenge = {"WWW-Authenticate": 'Tecton-key realm="featureplane"'}
        if not header:
            raise ApiError(
                401,
                "missing API key: send the header 'Authorization: Tecton-key <key>' (or 'Bearer <key>'); "
                "create a key with `featureplane api-key create`",
                challenge,
            )
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() not in ("tecton-key", "bearer") or not key:
            raise ApiError(
                401, "the Authorization header must be 'Tecton-key <key>' or 'Bearer <key>'", challenge
            )
        try:
            identity, until = self.verifier.verify_until(key)
        except Exception:
            log.exception("verifying an API key failed")
            raise ApiError(
                503, "cannot verify API keys right now (the registry is unavailable); retry"
            ) from None
        if identity is None:
            raise ApiError(401, "invalid or revoked API key", challenge)
        if len(self._verified) >= 10_000:  # bounded: made-up keys are never remembered, but be safe
            self._verified.clear()
        self._verified[header] = (identity, until)
        return identity

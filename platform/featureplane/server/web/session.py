"""The web UI's session cookie and its CSRF defences.

The cookie holds the session token of ``POST /api/v1/login`` (HttpOnly, SameSite=Lax, Secure over https,
Path=/), so a page's caller is resolved exactly as an API caller with that token. Every form carries a
CSRF token: an HMAC of the session id keyed by the session token, which only the cookie's holder can
compute and nothing has to store. The sign-in form, before any session, uses a random value that must
match a cookie of its own (double submit). A POST whose Origin is another site's is refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from featureplane.access.base import SESSION_PREFIX
from featureplane.server.auth import Caller, caller_for_token
from featureplane.server.errors import ApiError
from featureplane.server.state import server_state

SESSION_COOKIE = "featureplane_session"
SIGN_IN_COOKIE = "featureplane_signin"
CSRF_FIELD = "csrf_token"


class SignInNeeded(Exception):
    """The page needs a signed-in user: the answer is a redirect to the sign-in page."""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))


def page_caller(request: Request) -> Caller:
    """The signed-in user of the session cookie (only session tokens: an API key is not a sign-in)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token.startswith(f"{SESSION_PREFIX}_"):
        raise SignInNeeded
    caller = caller_for_token(server_state(request), token)
    if caller is None or caller.session is None:
        raise SignInNeeded
    request.state.caller = caller
    return caller


def optional_caller(request: Request) -> Caller | None:
    try:
        return page_caller(request)
    except SignInNeeded:
        return None


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session (empty without one)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    token = request.cookies.get(SESSION_COOKIE, "")
    if caller is None or caller.session is None or not token:
        return ""
    digest = hmac.new(token.encode(), f"csrf:{caller.session.id}".encode(), hashlib.sha256)
    return digest.hexdigest()


def sign_in_token(request: Request) -> str:
    """The sign-in form's token: its cookie's value, or a new one (``remember_sign_in_token`` sets it)."""
    value = request.cookies.get(SIGN_IN_COOKIE, "")
    return value if len(value) == 43 else secrets.token_urlsafe(32)


def remember_sign_in_token(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE, value, path="/ui/sign-in", httponly=True, samesite="strict", secure=_secure(request)
    )


def _same_origin(request: Request) -> bool:
    """No Origin (an old client; the CSRF token still guards) or this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin == f"{request.url.scheme}://{host}"


def check_post(request: Request, form: dict[str, str], expected: str) -> None:
    """403 (and nothing changes) for a cross-origin POST or one without the right CSRF token."""
    if not _same_origin(request):
        raise ApiError(403, "forbidden", "this form was sent from another site (Origin mismatch)")
    sent = form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(
            403, "forbidden", "the form's CSRF token is missing or wrong: reload the page and try again"
        )

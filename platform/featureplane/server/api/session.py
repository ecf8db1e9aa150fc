"""Signing in and out, and who the caller is: ``/api/v1/login``, ``/logout``, ``/me``."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response

from featureplane.access.base import AccessError
from featureplane.server.auth import CallerDep, client_address
from featureplane.server.errors import ApiError, forbidden, unauthenticated
from featureplane.server.models import (
    ErrorOut,
    LoginRequest,
    LoginResponse,
    Me,
    PasswordChange,
    RoleOut,
)
from featureplane.server.state import server_state

router = APIRouter(tags=["session"])
WRONG = "wrong user name or password"


@router.post(
    "/login",
    response_model=LoginResponse,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
def login(body: LoginRequest, request: Request) -> LoginResponse:
    """Exchange a user name and password for a session token (shown only here). Failed attempts are
    limited per user and per client address: past the limit the answer is 429 with Retry-After."""
    state = server_state(request)
    address = client_address(request)
    wait = state.limiter.retry_after(body.user, address)
    if wait is not None:
        state.audit("anonymous", request, "login.limited", target=f"user:{body.user}")
        raise ApiError(
            429,
            "rate_limited",
            f"too many failed sign-ins for this user or from this address: try again in {math.ceil(wait)} s",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    user = state.access.verify_password(body.user, body.password)
    if user is None:
        state.limiter.failed(body.user, address)
        state.audit("anonymous", request, "login.failed", target=f"user:{body.user}")
        raise unauthenticated(WRONG)
    created = state.access.create_session(user.name, state.settings.session_ttl_seconds, source_ip=address)
    state.audit(user.principal_id, request, "login", target=f"session {created.info.id}")
    return LoginResponse(token=created.token, user=user.name, expires_at=created.info.expires_at)


@router.post("/logout", status_code=204, responses={401: {"model": ErrorOut}})
def logout(caller: CallerDep, request: Request) -> Response:
    """End the session whose token the request carries (an API key is revoked, not logged out)."""
    if caller.session is None:
        raise ApiError(400, "invalid", "an API key has no session to end: revoke it with api-key revoke")
    state = server_state(request)
    state.access.revoke_session(caller.session.id)
    state.audit(caller.principal_id, request, "logout", target=f"session {caller.session.id}")
    return Response(status_code=204)


@router.get("/me", response_model=Me, responses={401: {"model": ErrorOut}})
def me(caller: CallerDep) -> Me:
    """The caller: principal, whether a server admin, and the roles it holds."""
    return Me(
        principal=caller.principal_id,
        kind=caller.kind,  # type: ignore[arg-type]
        name=caller.name,
        admin=caller.admin,
        via=caller.via,  # type: ignore[arg-type]
        key_id=caller.key_id,
        session_expires_at=caller.session.expires_at if caller.session else None,
        roles=[
            RoleOut(principal=b.principal_id, workspace=b.workspace, role=b.role) for b in caller.bindings
        ],
    )


@router.put(
    "/me/password",
    status_code=204,
    responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
def change_password(body: PasswordChange, caller: CallerDep, request: Request) -> Response:
    """Change your own password (signed in with a session); every session of yours ends, this one
    too: sign in again with the new password."""
    state = server_state(request)
    if caller.session is None:
        raise forbidden("sign in with a session to change your password")
    if state.access.verify_password(caller.name, body.current_password) is None:
        raise ApiError(400, "invalid", "the current password is wrong")
    try:
        state.access.set_password(caller.name, body.new_password)
    except AccessError as exc:
        raise ApiError(400, "invalid", str(exc)) from None
    state.access.revoke_user_sessions(caller.name)
    state.audit(caller.principal_id, request, "user.password", target=caller.principal_id)
    return Response(status_code=204)

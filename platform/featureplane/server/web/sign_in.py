"""Signing in and out of the web UI, through the same code as ``POST /api/v1/login`` and ``/logout``
(password check, rate limit, audit), with the session token kept in a cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from featureplane.server.api import session as session_api
from featureplane.server.errors import ApiError
from featureplane.server.models import LoginRequest
from featureplane.server.state import server_state
from featureplane.server.web.render import PREFIX, form_fields, invalid_fields, page, render
from featureplane.server.web.session import (
    SIGN_IN_COOKIE,
    check_post,
    clear_session_cookie,
    csrf_token,
    optional_caller,
    page_caller,
    remember_sign_in_token,
    set_session_cookie,
    sign_in_token,
)

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, str], Depends(form_fields)]
HOME = f"{PREFIX}/workspaces"


def _next(value: str | None) -> str:
    """Where to go after signing in: a page of this UI only (never another site)."""
    if value and value.startswith(f"{PREFIX}/") and "//" not in value and "\\" not in value:
        return value
    return HOME


def _form(
    request: Request, status: int = 200, message: str = "", user: str = "", target: str = ""
) -> Response:
    token = sign_in_token(request)
    response = render(
        request, "sign_in.html", status, title="Sign in", message=message, user=user, next=target,
        sign_in_csrf=token,
    )  # fmt: skip
    remember_sign_in_token(request, response, token)
    return response


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get(f"{PREFIX}/sign-in")
@page
def sign_in_page(request: Request, next: str | None = None) -> Response:
    if optional_caller(request) is not None:
        return RedirectResponse(_next(next), status_code=303)
    return _form(request, target=_next(next))


@router.post(f"{PREFIX}/sign-in")
@page
def sign_in(request: Request, form: Form) -> Response:
    check_post(request, form, request.cookies.get(SIGN_IN_COOKIE, ""))
    user, target = form.get("user", ""), _next(form.get("next"))
    try:
        body = LoginRequest(user=user, password=form.get("password", ""))
    except ValidationError as exc:
        return _form(request, 400, invalid_fields(exc), user=user, target=target)
    try:
        answer = session_api.login(body, request)
    except ApiError as exc:
        response = _form(request, exc.status, exc.detail, user=user, target=target)
        if exc.headers and "Retry-After" in exc.headers:
            response.headers["Retry-After"] = exc.headers["Retry-After"]
        return response
    response = RedirectResponse(target, status_code=303)
    ttl = int(server_state(request).settings.session_ttl_seconds)
    set_session_cookie(request, response, answer.token, ttl)
    response.delete_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post(f"{PREFIX}/sign-out")
@page
def sign_out(request: Request, form: Form) -> Response:
    caller = page_caller(request)
    check_post(request, form, csrf_token(request))
    session_api.logout(caller, request)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    clear_session_cookie(request, response)
    return response

"""Pages that change access: a workspace's members and roles, its API keys, and service accounts.

Every change goes through the JSON API's route function with the signed-in caller (the same checks,
the same audit events), after the form's Origin and CSRF token are checked. A new API key is shown
once: the POST stores it in memory for the page it redirects to, which takes it out as it renders.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from featureplane.access.roles import WORKSPACE_ROLES, Permission
from featureplane.server.api import access as access_api
from featureplane.server.api import users as users_api
from featureplane.server.auth import Caller, visible_workspace
from featureplane.server.errors import ApiError, not_found
from featureplane.server.models import (
    KEY_ID_PATTERN,
    PRINCIPAL_NAME_PATTERN,
    PRINCIPAL_PATTERN,
    AccountKeyCreate,
    ApiKeyCreate,
    RoleAssign,
    ServiceAccountCreate,
)
from featureplane.server.state import server_state
from featureplane.server.web.render import PREFIX, form_fields, invalid_fields, page, render
from featureplane.server.web.session import check_post, csrf_token, page_caller
from featureplane.server.web.workspaces import checked_name, workspace_context

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, str], Depends(form_fields)]
KEY_ROLES = ("consumer", "ingest", "admin")


class ShownOnce:
    """New API keys waiting for the one page that shows them (per session, for a minute at most)."""

    TTL_SECONDS = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[str, float, dict[str, str]]] = {}

    def put(self, session_id: str, shown: dict[str, str]) -> str:
        ticket = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            self._waiting = {t: w for t, w in self._waiting.items() if w[1] > now}
            self._waiting[ticket] = (session_id, now + self.TTL_SECONDS, shown)
        return ticket

    def take(self, session_id: str, ticket: str | None) -> dict[str, str] | None:
        if not ticket:
            return None
        with self._lock:
            waiting = self._waiting.get(ticket)
            if waiting is None or waiting[0] != session_id:
                return None
            del self._waiting[ticket]
        return waiting[2] if waiting[1] >= time.monotonic() else None


def shown_once(request: Request) -> ShownOnce:
    return request.app.state.featureplane_shown_once


def _session_id(caller: Caller) -> str:
    return caller.session.id if caller.session else ""


def _posted(request: Request, form: dict[str, str]) -> Caller:
    caller = page_caller(request)
    check_post(request, form, csrf_token(request))
    return caller


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- members and roles ------------------------------------------------------------------------------


def _members(request: Request, caller: Caller, workspace: str, status: int = 200, message: str = "",
             form: dict[str, str] | None = None) -> Response:  # fmt: skip
    context = workspace_context(request, caller, workspace, "/members")
    name = context["workspace"].name
    roles = access_api.list_roles(caller, request, workspace=name)
    return render(
        request, "members.html", status, **context, message=message, roles=roles,
        choices=WORKSPACE_ROLES, form=form or {},
    )  # fmt: skip


@router.get(f"{PREFIX}/workspaces/{{workspace}}/members")
@page
def members_page(workspace: str, request: Request) -> Response:
    return _members(request, page_caller(request), workspace)


@router.post(f"{PREFIX}/workspaces/{{workspace}}/members")
@page
def grant_role(workspace: str, request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    name = checked_name(workspace)
    try:
        body = RoleAssign(
            principal=form.get("principal", "").strip(), workspace=name, role=form.get("role", "")
        )
    except ValidationError as exc:
        visible_workspace(server_state(request), caller, name, Permission.MANAGE_ACCESS, "assign roles")
        return _members(request, caller, name, 400, invalid_fields(exc), form)
    access_api.assign_role(body, caller, request)
    return _back(f"{PREFIX}/workspaces/{name}/members")


@router.post(f"{PREFIX}/workspaces/{{workspace}}/members/remove")
@page
def remove_role(workspace: str, request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    name = checked_name(workspace)
    visible_workspace(server_state(request), caller, name, Permission.MANAGE_ACCESS, "remove roles")
    principal, role = form.get("principal", ""), form.get("role", "")
    if not re.fullmatch(PRINCIPAL_PATTERN, principal) or role not in WORKSPACE_ROLES:
        raise ApiError(400, "invalid", "principal and role: the role to remove is not one of the workspace's")
    access_api.remove_role(caller, request, principal=principal, workspace=name, role=role)
    return _back(f"{PREFIX}/workspaces/{name}/members")


# -- API keys ---------------------------------------------------------------------------------------


def _keys(request: Request, caller: Caller, workspace: str, status: int = 200, message: str = "",
          created: dict[str, str] | None = None) -> Response:  # fmt: skip
    context = workspace_context(request, caller, workspace, "/keys")
    keys = access_api.list_api_keys(caller, request, workspace=context["workspace"].name)
    return render(
        request, "keys.html", status, **context, message=message, keys=keys, created=created,
        key_roles=KEY_ROLES,
    )  # fmt: skip


@router.get(f"{PREFIX}/workspaces/{{workspace}}/keys")
@page
def keys_page(workspace: str, request: Request, shown: str | None = None) -> Response:
    caller = page_caller(request)
    return _keys(request, caller, workspace, created=shown_once(request).take(_session_id(caller), shown))


@router.post(f"{PREFIX}/workspaces/{{workspace}}/keys")
@page
def create_key(workspace: str, request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    name = checked_name(workspace)
    try:
        body = ApiKeyCreate(
            workspace=name, role=form.get("role", "consumer"), description=form.get("description", "")
        )
    except ValidationError as exc:
        return _keys(request, caller, name, 400, invalid_fields(exc))
    created = access_api.create_api_key(body, caller, request)
    shown = {"key": created.key, "id": created.info.id, "principal": created.info.principal}
    ticket = shown_once(request).put(_session_id(caller), shown)
    return _back(f"{PREFIX}/workspaces/{name}/keys?shown={ticket}")


@router.post(f"{PREFIX}/workspaces/{{workspace}}/keys/{{key_id}}/revoke")
@page
def revoke_key(workspace: str, key_id: str, request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    name = checked_name(workspace)
    visible_workspace(server_state(request), caller, name, Permission.MANAGE_ACCESS, "revoke API keys")
    if not re.fullmatch(KEY_ID_PATTERN, key_id):
        raise not_found(f"no API key with id {key_id[:40]!r} that you manage")
    access_api.revoke_api_key(key_id, caller, request)
    return _back(f"{PREFIX}/workspaces/{name}/keys")


# -- service accounts -------------------------------------------------------------------------------


def _accounts(request: Request, caller: Caller, status: int = 200, message: str = "",
              created: dict[str, str] | None = None, form: dict[str, str] | None = None) -> Response:  # fmt: skip
    accounts = users_api.list_service_accounts(caller, request)
    return render(
        request, "service_accounts.html", status, title="Service accounts", message=message,
        accounts=accounts, created=created, form=form or {}, may_create=caller.manages_some_workspace(),
    )  # fmt: skip


@router.get(f"{PREFIX}/service-accounts")
@page
def accounts_page(request: Request, shown: str | None = None) -> Response:
    caller = page_caller(request)
    return _accounts(request, caller, created=shown_once(request).take(_session_id(caller), shown))


@router.post(f"{PREFIX}/service-accounts")
@page
def create_account(request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    try:
        body = ServiceAccountCreate(
            name=form.get("name", "").strip(), description=form.get("description", "")
        )
    except ValidationError as exc:
        return _accounts(request, caller, 400, invalid_fields(exc), form=form)
    users_api.create_service_account(body, caller, request)
    return _back(f"{PREFIX}/service-accounts")


@router.post(f"{PREFIX}/service-accounts/{{name}}/keys")
@page
def create_account_key(name: str, request: Request, form: Form) -> Response:
    caller = _posted(request, form)
    if not re.fullmatch(PRINCIPAL_NAME_PATTERN, name):
        raise not_found(f"no service account {name[:128]!r} that you manage")
    try:
        body = AccountKeyCreate(description=form.get("description", ""))
    except ValidationError as exc:
        return _accounts(request, caller, 400, invalid_fields(exc))
    created = users_api.create_account_key(name, body, caller, request)
    shown: dict[str, Any] = {"key": created.key, "id": created.info.id, "principal": created.info.principal}
    ticket = shown_once(request).put(_session_id(caller), shown)
    return _back(f"{PREFIX}/service-accounts?shown={ticket}")

"""Roles on workspaces and API keys: ``/api/v1/roles``, ``/api/v1/api-keys``.

Only owners of a workspace (and server admins) change its roles and keys; roles on every workspace
(``*``) are changed by owners on ``*`` and admins. Every change is in the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from featureplane.access.base import ApiKeyInfo, RoleBinding
from featureplane.access.roles import ALL_WORKSPACES, Permission
from featureplane.server.auth import Caller, CallerDep, require, visible_workspace
from featureplane.server.errors import ApiError, not_found
from featureplane.server.models import (
    PRINCIPAL_PATTERN,
    ROLE,
    ApiKeyCreate,
    ApiKeyOut,
    CreatedKeyOut,
    ErrorOut,
    KeyIdPath,
    RoleAssign,
    RoleOut,
    ScopeQuery,
    WorkspaceQuery,
)
from featureplane.server.state import ServerState, server_state

router = APIRouter(tags=["roles and API keys"])
ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


def role_out(binding: RoleBinding) -> RoleOut:
    return RoleOut(principal=binding.principal_id, workspace=binding.workspace, role=binding.role)


def key_out(info: ApiKeyInfo) -> ApiKeyOut:
    return ApiKeyOut(
        id=info.id,
        principal=info.principal_id,
        roles=[role_out(b) for b in info.bindings],
        description=info.description,
        active=info.active,
        created_at=info.created_at,
        created_by=info.created_by,
        revoked_at=info.revoked_at,
    )


def _check_scope(state: ServerState, caller: Caller, workspace: str, action: str) -> None:
    """Owners of ``workspace`` (of ``*`` for ``*``) and admins may change roles on it."""
    if workspace == ALL_WORKSPACES:
        require(caller, Permission.MANAGE_ACCESS, ALL_WORKSPACES, action)
    else:
        visible_workspace(state, caller, workspace, Permission.MANAGE_ACCESS, action)


@router.get("/roles", response_model=list[RoleOut], responses=ERRORS)
def list_roles(caller: CallerDep, request: Request, workspace: ScopeQuery = None) -> list[RoleOut]:
    """Who holds which role: on one workspace and on ``*`` if given (viewers of it and up), else on
    every workspace the caller can view."""
    state = server_state(request)
    if workspace is not None and workspace != ALL_WORKSPACES:
        visible_workspace(
            state, caller, workspace, Permission.VIEW, f"list the roles on workspace {workspace!r}"
        )
        return [role_out(b) for b in state.access.bindings(workspace)]
    bindings = state.access.bindings()
    if workspace == ALL_WORKSPACES:
        bindings = [b for b in bindings if b.workspace == ALL_WORKSPACES]
    return [
        role_out(b)
        for b in bindings
        if b.principal_id == caller.principal_id or caller.can(Permission.VIEW, b.workspace)
    ]


@router.post("/roles", status_code=201, response_model=RoleOut, responses=ERRORS)
def assign_role(body: RoleAssign, caller: CallerDep, request: Request) -> RoleOut:
    """Give a user or service account a role on a workspace (or ``*``). A user named for the first time
    is created without a password (they cannot sign in until an admin sets one)."""
    state = server_state(request)
    _check_scope(state, caller, body.workspace, f"assign roles on workspace {body.workspace!r}")
    binding = state.access.assign_role(
        body.principal, body.workspace, body.role, assigned_by=caller.principal_id
    )
    state.audit(caller.principal_id, request, "role.assign", body.workspace, body.principal, body.role)
    state.export_snapshot()
    return role_out(binding)


@router.delete("/roles", response_model=RoleOut, responses=ERRORS)
def remove_role(
    caller: CallerDep,
    request: Request,
    principal: Annotated[str, Query(pattern=PRINCIPAL_PATTERN)],
    workspace: Annotated[str, Query(pattern=r"^(\*|[A-Za-z_][A-Za-z0-9_]{0,127})$")],
    role: Annotated[ROLE, Query()],
) -> RoleOut:
    """Take a role away; it takes effect on the principal's next request."""
    state = server_state(request)
    _check_scope(state, caller, workspace, f"remove roles on workspace {workspace!r}")
    state.access.remove_role(principal, workspace, role)
    state.audit(caller.principal_id, request, "role.remove", workspace, principal, role)
    state.export_snapshot()
    return RoleOut(principal=principal, workspace=workspace, role=role)


def _may_see_key(caller: Caller, info: ApiKeyInfo) -> bool:
    """Admins see every key; others the keys they created or hold, or that act on a workspace they own."""
    if caller.admin or info.created_by == caller.principal_id or info.principal_id == caller.principal_id:
        return True
    return any(caller.can(Permission.MANAGE_ACCESS, b.workspace) for b in info.bindings)


def _may_revoke_key(caller: Caller, info: ApiKeyInfo) -> bool:
    """Admins, the key's creator, and owners of every workspace it holds a role on."""
    if caller.admin or info.created_by == caller.principal_id:
        return True
    return bool(info.bindings) and all(
        caller.can(Permission.MANAGE_ACCESS, b.workspace) for b in info.bindings
    )


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=ERRORS)
def list_api_keys(caller: CallerDep, request: Request, workspace: WorkspaceQuery = None) -> list[ApiKeyOut]:
    """API keys (ids, roles, status; never the keys) the caller manages, on one workspace if given."""
    state = server_state(request)
    if workspace is not None:
        visible_workspace(
            state,
            caller,
            workspace,
            Permission.MANAGE_ACCESS,
            f"list the API keys of workspace {workspace!r}",
        )
    elif not caller.manages_some_workspace():
        raise ApiError(
            403,
            "forbidden",
            f"{caller.principal_id} may not list API keys: that needs the owner role on a workspace",
        )
    return [key_out(k) for k in state.access.list_api_keys(workspace) if _may_see_key(caller, k)]


@router.post("/api-keys", status_code=201, response_model=CreatedKeyOut, responses=ERRORS)
def create_api_key(body: ApiKeyCreate, caller: CallerDep, request: Request) -> CreatedKeyOut:
    """A new service account with one key and a lookup role on a workspace (owners). The key is in this
    response only; the server keeps its SHA-256 digest."""
    state = server_state(request)
    visible_workspace(
        state,
        caller,
        body.workspace,
        Permission.MANAGE_ACCESS,
        f"create API keys for workspace {body.workspace!r}",
    )
    created = state.access.create_api_key(
        body.workspace, body.role, description=body.description, created_by=caller.principal_id
    )
    state.audit(
        caller.principal_id, request, "api_key.create", body.workspace, f"key {created.info.id}", body.role
    )
    state.export_snapshot()
    return CreatedKeyOut(key=created.secret, info=key_out(created.info))


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, responses=ERRORS)
def revoke_api_key(key_id: KeyIdPath, caller: CallerDep, request: Request) -> ApiKeyOut:
    """Revoke a key by its id: it stops working at once here (lookup services: within their refresh)."""
    state = server_state(request)
    known = next((k for k in state.access.list_api_keys() if k.id == key_id), None)
    if known is None or not _may_see_key(caller, known):
        raise not_found(f"no API key with id {key_id!r} that you manage")
    if not _may_revoke_key(caller, known):
        workspaces = ", ".join(sorted({b.workspace for b in known.bindings}))
        raise ApiError(
            403,
            "forbidden",
            f"{caller.principal_id} may not revoke API key {key_id}: that needs the owner "
            f"role on every workspace it holds a role on ({workspaces})",
        )
    info = state.access.revoke_api_key(key_id, revoked_by=caller.principal_id)
    for workspace in sorted({b.workspace for b in info.bindings}) or [""]:
        state.audit(
            caller.principal_id, request, "api_key.revoke", workspace, f"key {key_id}", info.principal_id
        )
    state.export_snapshot()
    return key_out(info)

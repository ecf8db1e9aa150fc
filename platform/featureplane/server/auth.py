"""Who is calling, and what they may do: every route depends on ``authenticate`` and checks here.

A request carries ``Authorization: Bearer <token>``: a session token from ``POST /api/v1/login`` or an
API key. Server admins may do everything. Everyone else acts through their roles: a workspace on which
the caller holds no role answers 404, exactly as one that does not exist (its name is not confirmed);
a workspace they can see but may not change answers 403, naming the role that would allow it.

A service account holding one of the lookup API's key roles (``consumer``, ``ingest``, ``admin``) gets
only what that role means to the lookup API: a consumer key reads a workspace's features and nothing
else (no plans, history, members, keys or audit). Workspace roles given to a service account (``editor``
for CI, say) grant what they grant people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from featureplane.access.authorize import least_role
from featureplane.access.base import KEY_PREFIX, SESSION_PREFIX, AccessError, RoleBinding, SessionInfo
from featureplane.access.roles import ALL_WORKSPACES, API_KEY_ROLES, Permission, permissions_of
from featureplane.registry.base import WorkspaceInfo, WorkspaceNotFound
from featureplane.server.errors import forbidden, unauthenticated, workspace_not_found
from featureplane.server.state import ServerState, server_state

# What the lookup API's key roles mean on a service account.
_LOOKUP_ONLY = {
    "consumer": frozenset({Permission.READ_FEATURES}),
    "ingest": frozenset({Permission.INGEST}),
    "admin": frozenset({Permission.READ_FEATURES, Permission.INGEST}),
}
READ = (Permission.VIEW, Permission.READ_FEATURES)

bearer = HTTPBearer(auto_error=False, description="a session token (POST /api/v1/login) or an API key")


@dataclass(frozen=True)
class Caller:
    principal_id: str
    kind: str
    name: str
    admin: bool
    bindings: tuple[RoleBinding, ...]
    via: str
    key_id: str | None = None
    session: SessionInfo | None = None
    _grants: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        grants: dict[str, set[str]] = {}
        for binding in self.bindings:
            permissions = permissions_of(binding.role)
            if self.kind == "service_account" and binding.role in API_KEY_ROLES:
                permissions = _LOOKUP_ONLY[binding.role]
            grants.setdefault(binding.workspace, set()).update(permissions)
        object.__setattr__(self, "_grants", {w: frozenset(p) for w, p in grants.items()})

    def _permissions(self, workspace: str) -> frozenset[str]:
        return self._grants.get(workspace, frozenset()) | self._grants.get(ALL_WORKSPACES, frozenset())

    def can(self, permission: str, workspace: str) -> bool:
        return self.admin or permission in self._permissions(workspace)

    def can_any(self, permissions: tuple[str, ...], workspace: str) -> bool:
        return self.admin or bool(self._permissions(workspace) & set(permissions))

    def sees(self, workspace: str) -> bool:
        """Whether the caller holds any role on the workspace (so may learn that it exists)."""
        return self.admin or bool(self._permissions(workspace))

    def manages_some_workspace(self) -> bool:
        return self.admin or any(Permission.MANAGE_ACCESS in p for p in self._grants.values())

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def caller_for_token(state: ServerState, token: str) -> Caller | None:
    """The caller a session token or API key stands for (None when it is not valid now); the web UI's
    session cookie goes through here too."""
    access = state.access
    if token.startswith(f"{SESSION_PREFIX}_"):
        session = access.session(token)
        if session is None:
            return None
        try:
            user = access.user(session.user)
        except AccessError:
            return None
        bindings = access.identity(user.principal_id).bindings
        return Caller(user.principal_id, "user", user.name, user.admin, bindings, "session", session=session)
    if token.startswith(f"{KEY_PREFIX}_"):
        identity = access.authenticate(token)
        if identity is None:
            return None
        kind, _, name = identity.principal_id.partition(":")
        admin = False
        if kind == "user":
            try:
                admin = access.user(name).admin
            except AccessError:
                admin = False
        return Caller(identity.principal_id, kind, name, admin, identity.bindings, "api_key", identity.key_id)
    return None


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise unauthenticated(
            "this needs a bearer token: sign in with `featureplane login --url URL` or send an API key"
        )
    caller = caller_for_token(server_state(request), credentials.credentials.strip())
    if caller is None:
        raise unauthenticated(
            "the bearer token is not valid (unknown, expired, revoked, or its account is disabled): "
            "sign in again with `featureplane login`"
        )
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]


def _scope(workspace: str) -> str:
    return "every workspace (*)" if workspace == ALL_WORKSPACES else f"workspace {workspace!r}"


def require(caller: Caller, permission: str, workspace: str, action: str) -> None:
    """403 unless the caller may ``permission`` on ``workspace``."""
    if not caller.can(permission, workspace):
        raise forbidden(
            f"{caller.principal_id} may not {action}: that needs the {least_role(permission)} role on "
            f"{_scope(workspace)} (an owner of it can grant it)"
        )


def require_admin(caller: Caller, action: str) -> None:
    if not caller.admin:
        raise forbidden(f"{caller.principal_id} may not {action}: only server admins can")


def visible_workspace(
    state: ServerState, caller: Caller, name: str, permission: str | None = None, action: str = ""
) -> WorkspaceInfo:
    """The workspace if the caller holds a role on it (404 otherwise, as for one that does not exist),
    then 403 unless it may ``permission`` (reading when None) on it."""
    if not caller.sees(name):
        raise workspace_not_found(name)
    try:
        info = state.registry.get_workspace(name)
    except WorkspaceNotFound:
        raise workspace_not_found(name) from None
    if permission is None:
        if not caller.can_any(READ, name):
            raise forbidden(f"{caller.principal_id} may not read workspace {name!r}: that needs a role on it")
    else:
        require(caller, permission, name, action or f"{permission} on workspace {name!r}")
    return info

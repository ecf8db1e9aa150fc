"""Users (server admins manage them) and service accounts: ``/api/v1/users``, ``/service-accounts``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from featureplane.access.base import ServiceAccountInfo, UserInfo
from featureplane.server.auth import Caller, CallerDep, require_admin
from featureplane.server.errors import forbidden, not_found
from featureplane.server.models import (
    AccountKeyCreate,
    AccountPath,
    CreatedKeyOut,
    ErrorOut,
    PasswordSet,
    ServiceAccountCreate,
    ServiceAccountOut,
    UserCreate,
    UserOut,
    UserPath,
)
from featureplane.server.state import ServerState, server_state

router = APIRouter(tags=["users and service accounts"])
ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
}


def user_out(user: UserInfo) -> UserOut:
    return UserOut(
        name=user.name,
        principal=user.principal_id,
        admin=user.admin,
        active=user.active,
        has_password=user.has_password,
        created_at=user.created_at,
        created_by=user.created_by,
        disabled_at=user.disabled_at,
    )


def account_out(account: ServiceAccountInfo) -> ServiceAccountOut:
    return ServiceAccountOut(
        id=account.id,
        name=account.name,
        description=account.description,
        active=account.active,
        created_at=account.created_at,
        created_by=account.created_by,
    )


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(caller: CallerDep, request: Request) -> list[UserOut]:
    """Every user (server admins)."""
    require_admin(caller, "list users")
    return [user_out(u) for u in server_state(request).access.list_users()]


@router.post("/users", status_code=201, response_model=UserOut, responses=ERRORS)
def create_user(body: UserCreate, caller: CallerDep, request: Request) -> UserOut:
    """Create a user, with a password (stored as an argon2id hash) so they can sign in (server admins)."""
    require_admin(caller, "create users")
    state = server_state(request)
    user = state.access.create_user(
        body.name, body.password, admin=body.admin, created_by=caller.principal_id
    )
    state.audit(
        caller.principal_id,
        request,
        "user.create",
        target=user.principal_id,
        detail="admin" if body.admin else "",
    )
    return user_out(user)


@router.get("/users/{name}", response_model=UserOut, responses=ERRORS)
def get_user(name: UserPath, caller: CallerDep, request: Request) -> UserOut:
    """A user (server admins, or the user themself)."""
    if not (caller.admin or (caller.is_user and caller.name == name)):
        raise forbidden(f"{caller.principal_id} may not read other users: only server admins can")
    return user_out(server_state(request).access.user(name))


@router.post("/users/{name}/disable", response_model=UserOut, responses=ERRORS)
def disable_user(name: UserPath, caller: CallerDep, request: Request) -> UserOut:
    """Disable a user: their sessions end and their keys stop working at once (server admins)."""
    require_admin(caller, "disable users")
    if caller.is_user and caller.name == name:
        raise forbidden("an admin cannot disable their own account (another admin can)")
    state = server_state(request)
    user = state.access.disable_user(name, disabled_by=caller.principal_id)
    state.audit(caller.principal_id, request, "user.disable", target=user.principal_id)
    state.export_snapshot()
    return user_out(user)


@router.put("/users/{name}/password", status_code=204, responses=ERRORS)
def set_password(name: UserPath, body: PasswordSet, caller: CallerDep, request: Request) -> Response:
    """Set a user's password (server admins); their sessions end."""
    require_admin(caller, "set passwords")
    state = server_state(request)
    state.access.set_password(name, body.password)
    state.access.revoke_user_sessions(name)
    state.audit(caller.principal_id, request, "user.password", target=f"user:{name}")
    return Response(status_code=204)


def may_manage_account(state: ServerState, caller: Caller, account: ServiceAccountInfo) -> bool:
    """Admins manage every service account; others those they created, or whose every role is on a
    workspace they own."""
    if caller.admin or account.created_by == caller.principal_id:
        return True
    roles = [b for b in state.access.bindings() if b.principal_id == account.id]
    return bool(roles) and all(caller.can("manage_access", b.workspace) for b in roles)


@router.get("/service-accounts", response_model=list[ServiceAccountOut], responses=ERRORS)
def list_service_accounts(caller: CallerDep, request: Request) -> list[ServiceAccountOut]:
    """The service accounts the caller manages (every one for server admins)."""
    state = server_state(request)
    if not caller.manages_some_workspace() and not caller.is_user:
        raise forbidden(f"{caller.principal_id} may not list service accounts")
    accounts = state.access.list_service_accounts()
    return [account_out(a) for a in accounts if may_manage_account(state, caller, a)]


@router.post("/service-accounts", status_code=201, response_model=ServiceAccountOut, responses=ERRORS)
def create_service_account(
    body: ServiceAccountCreate, caller: CallerDep, request: Request
) -> ServiceAccountOut:
    """Create a service account (server admins, and owners of a workspace, who then grant it roles)."""
    if not caller.manages_some_workspace():
        raise forbidden(
            f"{caller.principal_id} may not create service accounts: that needs the owner role on a "
            "workspace, or a server admin"
        )
    state = server_state(request)
    account = state.access.create_service_account(
        body.name, description=body.description, created_by=caller.principal_id
    )
    state.audit(
        caller.principal_id, request, "service_account.create", target=account.id, detail=body.description
    )
    return account_out(account)


@router.post(
    "/service-accounts/{name}/api-keys", status_code=201, response_model=CreatedKeyOut, responses=ERRORS
)
def create_account_key(
    name: AccountPath, body: AccountKeyCreate, caller: CallerDep, request: Request
) -> CreatedKeyOut:
    """A new API key for a service account (shown only in this response); it acts with the account's
    roles."""
    from featureplane.server.api.access import key_out

    state = server_state(request)
    account = state.access.service_account(name)
    if not may_manage_account(state, caller, account):
        raise not_found(f"no service account {name!r} that you manage")
    created = state.access.add_api_key(
        account.id, description=body.description, created_by=caller.principal_id
    )
    for workspace in sorted({b.workspace for b in created.info.bindings}) or [""]:
        state.audit(
            caller.principal_id, request, "api_key.create", workspace, f"key {created.info.id}", account.id
        )
    state.export_snapshot()
    return CreatedKeyOut(key=created.secret, info=key_out(created.info))

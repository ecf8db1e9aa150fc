"""The JSON shapes of the server's API (pydantic), and the patterns every name is checked against.

Names are checked here, before anything reaches a store: a workspace, user, service account, role or
principal that does not match its pattern is a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from featureplane.access.roles import WORKSPACE_ROLES

WORKSPACE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
SCOPE_PATTERN = r"^(\*|[A-Za-z_][A-Za-z0-9_]{0,127})$"
PRINCIPAL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"
PRINCIPAL_PATTERN = r"^(user|service_account):[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
KIND = Literal["entity", "data_source", "feature_view", "feature_service"]
ROLE = Literal[WORKSPACE_ROLES]  # type: ignore[valid-type]
API_KEY_ROLE = Literal["consumer", "ingest", "admin"]

WorkspaceName = Annotated[str, StringConstraints(pattern=WORKSPACE_PATTERN)]
Scope = Annotated[str, StringConstraints(pattern=SCOPE_PATTERN)]
PrincipalName = Annotated[str, StringConstraints(pattern=PRINCIPAL_NAME_PATTERN)]
PrincipalId = Annotated[str, StringConstraints(pattern=PRINCIPAL_PATTERN)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Description = Annotated[str, StringConstraints(max_length=500)]

WorkspacePath = Annotated[str, Path(pattern=WORKSPACE_PATTERN, description="a workspace name")]
UserPath = Annotated[str, Path(pattern=PRINCIPAL_NAME_PATTERN, description="a user name")]
AccountPath = Annotated[str, Path(pattern=PRINCIPAL_NAME_PATTERN, description="a service account name")]
KeyIdPath = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="an API key's id")]
ObjectPath = Annotated[str, Path(pattern=WORKSPACE_PATTERN, description="an object's name")]
WorkspaceQuery = Annotated[str | None, Query(pattern=WORKSPACE_PATTERN)]
ScopeQuery = Annotated[str | None, Query(pattern=SCOPE_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sessions -------------------------------------------------------------------------------------


class LoginRequest(Strict):
    user: PrincipalName
    password: Password


class LoginResponse(BaseModel):
    token: str = Field(description="the session token, shown only in this response")
    token_type: Literal["bearer"] = "bearer"
    user: str
    expires_at: str


class RoleOut(BaseModel):
    principal: str
    workspace: str
    role: str


class Me(BaseModel):
    principal: str
    kind: Literal["user", "service_account"]
    name: str
    admin: bool
    via: Literal["session", "api_key"]
    key_id: str | None = None
    session_expires_at: str | None = None
    roles: list[RoleOut]


class PasswordChange(Strict):
    current_password: Password
    new_password: Password


class PasswordSet(Strict):
    password: Password


# -- workspaces and what is applied ---------------------------------------------------------------


class WorkspaceCreate(Strict):
    name: WorkspaceName
    live: bool = False


class WorkspaceOut(BaseModel):
    name: str
    live: bool
    kind: Literal["live", "development"]
    version: int
    created_at: str
    updated_at: str


class VersionOut(BaseModel):
    version: int


class StateOut(BaseModel):
    info: WorkspaceOut
    definitions: dict[str, list[dict[str, Any]]]
    generations: dict[str, int]


class ObjectSummary(BaseModel):
    kind: str
    name: str
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = {}


class ObjectOut(ObjectSummary):
    spec: dict[str, Any]
    generation: int | None = None


class HistoryEntry(BaseModel):
    version: int
    applied_at: str
    applied_by: str
    summary: str


Definitions = dict[KIND, Annotated[list[dict[str, Any]], Field(max_length=10_000)]]


class PlanRequest(Strict):
    definitions: Definitions = Field(
        default_factory=dict, description="the repository's specs by kind, as the client compiled them"
    )
    suppress_recreates: bool = False


class ApplyRequest(PlanRequest):
    base_version: int = Field(ge=0, description="the version the plan was made against")


class ChangeOut(BaseModel):
    action: str
    kind: str
    name: str
    fields: list[str]
    reasons: list[str]
    backfill_partitions: int
    blocked: str
    old: dict[str, Any] | None = None


class PlanOut(BaseModel):
    workspace: str
    live: bool
    base_version: int
    summary: str
    counts: dict[str, int]
    changes: list[ChangeOut]


class ApplyOut(BaseModel):
    workspace: str
    version: int
    summary: str


# -- users, service accounts, roles, keys, audit --------------------------------------------------


class UserCreate(Strict):
    name: PrincipalName
    password: Password | None = None
    admin: bool = False


class UserOut(BaseModel):
    name: str
    principal: str
    admin: bool
    active: bool
    has_password: bool
    created_at: str
    created_by: str
    disabled_at: str | None = None


class ServiceAccountCreate(Strict):
    name: PrincipalName
    description: Description = ""


class ServiceAccountOut(BaseModel):
    id: str
    name: str
    description: str
    active: bool
    created_at: str
    created_by: str


class RoleAssign(Strict):
    principal: PrincipalId
    workspace: Scope
    role: ROLE


class ApiKeyCreate(Strict):
    workspace: WorkspaceName
    role: API_KEY_ROLE = "consumer"
    description: Description = ""


class AccountKeyCreate(Strict):
    description: Description = ""


class ApiKeyOut(BaseModel):
    id: str
    principal: str
    roles: list[RoleOut]
    description: str
    active: bool
    created_at: str
    created_by: str
    revoked_at: str | None = None


class CreatedKeyOut(BaseModel):
    key: str = Field(description="the API key, shown only in this response")
    info: ApiKeyOut


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    workspace: str
    target: str
    detail: str
    source_ip: str


class ErrorOut(BaseModel):
    detail: str
    error: str

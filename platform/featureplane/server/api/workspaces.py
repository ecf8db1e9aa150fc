"""Workspaces and what is applied to them: ``/api/v1/workspaces[/{workspace}[/...]]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from featureplane.access.base import AccessError
from featureplane.access.roles import ALL_WORKSPACES, Permission
from featureplane.definitions.specs import KINDS, kind_of, to_dict
from featureplane.registry.base import WorkspaceInfo
from featureplane.server.auth import CallerDep, require, visible_workspace
from featureplane.server.errors import not_found
from featureplane.server.models import (
    KIND,
    ErrorOut,
    HistoryEntry,
    ObjectOut,
    ObjectPath,
    ObjectSummary,
    StateOut,
    VersionOut,
    WorkspaceCreate,
    WorkspaceOut,
    WorkspacePath,
)
from featureplane.server.state import server_state

router = APIRouter(tags=["workspaces"])
ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


def workspace_out(info: WorkspaceInfo) -> WorkspaceOut:
    return WorkspaceOut(
        name=info.name,
        live=info.live,
        kind=info.kind,  # type: ignore[arg-type]
        version=info.version,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


@router.get("/workspaces", response_model=list[WorkspaceOut], responses=ERRORS)
def list_workspaces(caller: CallerDep, request: Request) -> list[WorkspaceOut]:
    """The workspaces the caller holds a role on (every workspace for server admins)."""
    state = server_state(request)
    return [workspace_out(w) for w in state.registry.list_workspaces() if caller.sees(w.name)]


@router.post(
    "/workspaces",
    status_code=201,
    response_model=WorkspaceOut,
    responses={**ERRORS, 409: {"model": ErrorOut}},
)
def create_workspace(body: WorkspaceCreate, caller: CallerDep, request: Request) -> WorkspaceOut:
    """Create a workspace; its creator owns it. Any user may create a development workspace; a live
    one (it materializes and serves) needs the owner role on every workspace (*) or a server admin."""
    state = server_state(request)
    if body.live or not caller.is_user:
        what = "create a live workspace" if body.live else "create workspaces"
        require(caller, Permission.MANAGE_ACCESS, ALL_WORKSPACES, what)
    info = state.registry.create_workspace(body.name, body.live)
    state.access.assign_role(caller.principal_id, body.name, "owner", assigned_by=caller.principal_id)
    state.audit(caller.principal_id, request, "workspace.create", body.name, body.name, info.kind)
    state.audit(caller.principal_id, request, "role.assign", body.name, caller.principal_id, "owner")
    return workspace_out(info)


@router.get("/workspaces/{workspace}", response_model=WorkspaceOut, responses=ERRORS)
def get_workspace(workspace: WorkspacePath, caller: CallerDep, request: Request) -> WorkspaceOut:
    return workspace_out(visible_workspace(server_state(request), caller, workspace))


@router.delete("/workspaces/{workspace}", status_code=204, responses=ERRORS)
def delete_workspace(workspace: WorkspacePath, caller: CallerDep, request: Request) -> Response:
    """Delete a workspace's registry state and the roles held on it (owners). The materialized data is
    the stores' and is deleted by the client that asked (``featureplane workspace delete``)."""
    state = server_state(request)
    info = visible_workspace(
        state, caller, workspace, Permission.DELETE_WORKSPACE, f"delete workspace {workspace!r}"
    )
    state.registry.delete_workspace(workspace)
    for binding in state.access.bindings(workspace):
        if binding.workspace == workspace:
            try:
                state.access.remove_role(binding.principal_id, workspace, binding.role)
            except AccessError:
                pass  # removed meanwhile
    state.audit(
        caller.principal_id, request, "workspace.delete", workspace, workspace, f"version {info.version}"
    )
    if info.live:
        state.export_snapshot()
    return Response(status_code=204)


@router.get("/workspaces/{workspace}/version", response_model=VersionOut, responses=ERRORS)
def workspace_version(workspace: WorkspacePath, caller: CallerDep, request: Request) -> VersionOut:
    """The workspace's current version (cheap: lookup services poll it)."""
    return VersionOut(version=visible_workspace(server_state(request), caller, workspace).version)


@router.get("/workspaces/{workspace}/state", response_model=StateOut, responses=ERRORS)
def workspace_state(workspace: WorkspacePath, caller: CallerDep, request: Request) -> StateOut:
    """Everything applied to the workspace at its current version, as specs by kind."""
    state = server_state(request)
    visible_workspace(state, caller, workspace)
    loaded = state.registry.load(workspace)
    definitions: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for spec in loaded.definitions.all():
        definitions[kind_of(spec)].append(to_dict(spec))
    return StateOut(
        info=workspace_out(loaded.info), definitions=definitions, generations=dict(loaded.generations)
    )


def _summary(kind: str, spec: object) -> ObjectSummary:
    return ObjectSummary(
        kind=kind,
        name=spec.name,  # type: ignore[attr-defined]
        owner=getattr(spec, "owner", "") or "",
        description=getattr(spec, "description", "") or "",
        tags=dict(getattr(spec, "tags", {}) or {}),
    )


@router.get("/workspaces/{workspace}/objects", response_model=list[ObjectSummary], responses=ERRORS)
def list_objects(
    workspace: WorkspacePath,
    caller: CallerDep,
    request: Request,
    kind: Annotated[KIND | None, Query(description="only objects of this kind")] = None,
) -> list[ObjectSummary]:
    """The applied entities, sources, feature views and services (one kind if given)."""
    state = server_state(request)
    visible_workspace(state, caller, workspace)
    definitions = state.registry.load(workspace).definitions
    kinds = [kind] if kind else list(KINDS)
    return [_summary(k, spec) for k in kinds for spec in definitions.by_kind(k).values()]


@router.get("/workspaces/{workspace}/objects/{kind}/{name}", response_model=ObjectOut, responses=ERRORS)
def describe_object(
    workspace: WorkspacePath, kind: KIND, name: ObjectPath, caller: CallerDep, request: Request
) -> ObjectOut:
    """One applied object's full spec (and a feature view's data generation)."""
    state = server_state(request)
    visible_workspace(state, caller, workspace)
    loaded = state.registry.load(workspace)
    spec = loaded.definitions.by_kind(kind).get(name)
    if spec is None:
        raise not_found(f"workspace {workspace!r} has no {kind.replace('_', ' ')} {name!r}")
    summary = _summary(kind, spec)
    generation = loaded.generations.get(name) if kind == "feature_view" else None
    return ObjectOut(**summary.model_dump(), spec=to_dict(spec), generation=generation)


@router.get("/workspaces/{workspace}/history", response_model=list[HistoryEntry], responses=ERRORS)
def workspace_history(workspace: WorkspacePath, caller: CallerDep, request: Request) -> list[HistoryEntry]:
    """Every version applied to the workspace: when, by whom, what changed."""
    state = server_state(request)
    visible_workspace(
        state, caller, workspace, Permission.VIEW, f"read the history of workspace {workspace!r}"
    )
    history = state.registry.history(workspace)
    return [
        HistoryEntry(version=v.version, applied_at=v.applied_at, applied_by=v.applied_by, summary=v.summary)
        for v in history
    ]

"""Pages to read: the workspaces list, one workspace's objects, its apply history, and the audit log.

Each page calls the JSON API's own route function with the signed-in caller, so it shows exactly what
the API would answer that caller, and refuses what the API refuses (404 for a workspace without a role
on it, as for one that does not exist).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from featureplane.access.roles import Permission
from featureplane.server.api import audit as audit_api
from featureplane.server.api import workspaces as workspaces_api
from featureplane.server.auth import Caller
from featureplane.server.errors import not_found, workspace_not_found
from featureplane.server.models import WORKSPACE_PATTERN, WorkspaceOut
from featureplane.server.state import server_state
from featureplane.server.web.render import PREFIX, page, render
from featureplane.server.web.session import page_caller

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 200
MATERIALIZED_KINDS = {"batch", "stream"}


def checked_name(workspace: str) -> str:
    """A workspace name from a URL: one that cannot be a workspace gets the same 404 as any other."""
    if not re.fullmatch(WORKSPACE_PATTERN, workspace):
        raise workspace_not_found(workspace[:128])
    return workspace


def workspace_context(request: Request, caller: Caller, workspace: str, tab: str) -> dict[str, Any]:
    """What the workspace tabs need; 404 unless the caller holds a role on it."""
    info = workspaces_api.get_workspace(checked_name(workspace), caller, request)
    return {
        "workspace": info,
        "tab": tab,
        "manages": caller.can(Permission.MANAGE_ACCESS, info.name),
        "title": f"Workspace {info.name}",
    }


def every(seconds: int | None) -> str:
    if not seconds:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"


def materialization(workspace: WorkspaceOut, view: dict[str, Any], generation: int | None) -> str:
    """What the registry knows cheaply: whether and where Dagster materializes the view. Which
    partitions have run is Dagster's to know: the page links to the view's asset there."""
    if view.get("kind") not in MATERIALIZED_KINDS:
        return "computed per request (realtime)"
    if not workspace.live:
        return "not materialized (development workspace)"
    stores = [name for name in ("offline", "online") if view.get(name)]
    where = " and ".join(stores) or "no store"
    return f"materializes to the {where} store (data generation {generation or 0}); runs in Dagster"


def dagster_base(request: Request) -> str:
    url = server_state(request).config.monitoring.dagster_url.rstrip("/")
    return url if re.match(r"^https?://", url) else ""


@router.get(f"{PREFIX}/workspaces")
@page
def workspaces_page(request: Request) -> Response:
    caller = page_caller(request)
    listed = workspaces_api.list_workspaces(caller, request)
    return render(request, "workspaces.html", title="Workspaces", workspaces=listed)


@router.get(f"{PREFIX}/workspaces/{{workspace}}")
@page
def workspace_page(workspace: str, request: Request) -> Response:
    caller = page_caller(request)
    context = workspace_context(request, caller, workspace, "")
    state = workspaces_api.workspace_state(context["workspace"].name, caller, request)
    views = [
        {
            **view,
            "schedule": every(view.get("batch_schedule_seconds")),
            "materialization": materialization(state.info, view, state.generations.get(view["name"])),
        }
        for view in state.definitions.get("feature_view", [])
    ]
    return render(
        request,
        "workspace.html",
        **context,
        entities=state.definitions.get("entity", []),
        sources=state.definitions.get("data_source", []),
        views=views,
        services=state.definitions.get("feature_service", []),
        dagster=dagster_base(request),
    )


@router.get(f"{PREFIX}/workspaces/{{workspace}}/history")
@page
def history_page(workspace: str, request: Request) -> Response:
    caller = page_caller(request)
    context = workspace_context(request, caller, workspace, "/history")
    entries = workspaces_api.workspace_history(context["workspace"].name, caller, request)
    return render(request, "history.html", **context, entries=list(reversed(entries)))


def _events(caller: Caller, request: Request, workspace: str | None) -> list:
    return audit_api.audit_log(
        caller, request, workspace=workspace, actor=None, action=None, since=None, before_id=None,
        limit=AUDIT_PAGE,
    )  # fmt: skip


@router.get(f"{PREFIX}/workspaces/{{workspace}}/audit")
@page
def workspace_audit_page(workspace: str, request: Request) -> Response:
    caller = page_caller(request)
    context = workspace_context(request, caller, workspace, "/audit")
    events = _events(caller, request, context["workspace"].name)
    return render(request, "audit.html", **context, events=events, limit=AUDIT_PAGE)


@router.get(f"{PREFIX}/audit")
@page
def audit_page(request: Request) -> Response:
    caller = page_caller(request)
    events = _events(caller, request, None)
    return render(request, "audit.html", title="Audit log", workspace=None, events=events, limit=AUDIT_PAGE)


@router.get(PREFIX + "/{rest:path}")
@page
def unknown_page(rest: str, request: Request) -> Response:
    """Any other address under the UI: a page saying so (after sign-in, so it reveals nothing)."""
    page_caller(request)
    raise not_found(f"there is no page {PREFIX}/{rest[:200]}")

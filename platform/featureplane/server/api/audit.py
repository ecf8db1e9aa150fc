"""The audit log: ``GET /api/v1/audit``. Who did what, when, from where: every apply, role change, key
change, sign-in, and change to users, service accounts and workspaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from featureplane.access.roles import Permission
from featureplane.server.auth import CallerDep, visible_workspace
from featureplane.server.errors import forbidden
from featureplane.server.models import PRINCIPAL_PATTERN, AuditOut, ErrorOut, WorkspaceQuery
from featureplane.server.state import server_state

router = APIRouter(tags=["audit"])
ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
def audit_log(
    caller: CallerDep,
    request: Request,
    workspace: WorkspaceQuery = None,
    actor: Annotated[str | None, Query(pattern=PRINCIPAL_PATTERN + "|^anonymous$")] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}(\.[a-z_]{1,40})?$")] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO-8601: events at or after")] = None,
    before_id: Annotated[int | None, Query(ge=0, description="events older than this id (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Events newest first. Server admins read the whole log; owners read their workspace's
    (pass ``workspace``)."""
    state = server_state(request)
    if workspace is not None:
        visible_workspace(
            state,
            caller,
            workspace,
            Permission.MANAGE_ACCESS,
            f"read the audit log of workspace {workspace!r}",
        )
    elif not caller.admin:
        raise forbidden(
            f"{caller.principal_id} may not read the whole audit log: only server admins can; owners pass "
            "workspace=NAME"
        )
    events = state.access.audit_events(
        actor=actor, action=action, workspace=workspace, since=since, before_id=before_id, limit=limit
    )
    return [AuditOut(**vars(e)) for e in events]

"""Plan and apply: the client sends its repository's definitions, the server plans them against the
workspace it holds and applies the plan as one new version.

Apply carries the version the client planned against. The server plans again from the same definitions
and applies only if the workspace is still at that version (the registry re-checks it atomically), so
what is applied is what the client was shown, or a 409 "changed since your plan".
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from featureplane.access.roles import Permission
from featureplane.materialization.partitions import count_complete_partitions
from featureplane.registry.base import ConflictError, PlanRefused
from featureplane.registry.plan import Plan
from featureplane.server.auth import CallerDep, require, visible_workspace
from featureplane.server.definitions import parse_definitions
from featureplane.server.models import (
    ApplyOut,
    ApplyRequest,
    ChangeOut,
    ErrorOut,
    PlanOut,
    PlanRequest,
    WorkspacePath,
)
from featureplane.server.state import ServerState, server_state

router = APIRouter(tags=["plan and apply"])
ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
}
SUPPRESSED = "recreate suppressed"


def _plan(state: ServerState, workspace: str, body: PlanRequest) -> Plan:
    desired = parse_definitions(body.definitions)
    return state.registry.plan(
        workspace,
        desired,
        suppress_recreates=body.suppress_recreates,
        count_partitions=count_complete_partitions,
    )


def plan_out(plan: Plan) -> PlanOut:
    from featureplane.definitions.specs import to_dict

    data = plan.to_json()
    changes = [
        ChangeOut(**c.to_json(), old=to_dict(c.old) if c.old is not None else None) for c in plan.changes
    ]
    return PlanOut(
        workspace=plan.workspace,
        live=plan.live,
        base_version=plan.base_version,
        summary=data["summary"],
        counts=data["counts"],
        changes=changes,
    )


@router.post("/workspaces/{workspace}/plan", response_model=PlanOut, responses=ERRORS)
def plan(workspace: WorkspacePath, body: PlanRequest, caller: CallerDep, request: Request) -> PlanOut:
    """What applying these definitions would change (viewers and up). Changes nothing."""
    state = server_state(request)
    visible_workspace(state, caller, workspace, Permission.VIEW, f"plan against workspace {workspace!r}")
    return plan_out(_plan(state, workspace, body))


@router.post("/workspaces/{workspace}/apply", response_model=ApplyOut, responses=ERRORS)
def apply(workspace: WorkspacePath, body: ApplyRequest, caller: CallerDep, request: Request) -> ApplyOut:
    """Apply the definitions as one new version, if the workspace is still at ``base_version``
    (editors and up; suppressing recreates is for owners). Every apply is in the audit log."""
    state = server_state(request)
    visible_workspace(state, caller, workspace, Permission.APPLY, f"apply to workspace {workspace!r}")
    result = _plan(state, workspace, body)
    if result.base_version != body.base_version:
        raise ConflictError(
            f"workspace {workspace!r} changed since the plan was made (planned against version "
            f"{body.base_version}, it is now at version {result.base_version}); run plan again"
        )
    if any(SUPPRESSED in r for c in result.changes for r in c.reasons):
        require(caller, Permission.SUPPRESS_RECREATES, workspace, "apply with --suppress-recreates")
    if result.blocked:
        raise PlanRefused("; ".join(c.blocked for c in result.blocked))
    if result.empty:
        return ApplyOut(workspace=workspace, version=result.base_version, summary=result.summary())
    version = state.registry.apply(result, applied_by=caller.principal_id)
    state.audit(caller.principal_id, request, "apply", workspace, f"version {version}", result.summary())
    if result.live:
        state.export_snapshot()
    return ApplyOut(workspace=workspace, version=version, summary=result.summary())

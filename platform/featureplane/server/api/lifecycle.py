"""Deleting entities' rows from a feature view's stores (the right to be forgotten):
``POST /api/v1/workspaces/{workspace}/feature-views/{view}/delete-keys``.

Deleting needs the permission that apply needs (editors, owners, server admins): like a recreate, it
removes materialized data. The audit log records who deleted how many keys from which view and what
each store removed, never the key values themselves (they identify the people being forgotten).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from featureplane.access.roles import Permission
from featureplane.materialization.deletion import DeletionError, DeletionIncomplete, delete_keys, keys_from
from featureplane.server.auth import CallerDep, visible_workspace
from featureplane.server.errors import ApiError
from featureplane.server.models import ErrorOut, ObjectPath, WorkspacePath
from featureplane.server.state import server_state

router = APIRouter(tags=["data lifecycle"])
ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
MAX_KEYS = 100_000
KeyValue = StrictStr | StrictInt | StrictFloat | StrictBool


class DeleteKeysRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: Annotated[
        list[dict[str, KeyValue]],
        Field(min_length=1, max_length=MAX_KEYS, description="one object per entity: its join keys"),
    ]
    online: bool = True
    offline: bool = True


class StoreDeletionOut(BaseModel):
    store: str
    keys: int
    rows: int
    failed_keys: list[list[Any]]


class DeleteKeysOut(BaseModel):
    workspace: str
    view: str
    table_id: str
    keys: int
    offline: StoreDeletionOut | None
    online: StoreDeletionOut | None


STATUS = {"invalid": 400, "not_found": 404, "busy": 409}


@router.post(
    "/workspaces/{workspace}/feature-views/{view}/delete-keys", response_model=DeleteKeysOut, responses=ERRORS
)
def delete_view_keys(
    workspace: WorkspacePath, view: ObjectPath, body: DeleteKeysRequest, caller: CallerDep, request: Request
) -> DeleteKeysOut:
    """Delete these entities' rows from the view's offline and/or online store (editors and up).
    Idempotent: keys without rows are no-ops. Every delete is in the audit log."""
    state = server_state(request)
    visible_workspace(state, caller, workspace, Permission.APPLY, f"delete keys in workspace {workspace!r}")
    runtime = state.runtime
    applied = runtime.registry.load(workspace)
    try:
        spec = applied.feature_view(view)
    except KeyError:
        raise ApiError(404, "not_found", f"workspace {workspace!r} has no feature view {view!r}") from None
    try:
        keys = keys_from(spec, body.keys)
        report = delete_keys(runtime, applied, view, keys, online=body.online, offline=body.offline)
    except DeletionError as exc:
        raise ApiError(STATUS.get(exc.code, 400), exc.code, str(exc)) from None
    except DeletionIncomplete as exc:
        _audit(state, caller.principal_id, request, workspace, view, exc.report.to_json(), "incomplete")
        raise ApiError(503, "incomplete", str(exc)) from None
    data = report.to_json()
    _audit(state, caller.principal_id, request, workspace, view, data, "done")
    return DeleteKeysOut(**data)


def _audit(
    state: Any, actor: str, request: Request, workspace: str, view: str, data: dict[str, Any], outcome: str
) -> None:
    parts = [f"{data['keys']} key(s)"]
    for store in ("offline", "online"):
        if data[store]:
            done = data[store]
            parts.append(f"{store}: {done['rows']} row(s), {len(done['failed_keys'])} failed")
    state.audit(
        actor, request, "feature_view.delete_keys", workspace, view, f"{outcome}; " + "; ".join(parts)
    )

"""Service resolution: from a call's workspace and feature service to the per-service plan
(``featureplane.serving.plan``), built once per registry snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featureplane.errors import describe_value
from featureplane.registry.base import WorkspaceNotFound
from featureplane.serving.assemble import assembler, extractor, json_assembler
from featureplane.serving.plan import ServicePlan, ViewPlan
from featureplane.serving.protocol import ApiError
from featureplane.types import api_type

if TYPE_CHECKING:
    from featureplane.serving.protocol import Call
    from featureplane.serving.snapshot import ServiceRead, SnapshotCache, WorkspaceSnapshot


def plan_service(service: ServiceRead) -> ServicePlan:
    """A service's plan: what to read, how to assemble vectors, its metadata."""
    metadata = [
        {"name": name, "dataType": api_type(dtype)}
        for name, dtype in zip(service.feature_names, service.feature_types, strict=True)
    ]
    views = [
        ViewPlan(v.ttl_us, len(v.features), extractor(v.features, len(v.spec.features)))
        for v in service.views
    ]
    key_types = tuple(int if t.name == "int64" else str for _, t in service.join_keys)
    positions = {name: i for i, (name, _) in enumerate(service.join_keys)}
    whole_key = tuple(range(len(service.join_keys)))
    reads = []
    for view in service.reads:  # the views stored online; realtime views are computed
        index = tuple(positions[k] for k in view.join_keys)
        reads.append((view.table_id, None if index == whole_key else index))
    names = tuple(k for k, _ in service.join_keys)
    table_ids = tuple(t for t, _ in reads) if all(i is None for _, i in reads) else None
    layout = [(v.ttl_us, v.features, len(v.spec.features)) for v in service.views]
    as_json = None
    if table_ids is not None and service.computed is None:
        as_json = json_assembler(
            [v.features for v in service.views], [len(v.spec.features) for v in service.views]
        )
    plan = ServicePlan(
        service,
        metadata,
        views,
        names,
        key_types,
        reads,
        table_ids,
        assembler(layout),
        as_json,
        tuple(v.ttl_us for v in service.views),
    )
    return plan


class ServiceResolver:
    """Finds the workspace and feature service a call names in the registry snapshots being served,
    checks the caller may use them, and keeps each service's plan for as long as its snapshot is served."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self.snapshots = snapshots
        self._plans: dict[int, ServicePlan] = {}
        self._resolved: dict[tuple[str, str], tuple[WorkspaceSnapshot, ServicePlan]] = {}

    def plan(self, service: ServiceRead) -> ServicePlan:
        plan = self._plans.get(id(service))
        if plan is not None and plan.service is service:
            return plan
        plan = plan_service(service)
        if len(self._plans) > 1000:
            self._plans.clear()
        self._plans[id(service)] = plan
        return plan

    def workspace(self, call: Call) -> WorkspaceSnapshot:
        name = call.params.get("workspaceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "workspaceName is required (a string)")
        identity = call.identity
        if identity is not None and not identity.can(call.route.permission, name):
            raise ApiError(
                403,
                f"{identity.describe()} may not call {call.route.endpoint} on workspace {describe_value(name)}",
            )
        try:
            snapshot = self.snapshots.get(name)
        except WorkspaceNotFound:
            raise ApiError(404, f"workspace {describe_value(name)} not found") from None
        if not snapshot.live:
            raise ApiError(
                404,
                f"workspace {name!r} is a development workspace: it does not serve or ingest features; "
                "apply to a live workspace to serve",
            )
        call.workspace = snapshot.name
        return snapshot

    def service(self, call: Call) -> ServiceRead:
        snapshot = self.workspace(call)
        name = call.params.get("featureServiceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "params.featureServiceName is required (a string)")
        service = snapshot.services.get(name)
        if service is None:
            known = ", ".join(sorted(snapshot.services)) or "none"
            raise ApiError(
                404,
                f"feature service {describe_value(name)} not found in workspace {snapshot.name!r} "
                f"(services: {known})",
            )
        call.service = service.name
        partial = call.params.get("allowPartialResults")
        if partial is not None and not isinstance(partial, bool):
            raise ApiError(400, "params.allowPartialResults must be true or false")
        if not service.online_serving_enabled:
            raise ApiError(400, f"feature service {name!r} has online serving disabled")
        return service

    def resolve(self, call: Call) -> ServicePlan:
        """``plan(service(call))``, remembered per (workspace, service) for as long as the workspace's
        snapshot is the one being served: a repeated call checks only what depends on the caller."""
        params = call.params
        workspace = params.get("workspaceName")
        name = params.get("featureServiceName")
        if type(workspace) is str and type(name) is str:
            hit = self.resolved_plan(workspace, name)
            if hit is not None:
                identity = call.identity
                partial = params.get("allowPartialResults")
                if (identity is None or identity.can(call.route.permission, workspace)) and (
                    partial is None or type(partial) is bool
                ):
                    call.workspace = hit[0].name
                    call.service = hit[1].service.name
                    return hit[1]
        service = self.service(call)  # every check, and its error when one fails
        plan = self.plan(service)
        snapshot = self.snapshots.cached(call.workspace)
        if snapshot is not None and snapshot.services.get(service.name) is service:
            if len(self._resolved) > 1000:
                self._resolved.clear()
            self._resolved[(workspace, name)] = (snapshot, plan)  # type: ignore[index]
        return plan

    def resolved_plan(self, workspace: str, name: str) -> tuple[WorkspaceSnapshot, ServicePlan] | None:
        """The snapshot and plan ``_resolve`` remembered for (workspace, service), while that snapshot
        is still the one being served."""
        hit = self._resolved.get((workspace, name))
        return hit if hit is not None and self.snapshots.cached(workspace) is hit[0] else None

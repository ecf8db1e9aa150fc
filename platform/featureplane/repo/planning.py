"""Plan a repository against a workspace and apply the plan: the library behind ``plan`` and ``apply``."""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FEATURE_VIEW, DefinitionSet
from featureplane.materialization.partitions import count_complete_partitions
from featureplane.registry.base import PlanRefused
from featureplane.registry.plan import DELETE, RECREATE, Plan
from featureplane.repo.loader import load_repository
from featureplane.repo.validation import check_schemas, compile_repository

if TYPE_CHECKING:
    from featureplane.runtime import Runtime

log = logging.getLogger("featureplane")


def load_definitions(runtime: Runtime, *, check_with_engine: bool = True) -> DefinitionSet:
    """Load and validate the repository at the config's root (RepositoryError lists every problem)."""
    definitions = compile_repository(load_repository(runtime.config.root, runtime.config))
    if check_with_engine:
        definitions = check_schemas(definitions, runtime.engine)
    return definitions


def plan_repository(
    runtime: Runtime,
    workspace: str,
    definitions: DefinitionSet | None = None,
    *,
    suppress_recreates: bool = False,
) -> Plan:
    runtime.registry.get_workspace(workspace)  # an unknown workspace fails before the repository loads
    desired = definitions if definitions is not None else load_definitions(runtime)
    return runtime.registry.plan(
        workspace, desired, suppress_recreates=suppress_recreates, count_partitions=count_complete_partitions
    )


def apply_plan(runtime: Runtime, plan: Plan, applied_by: str | None = None) -> int:
    """Apply atomically (ConflictError if the workspace moved on; PlanRefused if it would destroy a
    protected object), then prepare the online store and delete data of recreated or deleted views."""
    if plan.blocked:
        raise PlanRefused("; ".join(c.blocked for c in plan.blocked))
    before = runtime.registry.load(plan.workspace)
    version = runtime.registry.apply(plan, applied_by or _whoami())
    if not plan.live:
        return version
    after = runtime.registry.load(plan.workspace)
    online_views = [v for v in after.definitions.feature_views.values() if v.online]
    runtime.online_store.prepare(after.table_id(v.name) for v in online_views)
    export_serving_snapshot(runtime, applied_version=version)
    stale = [
        before.table_id(c.name)
        for c in plan.changes
        if c.kind == FEATURE_VIEW
        and c.action in (RECREATE, DELETE)
        and c.name in before.definitions.feature_views
    ]
    for table_id in stale:
        try:
            runtime.offline_store.drop(table_id)
            runtime.online_store.drop(table_id)
        except Exception as exc:  # the registry already points elsewhere; leftovers are harmless
            log.warning("could not delete the old data of %s: %s", table_id, exc)
    return version


def export_serving_snapshot(runtime: Runtime, applied_version: int | None = None) -> str | None:
    """Write the serving snapshot to ``serving.registry_snapshot`` if it is configured; returns where."""
    location = (runtime.config.serving or {}).get("registry_snapshot")
    if not location or runtime.config.registry.type == "remote":
        return None  # behind a server, the server exports it (it alone reads the keys' hashes)
    from featureplane.access import open_access_store
    from featureplane.registry.snapshot import export_snapshot, open_location

    target = open_location(str(location), runtime.config.root)
    try:
        access = open_access_store(runtime.config)
        try:
            keys = access.active_keys()
        finally:
            access.close()
        export_snapshot(runtime.registry, target, runtime.config.project, keys)
    except Exception as exc:
        applied = f"version {applied_version} is applied, but " if applied_version is not None else ""
        raise RuntimeError(
            f"{applied}writing the serving snapshot to {target} failed: {exc}; lookup services keep "
            "serving the previous snapshot until `featureplane export-snapshot` succeeds"
        ) from exc
    return str(target)


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def delete_workspace(runtime: Runtime, workspace: str) -> list[str]:
    """Remove a workspace from the registry, then its data from both stores. Returns the tables dropped.

    The registry goes first, so nothing serves or materializes the workspace while its data is deleted;
    if deleting data fails afterwards, what is left is unreachable and a later call cleans it up."""
    state = runtime.registry.load(workspace)
    table_ids = [state.table_id(name) for name in state.definitions.feature_views]
    runtime.registry.delete_workspace(workspace)
    if state.live:
        runtime.offline_store.drop_workspace(workspace, table_ids)
        runtime.online_store.drop_workspace(workspace, table_ids)
    return table_ids

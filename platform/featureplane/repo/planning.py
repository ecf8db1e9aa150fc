"""Plan a repository against a workspace and apply the plan: the library behind ``plan`` and ``apply``."""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING

from featureplane.registry.plan import DELETE, RECREATE, Plan, build_plan
from featureplane.repo.loader import load_repository
from featureplane.repo.validation import check_schemas, compile_repository
from featureplane.specs import FEATURE_VIEW, DefinitionSet

if TYPE_CHECKING:
    from featureplane.runtime import Runtime

log = logging.getLogger("featureplane")


def load_definitions(runtime: Runtime, *, check_with_engine: bool = True) -> DefinitionSet:
    """Load and validate the repository at the config's root (RepositoryError lists every problem)."""
    definitions = compile_repository(load_repository(runtime.config.root, runtime.config))
    if check_with_engine:
        definitions = check_schemas(definitions, runtime.engine)
    return definitions


def plan_repository(runtime: Runtime, workspace: str, definitions: DefinitionSet | None = None) -> Plan:
    state = runtime.registry.load(workspace)
    desired = definitions if definitions is not None else load_definitions(runtime)
    return build_plan(state.name, state.live, state.version, state.definitions, desired)


def apply_plan(runtime: Runtime, plan: Plan, applied_by: str | None = None) -> int:
    """Apply atomically (ConflictError if the workspace moved on), then prepare and clean up storage."""
    before = runtime.registry.load(plan.workspace)
    version = runtime.registry.apply(plan, applied_by or _whoami())
    if not plan.live:
        return version
    after = runtime.registry.load(plan.workspace)
    online_views = [v for v in after.definitions.feature_views.values() if v.online]
    runtime.online_store.prepare(after.table_id(v.name) for v in online_views)
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


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"

"""The registry and access store backends the contract suites run against, and small definitions to
apply without a repository (plans are built directly from specs, so no engine is involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from featureplane.config import Config, load_config
from featureplane.definitions.specs import (
    DefinitionSet,
    EntitySpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    SourceSpec,
    TransformationSpec,
)
from featureplane.registry.plan import Plan, build_plan

BACKENDS = ["sqlite", "postgres"]
INJECTION = "x'; DROP TABLE workspaces; --"


def registry_yaml(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The ``registry:`` line of a featureplane.yaml for ``backend`` (PostgreSQL: a fresh database)."""
    if backend == "sqlite":
        return f"registry: {{type: sqlite, path: '{tmp_path / 'registry.db'}'}}\n"
    dsn = request.getfixturevalue("postgres_dsn")
    return f"registry: {{type: postgres, dsn: '{dsn}', pool_max_size: 12}}\n"


def backend_config(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    path = tmp_path / "featureplane.yaml"
    path.write_text(
        f"project: contract\ndata_dir: '{tmp_path / 'data'}'\n" + registry_yaml(backend, tmp_path, request)
    )
    return load_config(path)


def entity(name: str = "user") -> EntitySpec:
    return EntitySpec(name, [FieldSpec("user_id", "string")])


def source(name: str = "events", table: str = "raw.events") -> SourceSpec:
    schema = [FieldSpec("user_id", "string"), FieldSpec("ts", "timestamp"), FieldSpec("amount", "float64")]
    return SourceSpec(name, "batch", timestamp_field="ts", table=table, schema=schema)


def view(
    name: str = "amounts", sql: str = "SELECT user_id, ts, amount FROM {events}", **fields
) -> FeatureViewSpec:
    return FeatureViewSpec(
        name,
        "batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=["events"],
        features=[FeatureSpec("amount", "float64")],
        transformation=TransformationSpec("snowflake_sql", name, ["events"], sql=sql),
        feature_start_time="2024-01-01T00:00:00Z",
        batch_schedule_seconds=86400,
        **fields,
    )


def definitions(*specs) -> DefinitionSet:
    result = DefinitionSet()
    for spec in specs:
        result.add(spec)
    return result


def plan_for(registry, workspace: str, desired: DefinitionSet, **options) -> Plan:
    state = registry.load(workspace)
    return build_plan(state.name, state.live, state.version, state.definitions, desired, **options)


def apply_in_process(config_path: str, plan_json: str, barrier, results) -> None:
    """Apply a saved plan from another process, all processes released together (``multiprocessing``
    target: reports ("won", version), ("conflict", message) or ("error", what went wrong))."""
    import json

    from featureplane.registry import open_registry
    from featureplane.registry.base import ConflictError

    try:
        registry = open_registry(load_config(config_path))
        plan = Plan.from_json(json.loads(plan_json))
        barrier.wait(timeout=120)
        try:
            results.put(("won", registry.apply(plan, applied_by="process")))
        except ConflictError as exc:
            results.put(("conflict", str(exc)))
        finally:
            registry.close()
    except Exception as exc:
        results.put(("error", repr(exc)))


def stored(store, sql: str, params: tuple = ()) -> list[tuple]:
    """Run SQL (``?`` placeholders) on a store's own database, to look at what it keeps."""
    if type(store).__module__.endswith(".postgres"):
        sql = sql.replace("?", "%s")
    with store.db.transaction() as con:
        cursor = con.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

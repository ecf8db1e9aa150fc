"""dbt models as Dagster assets, upstream of the feature views that read them.

The dbt project is the one featureplane.yaml names (``dbt: {project_dir: ../dbt}``). Its manifest is
prepared by featureplane (``featureplane.dbt.prepare_manifest``): loading the code location re-parses
dbt only when a file of the project changed since the last parse, never on every load.

- Models are assets keyed by their name (``[model]``, the key ``DbtModel`` sources depend on); the raw
  tables dbt reads are source assets keyed ``[source, table]`` (``raw/transactions``, as BatchSource
  ``table="raw.transactions"`` gives); dbt tests are asset checks, blocking when their severity is
  error. So lineage reads raw tables -> dbt models -> feature views -> feature services.
- Microbatch (incremental) models are partitioned like the feature views: by their ``batch_size`` from
  their ``begin``. A run for partitions [start, end) runs ``dbt build --event-time-start start
  --event-time-end end``, which rebuilds exactly those days; a backfill of a range is one run (single-run
  backfill policy). Other models are unpartitioned and rebuilt by ``dbt build``.

A failing blocking check (a dbt test of severity error) fails the dbt step, so the feature views
downstream of it in the same run are skipped: nothing is written to either store.

The warehouse is one DuckDB file that one process at a time may write. dbt writes it; featureplane's
engine attaches it read-only. Runs do not fail on its lock because (1) the code location runs every run
with the in-process executor, so the steps of a run that builds dbt models and then feature views run one
after another and dbt's process has exited before a view reads; and (2) across concurrent runs, dbt-duckdb
retries its connection while a reader holds the file (``retries`` in dbt/profiles.yml) and featureplane's
engine waits for a writer to finish (``engine.lock_timeout_seconds``).
"""

import os
from collections import defaultdict
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt import DbtProject as DagsterDbtProject

from dagster_project.dbt_definitions import DbtDefinitions
from dagster_project.feature_views import time_partitions
from featureplane.config import Config
from featureplane.dbt import DbtProject, Manifest, dbt_project, load_manifest, prepare_manifest
from featureplane.dbt.project import dbt_executable

DBT_RESOURCE = "dbt"
DBT_GROUP = "dbt"
BATCH_SECONDS = {"hour": 3600, "day": 86400}


class FeatureplaneDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two costs paid before every dbt command (seconds each on a busy
    machine): dbt-core runs from this environment (featureplane pins it), so its version is known without
    a `dbt --version` subprocess; and no dbt adapter is opened inside the Dagster process, since it only
    serves column-metadata and row-count fetching, which these assets do not use."""

    @cached_property
    def _cli_version(self):
        from packaging import version

        return version.parse(metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Any) -> None:
        return None


class FeatureplaneDbtTranslator(DagsterDbtTranslator):
    """Model keys are the model's name, whatever schema dbt builds it in (the key DbtModel uses)."""

    def get_asset_key(self, dbt_resource_props: dict[str, Any]) -> dg.AssetKey:
        dagster_meta = Manifest.meta(dict(dbt_resource_props)).get("dagster", {})
        if dbt_resource_props["resource_type"] != "source" and not dagster_meta.get("asset_key"):
            return dg.AssetKey([dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: dict[str, Any]) -> str | None:
        return super().get_group_name(dbt_resource_props) or DBT_GROUP


def build_dbt_definitions(config: Config) -> DbtDefinitions:
    """The assets, source assets and dbt resource of the project featureplane.yaml names (none without
    a ``dbt:`` section)."""
    project = dbt_project(config)
    if project is None:
        return DbtDefinitions()
    manifest_path = prepare_manifest(project)
    manifest = load_manifest(project)
    dagster_project = DagsterDbtProject(
        project_dir=project.project_dir, profiles_dir=project.profiles_dir, target=project.target
    )
    translator = FeatureplaneDbtTranslator()
    out = DbtDefinitions(manifest=manifest)
    groups: dict[tuple[int, datetime], list[str]] = defaultdict(list)
    unpartitioned: list[str] = []
    for name, node in sorted(manifest.models.items()):
        if node.get("package_name") != manifest.project_name:
            continue
        window = _microbatch_window(node)
        if window is None:
            unpartitioned.append(name)
        else:
            groups[window].append(name)
    for (seconds, start), names in sorted(groups.items()):
        partitions_def = time_partitions(start, seconds)
        label = f"{'daily' if seconds == 86400 else 'hourly'}_from_{start:%Y_%m_%d}"
        out.assets.append(
            _partitioned_models(
                project, dagster_project, manifest_path, translator, names, partitions_def, label
            )
        )
        out.partitions.update({(name,): partitions_def for name in names})
    if unpartitioned:
        out.assets.append(_models(project, dagster_project, manifest_path, translator, unpartitioned))
    out.source_specs = [_source_spec(source) for source in manifest.data.get("sources", {}).values()]
    out.resources = {
        DBT_RESOURCE: FeatureplaneDbtCliResource(project_dir=dagster_project, dbt_executable=dbt_executable())
    }
    return out


def _microbatch_window(node: dict[str, Any]) -> tuple[int, datetime] | None:
    config = node.get("config") or {}
    seconds = BATCH_SECONDS.get(config.get("batch_size") or "")
    if config.get("incremental_strategy") != "microbatch" or not seconds or not config.get("begin"):
        return None
    begin = datetime.fromisoformat(str(config["begin"]).replace("Z", "+00:00"))
    return seconds, begin.astimezone(UTC).replace(tzinfo=None) if begin.tzinfo else begin


def _dbt_env(project: DbtProject) -> dict[str, str]:
    """The warehouse to write, and tests chosen "buildable": a test runs with the models it reads, never
    ahead of a model that another step (another partitioning) has yet to build."""
    return {**project.env_overrides(), "DBT_INDIRECT_SELECTION": "buildable"}


def _flag_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _partitioned_models(
    project: DbtProject,
    dagster_project: DagsterDbtProject,
    manifest_path: os.PathLike,
    translator: DagsterDbtTranslator,
    names: list[str],
    partitions_def: dg.PartitionsDefinition,
    label: str,
) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest_path,
        select=" ".join(names),
        name=f"dbt_models_{label}",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=translator,
        project=dagster_project,
    )
    def partitioned_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        window = context.partition_time_window
        os.environ.update(_dbt_env(project))
        context.log.info(
            f"dbt build for [{window.start} .. {window.end}) ({len(context.partition_keys)} partition(s))"
        )
        args = [
            "build",
            "--event-time-start",
            _flag_time(window.start),
            "--event-time-end",
            _flag_time(window.end),
        ]
        yield from dbt.cli(args, context=context).stream()

    return partitioned_dbt_models


def _models(
    project: DbtProject,
    dagster_project: DagsterDbtProject,
    manifest_path: os.PathLike,
    translator: DagsterDbtTranslator,
    names: list[str],
) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest_path,
        select=" ".join(names),
        name="dbt_models",
        # Lets a run over a range of partitions (`--partition-range`) also build these models, once.
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=translator,
        project=dagster_project,
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        os.environ.update(_dbt_env(project))
        yield from dbt.cli(["build"], context=context).stream()

    return dbt_models


def _source_spec(source: dict[str, Any]) -> dg.AssetSpec:
    """A raw table dbt reads, as a source asset keyed like the BatchSource over the same table."""
    return dg.AssetSpec(
        key=[source["source_name"], source["name"]],
        description=source.get("description") or f"dbt source {source['source_name']}.{source['name']}",
        group_name="sources",
        metadata={"table": f"{source.get('schema', '')}.{source.get('identifier') or source['name']}"},
        kinds={"dbt"},
    )

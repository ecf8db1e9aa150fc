"""``featureplane materialize`` (in this process, with a progress bar) and ``partitions``."""

from __future__ import annotations

from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    WorkspaceOption,
    authorize_or_fail,
    console,
    err,
    fail,
    parse_time_option,
    runtime_from,
    workspace_name,
)
from featureplane.config import ConfigError


def materialize(
    view: Annotated[str, typer.Argument(help="Feature view to materialize.")],
    start: Annotated[
        str | None, typer.Option(help="Window start (default: the view's feature_start_time).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Window end, exclusive (default: the last complete partition).")
    ] = None,
    partitions_per_run: Annotated[
        int | None,
        typer.Option(help="Partitions per transformation query (default: the view's setting, else all)."),
    ] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Materialize a view for a range of partitions in this process, with a progress bar.

    Runs the same code as the Dagster asset, without recording a Dagster run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from featureplane.compute.base import TransformationError
    from featureplane.materialization.materialize import MaterializationError, ValidationFailed
    from featureplane.materialization.materialize import materialize as run
    from featureplane.materialization.partitions import align_down, utcnow, windows
    from featureplane.monitoring.quality import quality_validators

    runtime = runtime_from(config)
    state = runtime.registry.load(workspace_name(runtime.config, workspace))
    authorize_or_fail(runtime.config, state.name, "materialize", f"materialize in workspace {state.name!r}")
    try:
        spec = state.feature_view(view)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    if not spec.is_batch or spec.schedule is None or spec.start is None:
        raise fail(f"feature view {view!r} is not a materialized batch view")
    first = parse_time_option(start) or spec.start
    last = parse_time_option(end) or align_down(utcnow(), spec.schedule)
    parts = list(windows(spec, first, last))
    if not parts:
        raise fail(f"no complete partitions of {view!r} in [{first}, {last})")
    try:
        validators = quality_validators(runtime.config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    step = partitions_per_run or spec.partitions_per_run or len(parts)
    chunks = [parts[i : i + step] for i in range(0, len(parts), step)]
    rows = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(f"{state.name}/{view}", total=len(parts), rows=0)
        for chunk in chunks:
            try:
                result = run(runtime, state, view, chunk[0][0], chunk[-1][1], validators=validators)
            except ValidationFailed as exc:
                failed = "".join(f"\n  - {c.summary()}" for c in exc.results if c.blocking and not c.passed)
                raise fail(f"{exc}{failed}") from None
            except (MaterializationError, TransformationError) as exc:
                raise fail(str(exc)) from None
            rows += result.rows
            progress.update(task, advance=len(chunk), rows=rows)
    console.print(f"Materialized {len(parts)} partition(s) of {state.name}/{view}: {rows:,} rows.")


def partitions(
    view: Annotated[
        str | None, typer.Argument(help="Feature view (default: every materialized view).")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest complete partition.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Print `<workspace>/<view> <partition key>` for complete partitions (for scripts and CI)."""
    from featureplane.materialization.partitions import align_down, partition_key, utcnow, windows

    runtime = runtime_from(config)
    state = runtime.registry.load(workspace_name(runtime.config, workspace))
    names = [view] if view else sorted(state.definitions.feature_views)
    for name in names:
        try:
            spec = state.feature_view(name)
        except KeyError as exc:
            raise fail(str(exc.args[0])) from None
        if not spec.is_batch or spec.start is None or spec.schedule is None:
            continue
        keys = [
            partition_key(spec, start)
            for start, _ in windows(spec, spec.start, align_down(utcnow(), spec.schedule))
        ]
        for key in keys[-1:] if latest else keys:
            print(f"{state.name}/{name} {key}")

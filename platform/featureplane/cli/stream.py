"""``featureplane stream run``: process a stream feature view's records into the online store."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    WorkspaceOption,
    authorize_or_fail,
    console,
    err,
    fail,
    runtime_from,
    workspace_name,
)

stream_app = typer.Typer(help="Stream feature views: their processors.", no_args_is_help=True)


@stream_app.command("run")
def stream_run(
    view: Annotated[str, typer.Option("--view", help="The stream feature view to process.")],
    once: Annotated[
        bool, typer.Option(help="Stop once no record is waiting (default: run until stopped).")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Records per batch (one transaction).")
    ] = 1000,
    poll_interval: Annotated[float, typer.Option(min=0.001, help="Seconds between polls when idle.")] = 0.05,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Apply the records pushed to the view's stream source (through the ingest API) to its online
    tiles, checkpointing per ingest log segment. Stopped or killed at any point, a restart resumes
    where the last batch committed: nothing is lost, nothing is counted twice."""
    from featureplane.streams.runner import run_stream

    runtime = runtime_from(config)
    name = workspace_name(runtime.config, workspace)
    authorize_or_fail(runtime.config, name, "materialize", f"process stream views in workspace {name!r}")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def report(result) -> None:
        console.print(f"{name}/{view}: {result.describe()}")
        if result.late or result.invalid:
            err.print(f"{name}/{view}: {result.late} late and {result.invalid} invalid record(s) not applied")

    try:
        totals = run_stream(
            runtime,
            name,
            view,
            once=once,
            batch_size=batch_size,
            poll_seconds=poll_interval,
            report=report,
            should_stop=lambda: bool(stopping),
        )
    except KeyboardInterrupt:
        return
    console.print(
        f"{name}/{view}: {totals.batches} batch(es), {totals.applied} record(s) applied, "
        f"{totals.duplicates} already processed, {totals.late} late, {totals.invalid} invalid"
    )


@stream_app.command("load-staged")
def stream_load_staged(
    view: Annotated[
        str | None, typer.Option("--view", help="Only this stream feature view (default: every one).")
    ] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Load the events the stream Lambda staged (streams.staging) into the views' offline event logs:
    those committed online, each once. The daily maintenance job does this too."""
    from featureplane.streams.staging_load import load_workspace

    runtime = runtime_from(config)
    name = workspace_name(runtime.config, workspace)
    authorize_or_fail(runtime.config, name, "materialize", f"load staged stream events in workspace {name!r}")
    if not runtime.config.streams.staging:
        raise fail(f"{runtime.config.path}: streams.staging is not set: there is no staged event to load")
    try:
        reports = load_workspace(runtime, runtime.registry.load(name), view)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for report in reports:
        console.print(f"{name}/{report.summary()}")

"""``featureplane ingest flush``."""

from __future__ import annotations

import typer

from featureplane.cli.common import ConfigOption, WorkspaceOption, console, runtime_from, workspace_name

ingest_app = typer.Typer(help="Records ingested into feature tables.", no_args_is_help=True)


@ingest_app.command("flush")
def ingest_flush(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Fold ingested records waiting in the ingest log into the feature tables' offline store.

    Readers (training sets) do this themselves before reading; this makes the offline tables current
    for anything that reads them directly."""
    from featureplane.ingest.offline import flush_ingest_log

    runtime = runtime_from(config)
    state = runtime.registry.load(workspace_name(runtime.config, workspace))
    folded = flush_ingest_log(runtime, state)
    if not folded or not any(folded.values()):
        console.print(f"Nothing to fold: the feature tables of {state.name} are up to date.")
        return
    for view, rows in sorted(folded.items()):
        console.print(f"{state.name}/{view}: folded {rows:,} record(s) into the offline store.")

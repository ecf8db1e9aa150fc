"""``featureplane status``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    WorkspaceOption,
    config_from,
    console,
    fail,
    selected_workspace,
)
from featureplane.config import ENV_WORKSPACE


def status(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    dagster_home: Annotated[
        Path | None, typer.Option("--dagster-home", help="The Dagster instance (default: $DAGSTER_HOME).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    profiles: Annotated[
        bool, typer.Option("--profiles", help="Also show each view's profile of its last partition.")
    ] = False,
) -> None:
    """Per feature view: last materialized partition, freshness, latest checks and failed runs; per
    stream feature view: its lag, measured now.

    Without --workspace (and no selected workspace) every live workspace is shown."""
    from featureplane.monitoring.status import StatusError, collect, render_profiles, render_status

    cfg = config_from(config)
    name = workspace or os.environ.get(ENV_WORKSPACE) or selected_workspace(cfg)
    try:
        report = collect(cfg, name, str(dagster_home) if dagster_home else None)
    except StatusError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        render_status(console, report)
        if profiles:
            render_profiles(console, report)

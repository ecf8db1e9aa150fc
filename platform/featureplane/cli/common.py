"""What every command shares: the consoles, the --config and --workspace options, errors as one line."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from featureplane.config import ENV_WORKSPACE, Config, ConfigError, load_config

# soft_wrap: long lines (paths, file:line) are never broken, so CI logs stay greppable.
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="featureplane.yaml (default: found from the current directory)"),
]
WorkspaceOption = Annotated[
    str | None,
    typer.Option(
        "--workspace", "-w", help="Workspace (default: $FEATUREPLANE_WORKSPACE or the selected one)"
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def config_from(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def runtime_from(path: Path | None):
    from featureplane.runtime import Runtime

    return Runtime(config_from(path))


def authorize_or_fail(config: Config, workspace: str, permission: str, action: str) -> str | None:
    """Check the caller's role when ``auth`` is enabled (see featureplane.access.authorize)."""
    from featureplane.access.authorize import AccessDenied, authorize

    try:
        return authorize(config, workspace, permission, action)
    except AccessDenied as exc:
        raise fail(str(exc)) from None


def selected_workspace(config: Config) -> str | None:
    try:
        return json.loads(config.state_path.read_text()).get("workspace")
    except (OSError, ValueError):
        return None


def workspace_name(config: Config, explicit: str | None) -> str:
    name = explicit or os.environ.get(ENV_WORKSPACE) or selected_workspace(config)
    if not name:
        raise fail(
            "no workspace selected: pass --workspace, set FEATUREPLANE_WORKSPACE, or run `featureplane workspace select NAME`"
        )
    return name


def export_keys(cfg: Config) -> None:
    """Lookup services that read the serving snapshot (Lambda) learn of key changes from it."""
    from featureplane.repo.planning import export_serving_snapshot
    from featureplane.runtime import Runtime

    try:
        where = export_serving_snapshot(Runtime(cfg))
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if where:
        err.print(f"Exported the serving snapshot with the change to {where}.")


def whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def parse_time_option(value: str | None) -> datetime | None:
    """A --start/--end value: a date or an ISO-8601 timestamp."""
    if value is None:
        return None
    from featureplane.definitions.specs import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise fail(f"{value!r} is not a date or ISO-8601 timestamp") from None

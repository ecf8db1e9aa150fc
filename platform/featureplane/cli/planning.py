"""``featureplane plan``, ``apply`` and ``export-snapshot``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    WorkspaceOption,
    authorize_or_fail,
    console,
    fail,
    runtime_from,
    workspace_name,
)

SuppressOption = Annotated[
    bool,
    typer.Option(
        "--suppress-recreates",
        help="Apply logic changes without rebuilding materialized history (the existing data is kept).",
    ),
]


def _plan(runtime, workspace: str, suppress_recreates: bool = False):
    from featureplane.registry.base import WorkspaceNotFound
    from featureplane.repo.errors import RepositoryError
    from featureplane.repo.planning import plan_repository

    try:
        return plan_repository(runtime, workspace, suppress_recreates=suppress_recreates)
    except RepositoryError as exc:
        raise fail(str(exc)) from None
    except WorkspaceNotFound as exc:
        raise fail(str(exc)) from None


def plan(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan; `apply --plan FILE` applies exactly it.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 with no changes, 2 with changes, 1 on errors (for CI)."
        ),
    ] = False,
    suppress_recreates: SuppressOption = False,
) -> None:
    """Show what apply would change in the workspace.

    Exits 1 when the repository is invalid or the plan would destroy a protected object."""
    from featureplane.cli.render import render_plan

    runtime = runtime_from(config)
    name = workspace_name(runtime.config, workspace)
    authorize_or_fail(runtime.config, name, "view", f"plan against workspace {name!r}")
    result = _plan(runtime, name, suppress_recreates)
    if out:
        out.write_text(result.dumps() + "\n")
    if as_json:
        data = result.to_json()
        data.pop("desired")
        print(json.dumps(data, indent=2, default=str))
    else:
        render_plan(console, result)
    if result.blocked:
        raise fail(
            f"apply would refuse this plan: {len(result.blocked)} change(s) blocked by prevent_destroy"
        )
    if detailed_exitcode and not result.empty:
        raise typer.Exit(2)


def apply(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Apply a plan saved with `plan --out`.")
    ] = None,
    suppress_recreates: SuppressOption = False,
) -> None:
    """Apply the repository to the workspace, atomically, as one new version."""
    from featureplane.cli.render import render_plan
    from featureplane.registry.base import ConflictError, PlanRefused
    from featureplane.registry.plan import Plan
    from featureplane.repo.planning import apply_plan

    runtime = runtime_from(config)
    name = workspace_name(runtime.config, workspace)
    authorize_or_fail(runtime.config, name, "apply", f"apply to workspace {name!r}")
    if plan_file:
        result = Plan.from_json(json.loads(plan_file.read_text()))
        if result.workspace != name and workspace:
            raise fail(f"{plan_file} is a plan for workspace {result.workspace!r}, not {name!r}")
        authorize_or_fail(
            runtime.config, result.workspace, "apply", f"apply to workspace {result.workspace!r}"
        )
    else:
        result = _plan(runtime, name, suppress_recreates)
    render_plan(console, result)
    if result.empty:
        return
    if result.blocked:
        raise fail("; ".join(c.blocked for c in result.blocked))
    if any("recreate suppressed" in r for c in result.changes for r in c.reasons):
        authorize_or_fail(
            runtime.config, result.workspace, "suppress_recreates", "apply with --suppress-recreates"
        )
    if not yes:
        if not sys.stdin.isatty():
            raise fail("apply needs confirmation: run it in a terminal or pass --yes")
        typer.confirm(f"Apply these changes to {result.workspace}?", abort=True)
    try:
        version = apply_plan(runtime, result)
    except (ConflictError, PlanRefused) as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]Applied[/] to workspace [bold]{result.workspace}[/]: now at version {version}.")


def export_snapshot(config: ConfigOption = None) -> None:
    """Write the serving snapshot (serving.registry_snapshot) that Lambda lookup services read.

    `apply` does this after every change to a live workspace; run it to repair or seed the snapshot."""
    from featureplane.repo.planning import export_serving_snapshot

    runtime = runtime_from(config)
    if runtime.config.registry.type == "remote":
        raise fail("behind a featureplane server, the server exports the serving snapshot after every change")
    try:
        target = export_serving_snapshot(runtime)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if target is None:
        raise fail(f"serving.registry_snapshot is not set in {runtime.config.path}")
    console.print(f"Exported the serving snapshot to {target}.")

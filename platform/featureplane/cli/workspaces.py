"""``featureplane workspace create|list|select|delete``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    authorize_or_fail,
    console,
    fail,
    runtime_from,
    selected_workspace,
)
from featureplane.config import Config

workspace_app = typer.Typer(help="Create, list and select workspaces.", no_args_is_help=True)


@workspace_app.command("create")
def workspace_create(
    name: str,
    live: Annotated[
        bool, typer.Option("--live", help="A live workspace materializes and serves features.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a workspace (development unless --live) and select it."""
    from featureplane.registry.base import RegistryError

    runtime = runtime_from(config)
    creator = None
    if live:  # live workspaces materialize and serve: platform owners create them
        creator = authorize_or_fail(runtime.config, "*", "manage_access", "create a live workspace")
    try:
        info = runtime.registry.create_workspace(name, live)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    _grant_creator(runtime.config, name, creator)
    select_workspace(runtime.config, name)
    console.print(f"Created {info.kind} workspace [bold]{name}[/] and selected it.")


def _grant_creator(config: Config, workspace: str, principal: str | None) -> None:
    """With auth on, whoever creates a workspace owns it."""
    from featureplane.access import open_access_store
    from featureplane.access.authorize import auth_enabled, caller

    if not auth_enabled(config):
        return
    store = open_access_store(config)
    try:
        principal = principal or caller(store).principal_id
        store.assign_role(principal, workspace, "owner", assigned_by=principal)
    finally:
        store.close()


@workspace_app.command("list")
def workspace_list(config: ConfigOption = None) -> None:
    """List workspaces; * marks the selected one."""
    from featureplane.cli.render import render_workspaces

    runtime = runtime_from(config)
    workspaces = runtime.registry.list_workspaces()
    if not workspaces:
        console.print("No workspaces yet: create one with `featureplane workspace create NAME [--live]`.")
        return
    render_workspaces(console, workspaces, selected_workspace(runtime.config))


@workspace_app.command("select")
def workspace_select(name: str, config: ConfigOption = None) -> None:
    """Select the workspace that plan, apply and other commands use by default."""
    from featureplane.registry.base import WorkspaceNotFound

    runtime = runtime_from(config)
    try:
        info = runtime.registry.get_workspace(name)
    except WorkspaceNotFound as exc:
        raise fail(str(exc)) from None
    select_workspace(runtime.config, name)
    console.print(f"Selected {info.kind} workspace [bold]{name}[/].")


@workspace_app.command("delete")
def workspace_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete a workspace: its registry state and its data in the offline and online stores."""
    from featureplane.registry.base import WorkspaceNotFound
    from featureplane.repo.planning import delete_workspace

    runtime = runtime_from(config)
    try:
        info = runtime.registry.get_workspace(name)
    except WorkspaceNotFound as exc:
        raise fail(str(exc)) from None
    authorize_or_fail(runtime.config, name, "delete_workspace", f"delete workspace {name!r}")
    if not yes:
        if not sys.stdin.isatty():
            raise fail("deleting a workspace needs confirmation: run it in a terminal or pass --yes")
        typer.confirm(
            f"Delete {info.kind} workspace {name} (version {info.version}) and all of its materialized data?",
            abort=True,
        )
    dropped = delete_workspace(runtime, name)
    if selected_workspace(runtime.config) == name:
        runtime.config.state_path.unlink(missing_ok=True)
    console.print(f"Deleted workspace [bold]{name}[/] and the data of {len(dropped)} feature view(s).")


def select_workspace(config: Config, name: str) -> None:
    config.state_path.parent.mkdir(parents=True, exist_ok=True)
    config.state_path.write_text(json.dumps({"workspace": name}) + "\n")

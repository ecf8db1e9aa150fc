"""``featureplane api-key create|list|revoke`` and ``access assign-role|remove-role|list``."""

from __future__ import annotations

from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    authorize_or_fail,
    config_from,
    console,
    err,
    export_keys,
    fail,
    whoami,
)

api_key_app = typer.Typer(help="API keys for the lookup and ingest API.", no_args_is_help=True)


@api_key_app.command("create")
def api_key_create(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace the key may use.")],
    role: Annotated[
        str,
        typer.Option(help="consumer (get-features, batch, metadata), ingest (ingest) or admin (all)."),
    ] = "consumer",
    description: Annotated[str, typer.Option(help="What the key is for (shown by api-key list).")] = "",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key (for scripts).")] = False,
    config: ConfigOption = None,
) -> None:
    """Create an API key with a role on a workspace; the key is printed once and never stored."""
    from featureplane.access import AccessError, create_api_key
    from featureplane.access.roles import check_role
    from featureplane.registry.base import WorkspaceNotFound

    cfg = config_from(config)
    authorize_or_fail(cfg, workspace, "manage_access", f"create API keys for workspace {workspace!r}")
    try:
        check_role(role)
        key = create_api_key(cfg, workspace, role, description, created_by=whoami())
    except (ValueError, AccessError, WorkspaceNotFound) as exc:
        raise fail(str(exc)) from None
    export_keys(cfg)
    if quiet:
        print(key)
        return
    err.print(
        f"Created a [bold]{role}[/] key for workspace [bold]{workspace}[/]. "
        "Store it now: it is not shown again."
    )
    print(key)
    err.print(f"Use it as the header:  Authorization: Tecton-key {key}")


@api_key_app.command("list")
def api_key_list(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only keys with a role on this workspace.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List API keys (ids, roles, status; never the keys themselves)."""
    from rich.table import Table

    from featureplane.access import open_access_store

    store = open_access_store(config_from(config))
    try:
        keys = store.list_api_keys(workspace)
    finally:
        store.close()
    if not keys:
        console.print("No API keys yet: create one with `featureplane api-key create --workspace NAME`.")
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("id", "workspace", "role", "status", "created", "by", "description"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            ", ".join(b.workspace for b in key.bindings),
            ", ".join(b.role for b in key.bindings),
            "active" if key.active else f"revoked {key.revoked_at}",
            key.created_at,
            key.created_by,
            key.description,
        )
    console.print(table)


@api_key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from api-key list) or the key itself.")],
    config: ConfigOption = None,
) -> None:
    """Revoke an API key; servers stop accepting it within their registry refresh interval."""
    from featureplane.access import AccessError, open_access_store

    store = open_access_store(config_from(config))
    for known in store.list_api_keys():
        if key_id in (known.id, known.display) or key_id.startswith(f"fpk_{known.id}_"):
            for binding in known.bindings:
                authorize_or_fail(
                    config_from(config), binding.workspace, "manage_access", f"revoke API key {known.id}"
                )
    try:
        info = store.revoke_api_key(key_id, revoked_by=whoami())
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    export_keys(config_from(config))
    console.print(f"Revoked API key [bold]{info.id}[/] (revoked at {info.revoked_at}).")


access_app = typer.Typer(help="Roles of users and service accounts on workspaces.", no_args_is_help=True)


def _principal(user: str | None, api_key_id: str | None) -> str:
    if bool(user) == bool(api_key_id):
        raise fail("name exactly one principal: --user NAME or --api-key ID")
    return f"user:{user}" if user else f"service_account:{api_key_id}"


UserOption = Annotated[str | None, typer.Option("--user", help="A person, by user name.")]
ApiKeyIdOption = Annotated[
    str | None, typer.Option("--api-key", help="A service account, by its API key id.")
]


@access_app.command("assign-role")
def access_assign_role(
    workspace: Annotated[
        str, typer.Option("--workspace", "-w", help="The workspace, or * for every workspace.")
    ],
    role: Annotated[str, typer.Option(help="owner, editor, operator, consumer or viewer.")],
    user: UserOption = None,
    api_key: ApiKeyIdOption = None,
    config: ConfigOption = None,
) -> None:
    """Give a user or a service account a role on a workspace (owners only; checked when auth is on)."""
    from featureplane.access import AccessError, open_access_store

    cfg = config_from(config)
    principal = _principal(user, api_key)
    by = (
        authorize_or_fail(cfg, workspace, "manage_access", f"assign roles on workspace {workspace!r}")
        or whoami()
    )
    store = open_access_store(cfg)
    try:
        binding = store.assign_role(principal, workspace, role, assigned_by=by)
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    export_keys(cfg)
    console.print(
        f"{binding.principal_id} is now [bold]{binding.role}[/] on workspace [bold]{binding.workspace}[/]."
    )


@access_app.command("remove-role")
def access_remove_role(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace, or *.")],
    role: Annotated[str, typer.Option(help="The role to take away.")],
    user: UserOption = None,
    api_key: ApiKeyIdOption = None,
    config: ConfigOption = None,
) -> None:
    """Take a role away from a user or a service account."""
    from featureplane.access import AccessError, open_access_store

    cfg = config_from(config)
    principal = _principal(user, api_key)
    authorize_or_fail(cfg, workspace, "manage_access", f"remove roles on workspace {workspace!r}")
    store = open_access_store(cfg)
    try:
        store.remove_role(principal, workspace, role)
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    export_keys(cfg)
    console.print(f"{principal} no longer has role {role} on workspace {workspace}.")


@access_app.command("list")
def access_list(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only roles on this workspace.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List who holds which role on which workspace."""
    from rich.table import Table

    from featureplane.access import open_access_store
    from featureplane.access.authorize import auth_enabled, caller, server_enforced

    cfg = config_from(config)
    store = open_access_store(cfg)
    try:
        bindings = store.bindings(workspace)
        me = None
        if server_enforced(cfg):
            me = store.whoami()["principal"]  # type: ignore[attr-defined]
        elif auth_enabled(cfg):
            me = caller(store).principal_id
    finally:
        store.close()
    if not auth_enabled(cfg) and not server_enforced(cfg):
        err.print("auth is off in featureplane.yaml: roles are recorded but not checked")
    if not bindings:
        console.print("No roles assigned yet.")
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("workspace", "principal", "role"):
        table.add_column(column)
    for b in bindings:
        table.add_row(b.workspace, b.principal_id + ("  (you)" if b.principal_id == me else ""), b.role)
    console.print(table)

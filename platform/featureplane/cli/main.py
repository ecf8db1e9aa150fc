"""The ``featureplane`` command line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from featureplane.config import ENV_WORKSPACE, Config, ConfigError, load_config

app = typer.Typer(
    name="featureplane",
    help="Feature definitions as code: plan and apply them to workspaces, materialize, and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
workspace_app = typer.Typer(help="Create, list and select workspaces.", no_args_is_help=True)
example_app = typer.Typer(help="Data for the example repository.", no_args_is_help=True)
api_key_app = typer.Typer(help="API keys for the lookup and ingest API.", no_args_is_help=True)
ingest_app = typer.Typer(help="Records ingested into feature tables.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(example_app, name="example")
app.add_typer(api_key_app, name="api-key")
app.add_typer(ingest_app, name="ingest")

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


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _runtime(path: Path | None):
    from featureplane.runtime import Runtime

    return Runtime(_config(path))


def _authorize(config: Config, workspace: str, permission: str, action: str) -> str | None:
    """Check the caller's role when ``auth`` is enabled (see featureplane.access.authorize)."""
    from featureplane.access.authorize import AccessDenied, authorize

    try:
        return authorize(config, workspace, permission, action)
    except AccessDenied as exc:
        raise fail(str(exc)) from None


def _selected(config: Config) -> str | None:
    try:
        return json.loads(config.state_path.read_text()).get("workspace")
    except (OSError, ValueError):
        return None


def _workspace(config: Config, explicit: str | None) -> str:
    name = explicit or os.environ.get(ENV_WORKSPACE) or _selected(config)
    if not name:
        raise fail(
            "no workspace selected: pass --workspace, set FEATUREPLANE_WORKSPACE, or run `featureplane workspace select NAME`"
        )
    return name


# -- workspaces ------------------------------------------------------------------------------------


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

    runtime = _runtime(config)
    creator = None
    if live:  # live workspaces materialize and serve: platform owners create them
        creator = _authorize(runtime.config, "*", "manage_access", "create a live workspace")
    try:
        info = runtime.registry.create_workspace(name, live)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    _grant_creator(runtime.config, name, creator)
    _select(runtime.config, name)
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

    runtime = _runtime(config)
    workspaces = runtime.registry.list_workspaces()
    if not workspaces:
        console.print("No workspaces yet: create one with `featureplane workspace create NAME [--live]`.")
        return
    render_workspaces(console, workspaces, _selected(runtime.config))


@workspace_app.command("select")
def workspace_select(name: str, config: ConfigOption = None) -> None:
    """Select the workspace that plan, apply and other commands use by default."""
    from featureplane.registry.base import WorkspaceNotFound

    runtime = _runtime(config)
    try:
        info = runtime.registry.get_workspace(name)
    except WorkspaceNotFound as exc:
        raise fail(str(exc)) from None
    _select(runtime.config, name)
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

    runtime = _runtime(config)
    try:
        info = runtime.registry.get_workspace(name)
    except WorkspaceNotFound as exc:
        raise fail(str(exc)) from None
    _authorize(runtime.config, name, "delete_workspace", f"delete workspace {name!r}")
    if not yes:
        if not sys.stdin.isatty():
            raise fail("deleting a workspace needs confirmation: run it in a terminal or pass --yes")
        typer.confirm(
            f"Delete {info.kind} workspace {name} (version {info.version}) and all of its materialized data?",
            abort=True,
        )
    dropped = delete_workspace(runtime, name)
    if _selected(runtime.config) == name:
        runtime.config.state_path.unlink(missing_ok=True)
    console.print(f"Deleted workspace [bold]{name}[/] and the data of {len(dropped)} feature view(s).")


def _select(config: Config, name: str) -> None:
    config.state_path.parent.mkdir(parents=True, exist_ok=True)
    config.state_path.write_text(json.dumps({"workspace": name}) + "\n")


# -- plan and apply --------------------------------------------------------------------------------


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


@app.command()
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

    runtime = _runtime(config)
    name = _workspace(runtime.config, workspace)
    _authorize(runtime.config, name, "view", f"plan against workspace {name!r}")
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


@app.command()
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

    runtime = _runtime(config)
    name = _workspace(runtime.config, workspace)
    _authorize(runtime.config, name, "apply", f"apply to workspace {name!r}")
    if plan_file:
        result = Plan.from_json(json.loads(plan_file.read_text()))
        if result.workspace != name and workspace:
            raise fail(f"{plan_file} is a plan for workspace {result.workspace!r}, not {name!r}")
        _authorize(runtime.config, result.workspace, "apply", f"apply to workspace {result.workspace!r}")
    else:
        result = _plan(runtime, name, suppress_recreates)
    render_plan(console, result)
    if result.empty:
        return
    if result.blocked:
        raise fail("; ".join(c.blocked for c in result.blocked))
    if any("recreate suppressed" in r for c in result.changes for r in c.reasons):
        _authorize(runtime.config, result.workspace, "suppress_recreates", "apply with --suppress-recreates")
    if not yes:
        if not sys.stdin.isatty():
            raise fail("apply needs confirmation: run it in a terminal or pass --yes")
        typer.confirm(f"Apply these changes to {result.workspace}?", abort=True)
    try:
        version = apply_plan(runtime, result)
    except (ConflictError, PlanRefused) as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]Applied[/] to workspace [bold]{result.workspace}[/]: now at version {version}.")


@app.command("export-snapshot")
def export_snapshot(config: ConfigOption = None) -> None:
    """Write the serving snapshot (serving.registry_snapshot) that Lambda lookup services read.

    `apply` does this after every change to a live workspace; run it to repair or seed the snapshot."""
    from featureplane.repo.planning import export_serving_snapshot

    runtime = _runtime(config)
    try:
        target = export_serving_snapshot(runtime)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if target is None:
        raise fail(f"serving.registry_snapshot is not set in {runtime.config.path}")
    console.print(f"Exported the serving snapshot to {target}.")


# -- materialization and serving -------------------------------------------------------------------


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from featureplane.specs import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise fail(f"{value!r} is not a date or ISO-8601 timestamp") from None


@app.command()
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

    from featureplane.engines.base import TransformationError
    from featureplane.materialization import MaterializationError, ValidationFailed
    from featureplane.materialization import materialize as run
    from featureplane.monitoring.quality import quality_validators
    from featureplane.partitions import align_down, utcnow, windows

    runtime = _runtime(config)
    state = runtime.registry.load(_workspace(runtime.config, workspace))
    _authorize(runtime.config, state.name, "materialize", f"materialize in workspace {state.name!r}")
    try:
        spec = state.feature_view(view)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    if not spec.is_batch or spec.schedule is None or spec.start is None:
        raise fail(f"feature view {view!r} is not a materialized batch view")
    first = _parse_time(start) or spec.start
    last = _parse_time(end) or align_down(utcnow(), spec.schedule)
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


@app.command()
def partitions(
    view: Annotated[
        str | None, typer.Argument(help="Feature view (default: every materialized view).")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest complete partition.")] = False,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Print `<workspace>/<view> <partition key>` for complete partitions (for scripts and CI)."""
    from featureplane.partitions import align_down, partition_key, utcnow, windows

    runtime = _runtime(config)
    state = runtime.registry.load(_workspace(runtime.config, workspace))
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: ConfigOption = None,
) -> None:
    """Run the lookup API (Tecton's HTTP API v1) over the online store."""
    import logging

    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.http_server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _config(config)
    try:
        service = create_lookup_service(cfg)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if service.verifier is None:
        err.print("API keys are not required (serving.auth is false): use this only locally.")
    else:
        err.print("API keys are required: create one with `featureplane api-key create --workspace NAME`.")
    run_server(service, host, port)


# -- API keys --------------------------------------------------------------------------------------


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

    cfg = _config(config)
    _authorize(cfg, workspace, "manage_access", f"create API keys for workspace {workspace!r}")
    try:
        check_role(role)
        key = create_api_key(cfg, workspace, role, description, created_by=_whoami())
    except (ValueError, AccessError, WorkspaceNotFound) as exc:
        raise fail(str(exc)) from None
    _export_keys(cfg)
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

    store = open_access_store(_config(config))
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

    store = open_access_store(_config(config))
    for known in store.list_api_keys():
        if key_id in (known.id, known.display) or key_id.startswith(f"fpk_{known.id}_"):
            for binding in known.bindings:
                _authorize(_config(config), binding.workspace, "manage_access", f"revoke API key {known.id}")
    try:
        info = store.revoke_api_key(key_id, revoked_by=_whoami())
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    _export_keys(_config(config))
    console.print(f"Revoked API key [bold]{info.id}[/] (revoked at {info.revoked_at}).")


access_app = typer.Typer(help="Roles of users and service accounts on workspaces.", no_args_is_help=True)
app.add_typer(access_app, name="access")


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

    cfg = _config(config)
    principal = _principal(user, api_key)
    by = _authorize(cfg, workspace, "manage_access", f"assign roles on workspace {workspace!r}") or _whoami()
    store = open_access_store(cfg)
    try:
        binding = store.assign_role(principal, workspace, role, assigned_by=by)
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    _export_keys(cfg)
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

    cfg = _config(config)
    principal = _principal(user, api_key)
    _authorize(cfg, workspace, "manage_access", f"remove roles on workspace {workspace!r}")
    store = open_access_store(cfg)
    try:
        store.remove_role(principal, workspace, role)
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    _export_keys(cfg)
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
    from featureplane.access.authorize import auth_enabled, caller

    cfg = _config(config)
    store = open_access_store(cfg)
    try:
        bindings = store.bindings(workspace)
        me = caller(store).principal_id if auth_enabled(cfg) else None
    finally:
        store.close()
    if not auth_enabled(cfg):
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


def _export_keys(cfg: Config) -> None:
    """Lookup services that read the serving snapshot (Lambda) learn of key changes from it."""
    from featureplane.repo.planning import export_serving_snapshot
    from featureplane.runtime import Runtime

    try:
        where = export_serving_snapshot(Runtime(cfg))
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if where:
        err.print(f"Exported the serving snapshot with the change to {where}.")


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


# -- ingest ----------------------------------------------------------------------------------------


@ingest_app.command("flush")
def ingest_flush(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Fold ingested records waiting in the ingest log into the feature tables' offline store.

    Readers (training sets) do this themselves before reading; this makes the offline tables current
    for anything that reads them directly."""
    from featureplane.ingest.offline import flush_ingest_log

    runtime = _runtime(config)
    state = runtime.registry.load(_workspace(runtime.config, workspace))
    folded = flush_ingest_log(runtime, state)
    if not folded or not any(folded.values()):
        console.print(f"Nothing to fold: the feature tables of {state.name} are up to date.")
        return
    for view, rows in sorted(folded.items()):
        console.print(f"{state.name}/{view}: folded {rows:,} record(s) into the offline store.")


@app.command()
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
    """Per feature view: last materialized partition, freshness, latest checks and failed runs.

    Without --workspace (and no selected workspace) every live workspace is shown."""
    from featureplane.monitoring.status import StatusError, collect, render_profiles, render_status

    cfg = _config(config)
    name = workspace or os.environ.get(ENV_WORKSPACE) or _selected(cfg)
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


# -- example data ----------------------------------------------------------------------------------


@example_app.command("generate")
def example_generate(
    users: Annotated[int, typer.Option(help="Number of users.")] = 10_000,
    days: Annotated[int, typer.Option(help="Days of transactions.")] = 90,
    end: Annotated[
        str | None, typer.Option(help="First day after the data, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same inputs give the same data.")] = 7,
    rate: Annotated[float, typer.Option(help="Mean transactions per user per day.")] = 1.25,
    config: ConfigOption = None,
) -> None:
    """Generate the fraud-detection example's transactions and users into the warehouse."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from featureplane.examples.fraud_data import DatasetSize, generate

    cfg = _config(config)
    end_date = _parse_time(end).date() if end else None
    # On Snowflake the data is generated locally, then loaded into the engine's database.
    to_snowflake = cfg.engine.get("type") == "snowflake"
    staging = Path(tempfile.mkdtemp(prefix="featureplane-example-")) if to_snowflake else None
    warehouse = staging / "warehouse.duckdb" if staging else cfg.warehouse_path
    with Progress(
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("days", total=days)
        counts = generate(
            warehouse,
            size=DatasetSize(users=users, days=days, mean_transactions_per_user_day=rate),
            end=end_date,
            seed=seed,
            on_day=lambda done, total: progress.update(task, completed=done),
        )
    destination = str(cfg.warehouse_path)
    if staging:
        import shutil

        from featureplane.engines.snowflake import copy_from_duckdb
        from featureplane.snowflake_client import SnowflakeError

        try:
            copy_from_duckdb(cfg, warehouse, ["raw.transactions", "raw.users"])
        except (SnowflakeError, ValueError) as exc:
            raise fail(str(exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        destination = f"Snowflake ({cfg.engine.get('database')}.RAW)"
    console.print(
        f"Wrote {counts['transactions']:,} transactions and {counts['users']:,} users to {destination}."
    )


def main() -> None:
    from featureplane.snowflake_client import SnowflakeError

    try:
        app()
    except (ConfigError, SnowflakeError) as exc:  # settings or a warehouse refusing: no traceback
        err.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

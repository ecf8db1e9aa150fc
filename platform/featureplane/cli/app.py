"""The ``featureplane`` command: every command group, registered in the order ``--help`` lists them."""

from __future__ import annotations

import typer

from featureplane.cli import (
    access,
    deploy,
    example,
    ingest,
    lifecycle,
    materialize,
    planning,
    serve,
    server,
    session,
    status,
    stream,
    workspaces,
)
from featureplane.cli.common import err
from featureplane.config import ConfigError
from featureplane.errors import FeatureplaneError, describe_os_error

app = typer.Typer(
    name="featureplane",
    help="Feature definitions as code: plan and apply them to workspaces, materialize, and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(planning.plan)
app.command()(planning.apply)
app.command("export-snapshot")(planning.export_snapshot)
app.command()(materialize.materialize)
app.command()(materialize.partitions)
app.command("delete-keys")(lifecycle.delete_keys)
app.command()(serve.serve)
app.command()(status.status)
app.add_typer(workspaces.workspace_app, name="workspace")
app.add_typer(example.example_app, name="example")
app.add_typer(access.api_key_app, name="api-key")
app.add_typer(ingest.ingest_app, name="ingest")
app.add_typer(stream.stream_app, name="stream")
app.add_typer(access.access_app, name="access")
app.add_typer(server.server_app, name="server")
app.command()(session.login)
app.command()(session.logout)
app.command("dagster-instance")(deploy.dagster_instance)


def main() -> None:
    """Run the command. Settings, the environment (files, directories, databases) and a warehouse
    refusing are one clear error and exit code 1, never a traceback."""
    import sqlite3

    from featureplane.compute.snowflake.client import SnowflakeError

    try:
        app()
    except (ConfigError, SnowflakeError, FeatureplaneError) as exc:
        fail_with(str(exc))
    except OSError as exc:
        fail_with(describe_os_error(exc))
    except sqlite3.Error as exc:
        fail_with(f"SQLite: {exc}")


def fail_with(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()

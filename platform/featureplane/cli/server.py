"""``featureplane server`` (run the account server) and ``featureplane server create-admin``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from featureplane.cli.common import ConfigOption, config_from, err, fail

server_app = typer.Typer(
    help="The account server: the team's registry and access store behind one HTTP API.",
    invoke_without_command=True,
)


@server_app.callback()
def server(
    ctx: typer.Context,
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8800,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers",
            help="Take the client's address from X-Forwarded-For (only behind a proxy you run).",
        ),
    ] = False,
) -> None:
    """Run the account server over the registry and access store of featureplane.yaml.

    Sign-ins, roles, keys and every apply are checked and recorded here; clients reach it with
    `registry: {type: remote, url: ...}` and `featureplane login`."""
    if ctx.invoked_subcommand is not None:
        return
    import logging

    import uvicorn

    from featureplane.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config_from(config))
    if not app.state.featureplane.access.list_users():
        err.print("No users yet: create the first admin with `featureplane server create-admin`.")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        forwarded_allow_ips="*" if proxy_headers else None,
        server_header=False,
        log_level="info",
    )


def read_password(password_stdin: bool, confirm: bool = True) -> str:
    """The password from one line of standard input, or typed twice at a prompt."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise fail("--password-stdin: standard input has no password")
        return password
    if not sys.stdin.isatty():
        raise fail("a password is needed: type it in a terminal or pass --password-stdin")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)


@server_app.command("create-admin")
def create_admin(
    user: Annotated[str, typer.Option("--user", "-u", help="The admin's user name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a server admin (on the server's machine: it writes the access store directly)."""
    from featureplane.access import AccessError, open_access_store
    from featureplane.cli.common import whoami

    cfg = config_from(config)
    if cfg.registry.type == "remote":
        raise fail(
            "create-admin writes the server's own access store: run it with the server's featureplane.yaml"
        )
    password = read_password(password_stdin)
    store = open_access_store(cfg)
    try:
        created = store.create_user(user, password, admin=True, created_by=f"cli:{whoami()}")
        store.record_audit(f"cli:{whoami()}", "user.create", target=created.principal_id, detail="admin")
    except AccessError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    err.print(f"Created server admin [bold]{created.name}[/]: sign in with `featureplane login --url URL`.")

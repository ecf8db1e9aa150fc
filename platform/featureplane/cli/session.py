"""``featureplane login`` and ``featureplane logout``: a session token for a featureplane server, kept in
the token file (mode 0600), never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import ConfigOption, console, err, fail
from featureplane.cli.server import read_password

UrlOption = Annotated[
    str | None, typer.Option("--url", help="The server (default: registry.url of featureplane.yaml).")
]


def _server(url: str | None, config: Path | None) -> tuple[str, Path]:
    """The server's URL and the token file: from the options, else from featureplane.yaml."""
    from featureplane.config import ConfigError, load_config
    from featureplane.registry.client import normalize_url, token_file

    settings = None
    try:
        cfg = load_config(config)
        settings = cfg.registry if cfg.registry.type == "remote" else None
    except ConfigError as exc:
        if config is not None or url is None:
            raise fail(str(exc)) from None
    if url is None:
        if settings is None:
            raise fail(
                "which server? pass --url, or set registry: {type: remote, url: ...} in featureplane.yaml"
            )
        url = settings.url
    return normalize_url(url), token_file(settings.token_file if settings is not None else None)


def login(
    url: UrlOption = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Your user name.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Sign in to a featureplane server; the session token is stored for its URL (file mode 0600)."""
    from featureplane.registry.client import ServerClient, save_token

    server, path = _server(url, config)
    if user is None:
        if password_stdin:
            raise fail("--password-stdin needs --user")
        user = typer.prompt("User")
    password = read_password(password_stdin, confirm=False)
    client = ServerClient(server, token_path=path)
    answer = client.request("POST", "/login", {"user": user, "password": password}, auth=False)
    save_token(path, server, answer["token"], answer["user"], answer["expires_at"])
    console.print(f"Signed in to {server} as [bold]{answer['user']}[/] until {answer['expires_at']}.")


def logout(url: UrlOption = None, config: ConfigOption = None) -> None:
    """End the session on the server and forget its token."""
    from featureplane.registry.client import ServerClient, ServerError, forget_token, read_tokens

    server, path = _server(url, config)
    entry = read_tokens(path).get(server)
    if entry is None:
        console.print(f"Not signed in to {server}.")
        return
    try:
        ServerClient(server, token_path=path, credential=entry["token"]).request("POST", "/logout")
    except ServerError as exc:
        if exc.status != 401:  # an expired session has nothing to end
            err.print(f"The server did not end the session ({exc}); forgetting its token anyway.")
    forget_token(path, server)
    console.print(f"Signed out of {server}.")

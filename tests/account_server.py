"""A featureplane account server for tests: ``featureplane server`` in its own directory (its own SQLite
registry and access store) on a free port of 127.0.0.1, stopped by its process id; and client
repositories whose featureplane.yaml points at it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from conftest import BIN, Repo, Server, free_port, run_cli

ADMIN = "root"
ADMIN_PASSWORD = "root-password-Vq7!"


@dataclass
class AccountServer:
    server: Server
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def log(self) -> str:
        return self.server.log.read_text()

    @property
    def config_path(self) -> Path:
        return self.root / "featureplane.yaml"

    def access_store(self):
        """The server's own access store (as ``featureplane server create-admin`` opens it)."""
        from featureplane.access import open_access_store
        from featureplane.config import load_config

        return open_access_store(load_config(self.config_path))

    def call(
        self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None
    ) -> tuple[int, dict | list | None, dict]:
        """(status, decoded JSON or None, response headers) of one request."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload, status, got = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            payload, status, got = exc.read(), exc.code, dict(exc.headers)
        return status, (json.loads(payload) if payload else None), got

    def login(self, user: str, password: str) -> str:
        status, answer, _ = self.call("POST", "/api/v1/login", {"user": user, "password": password})
        assert status == 200, answer
        return answer["token"]

    def stop(self) -> None:
        self.server.stop()


def start_account_server(
    root: Path, extra_config: dict | None = None, server_args: tuple[str, ...] = ()
) -> AccountServer:
    """A server over a fresh registry in ``root``, with the admin ``root`` already created
    (``server_args``: more options of ``featureplane server``)."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"project": "team", "data_dir": ".featureplane", **(extra_config or {})}
    (root / "featureplane.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "FEATUREPLANE_CONFIG": "", "FEATUREPLANE_API_KEY": ""}
    run_cli("server", "create-admin", "--config", str(root), "--user", ADMIN, "--password-stdin",
            cwd=root, env=env, input=ADMIN_PASSWORD + "\n")  # fmt: skip
    port = free_port()
    args = [
        str(BIN / "featureplane"),
        "server",
        "--config",
        str(root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *server_args,
    ]
    server = Server(args, port, env, root, root / f"server-{port}.log")
    server.wait_ready("/healthz")
    return AccountServer(server, root)


def point_at_server(repo: Repo, url: str) -> None:
    """Make a repository's featureplane.yaml use the server as its registry."""
    raw = yaml.safe_load(repo.config_path.read_text())
    raw["registry"] = {"type": "remote", "url": url}
    repo.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

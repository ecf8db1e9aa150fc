"""The CLI through a featureplane server: ``registry: {type: remote}``, ``featureplane login``, and every
command that reads or changes the registry or the access store, with roles enforced by the server."""

from __future__ import annotations

import os
import stat
import time

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, point_at_server, start_account_server
from helpers import AMOUNTS_SERVICE, events_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def account(tmp_path):
    server = start_account_server(tmp_path / "server")
    yield server
    server.stop()


@pytest.fixture
def repo(tmp_path, account):
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    point_at_server(repo, account.url)
    return repo


def person(tmp_path, name: str) -> dict[str, str]:
    """The environment of one person: their own home (and token file), no API key."""
    home = tmp_path / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "FEATUREPLANE_API_KEY": "", "FEATUREPLANE_USER": ""}


def one_line_error(result, *fragments: str) -> bool:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return (
        result.returncode == 1
        and len(lines) == 1
        and lines[0].startswith("error:")
        and all(f in result.stderr for f in fragments)
    )


def test_every_command_works_through_the_server(tmp_path, account, repo, dagster_home):
    root, bob = person(tmp_path, "root"), person(tmp_path, "bob")

    refused = repo.cli("workspace", "list", env=root, check=False)
    assert one_line_error(refused, "not signed in", "featureplane login --url " + account.url)

    signed_in = repo.cli("login", "--user", ADMIN, "--password-stdin", env=root, input=ADMIN_PASSWORD + "\n")
    assert f"Signed in to {account.url} as root" in signed_in.stdout
    tokens = tmp_path / "homes" / "root" / ".featureplane" / "tokens.json"
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tokens.parent).st_mode) == 0o700
    assert "fps_" not in signed_in.stdout + signed_in.stderr
    wrong = repo.cli(
        "login", "--user", ADMIN, "--password-stdin", env=bob, input="not the password\n", check=False
    )
    assert one_line_error(wrong, "wrong user name or password")

    # Workspaces, plan and apply.
    repo.cli("workspace", "create", "prod", "--live", env=root)
    assert "4 to create" in repo.cli("plan", "-w", "prod", env=root).stdout
    repo.cli("plan", "-w", "prod", "--out", str(tmp_path / "v0.json"), env=root)
    assert "now at version 1" in repo.cli("apply", "--yes", "-w", "prod", env=root).stdout
    listing = repo.cli("workspace", "list", env=root).stdout
    assert "prod" in listing and "live" in listing
    assert "No changes" in repo.cli("plan", "-w", "prod", env=root).stdout
    status = repo.cli("status", "-w", "prod", "--dagster-home", str(dagster_home), env=root).stdout
    assert "amounts" in status
    stale = repo.cli("apply", "--yes", "--plan", str(tmp_path / "v0.json"), env=root, check=False)
    assert one_line_error(stale, "changed since the plan", "version 0", "version 1")

    # A second person, without a role: prod is invisible to them.
    status, _, _ = account.call(
        "POST",
        "/api/v1/users",
        {"name": "bob", "password": "bob-password-1"},
        account.login(ADMIN, ADMIN_PASSWORD),
    )
    assert status == 201
    repo.cli("login", "--user", "bob", "--password-stdin", env=bob, input="bob-password-1\n")
    assert "No workspaces yet" in repo.cli("workspace", "list", env=bob).stdout
    for command in (
        ["plan", "-w", "prod"],
        ["apply", "--yes", "-w", "prod"],
        ["workspace", "select", "prod"],
    ):
        result = repo.cli(*command, env=bob, check=False)
        assert one_line_error(result, "workspace 'prod' does not exist or you have no role on it"), command
    assert one_line_error(repo.cli("api-key", "create", "-w", "prod", env=bob, check=False), "no role on it")
    assert one_line_error(
        repo.cli("workspace", "delete", "prod", "--yes", env=bob, check=False), "no role on it"
    )
    hidden = repo.cli("status", "-w", "prod", "--dagster-home", str(dagster_home), env=bob, check=False)
    assert one_line_error(hidden, "no role on it")

    # Roles, given by the owner, checked by the server.
    repo.cli("access", "assign-role", "-w", "prod", "--role", "viewer", "--user", "bob", env=root)
    assert "No changes" in repo.cli("plan", "-w", "prod", env=bob).stdout
    view = repo.root / "views.py"
    view.write_text(view.read_text().replace("online=True)", 'online=True, owner="team")'))
    assert "1 to update" in repo.cli("plan", "-w", "prod", env=bob).stdout
    refused = repo.cli("apply", "--yes", "-w", "prod", env=bob, check=False)
    assert one_line_error(refused, "user:bob may not apply to workspace 'prod'", "needs the editor role")
    refused = repo.cli(
        "access", "assign-role", "-w", "prod", "--role", "owner", "--user", "bob", env=bob, check=False
    )
    assert one_line_error(refused, "needs the owner role")
    members = repo.cli("access", "list", "-w", "prod", env=root).stdout
    assert "user:root  (you)" in members and "user:bob" in members and "viewer" in members
    repo.cli("access", "remove-role", "-w", "prod", "--role", "viewer", "--user", "bob", env=root)
    assert one_line_error(repo.cli("plan", "-w", "prod", env=bob, check=False), "no role on it")

    # API keys: created once, listed without the secret, acting with their role only, revoked.
    key = repo.cli(
        "api-key", "create", "-w", "prod", "--role", "consumer", "--quiet", env=root
    ).stdout.strip()
    key_id = key.split("_")[1]
    keys = repo.cli("api-key", "list", env=root).stdout
    assert key_id in keys and key not in keys and "consumer" in keys
    ci = {**root, "FEATUREPLANE_API_KEY": key}
    assert "prod" in repo.cli("workspace", "list", env=ci).stdout
    refused = repo.cli("plan", "-w", "prod", env=ci, check=False)
    assert one_line_error(refused, f"service_account:{key_id} may not plan against workspace 'prod'")
    assert one_line_error(repo.cli("api-key", "list", "-w", "prod", env=ci, check=False), "may not")
    repo.cli("api-key", "revoke", key_id, env=root)
    assert "revoked" in repo.cli("api-key", "list", "-w", "prod", env=root).stdout
    revoked = repo.cli("workspace", "list", env=ci, check=False)
    assert one_line_error(revoked, "not signed in", "FEATUREPLANE_API_KEY is not an active API key")

    # A CI service account with the editor role applies through its key.
    ci_key = repo.cli(
        "api-key", "create", "-w", "prod", "--role", "consumer", "--quiet", env=root
    ).stdout.strip()
    repo.cli(
        "access", "assign-role", "-w", "prod", "--role", "editor", "--api-key", ci_key.split("_")[1], env=root
    )
    assert (
        "now at version 2"
        in repo.cli("apply", "--yes", "-w", "prod", env={**root, "FEATUREPLANE_API_KEY": ci_key}).stdout
    )

    # History and the audit log say who did what, from where.
    token = account.login(ADMIN, ADMIN_PASSWORD)
    _, history, _ = account.call("GET", "/api/v1/workspaces/prod/history", token=token)
    assert [(h["version"], h["applied_by"]) for h in history] == [
        (1, "user:root"),
        (2, f"service_account:{ci_key.split('_')[1]}"),
    ]
    _, events, _ = account.call("GET", "/api/v1/audit?workspace=prod", token=token)
    actions = [e["action"] for e in events]
    for action in (
        "apply",
        "role.assign",
        "role.remove",
        "api_key.create",
        "api_key.revoke",
        "workspace.create",
    ):
        assert action in actions, action
    assert {e["source_ip"] for e in events} == {"127.0.0.1"}

    # Deleting, then signing out.
    repo.cli("workspace", "delete", "prod", "--yes", env=root)
    assert "No workspaces yet" in repo.cli("workspace", "list", env=root).stdout
    assert "Signed out" in repo.cli("logout", env=root).stdout
    assert one_line_error(repo.cli("workspace", "list", env=root, check=False), "not signed in")
    assert key not in account.log and ci_key not in account.log


def test_an_unreachable_server_is_one_line(tmp_path):
    from conftest import free_port

    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    point_at_server(repo, f"http://127.0.0.1:{free_port()}")
    result = repo.cli("workspace", "list", env=person(tmp_path, "x"), check=False)
    assert one_line_error(result, "cannot reach the featureplane server at http://127.0.0.1:")


def test_the_lookup_service_reads_the_registry_and_keys_through_the_server(
    tmp_path, account, repo, lookup_server
):
    from conftest import post_json

    root = person(tmp_path, "root")
    repo.cli("login", "--user", ADMIN, "--password-stdin", env=root, input=ADMIN_PASSWORD + "\n")
    repo.cli("workspace", "create", "prod", "--live", env=root)
    repo.cli("apply", "--yes", "-w", "prod", env=root)
    repo.cli("materialize", "amounts", "-w", "prod", "--start", "2024-01-01", "--end", "2024-01-03", env=root)
    service_key = repo.cli("api-key", "create", "-w", "prod", "--quiet", env=root).stdout.strip()
    client_key = repo.cli("api-key", "create", "-w", "prod", "--quiet", env=root).stdout.strip()
    repo.set_config("serving", auth=True)
    lookup = lookup_server(repo, {**root, "FEATUREPLANE_API_KEY": service_key})
    body = {"params": {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
    url = lookup.url + "/api/v1/feature-service/get-features"
    status, answer = post_json(url, body, {"Authorization": f"Tecton-key {client_key}"})
    assert status == 200 and answer["result"]["features"] == [7.0], answer
    assert post_json(url, body, {"Authorization": "Tecton-key fpk_000000000000_" + "x" * 43})[0] == 401
    repo.cli("api-key", "revoke", client_key.split("_")[1], env=root)
    deadline = time.monotonic() + 30  # the lookup service forgets a key within its refresh interval
    while post_json(url, body, {"Authorization": f"Tecton-key {client_key}"})[0] != 401:
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.2)


SDK_READ = """
import sys
import featureplane
try:
    ws = featureplane.get_workspace("prod", config=sys.argv[1])
    print("read", sorted(ws.list_feature_views()))
except Exception as exc:
    print("refused", type(exc).__name__, exc)
"""


def test_the_sdk_sees_nothing_of_a_workspace_without_a_role(tmp_path, account, repo):
    """The notebook SDK goes through the server with the person's session: no role, no workspace."""
    import subprocess
    import sys

    root, bob = person(tmp_path, "root"), person(tmp_path, "bob")
    repo.cli("login", "--user", ADMIN, "--password-stdin", env=root, input=ADMIN_PASSWORD + "\n")
    repo.cli("workspace", "create", "prod", "--live", env=root)
    repo.cli("apply", "--yes", "-w", "prod", env=root)
    token = account.login(ADMIN, ADMIN_PASSWORD)
    account.call("POST", "/api/v1/users", {"name": "bob", "password": "bob-password-1"}, token)
    repo.cli("login", "--user", "bob", "--password-stdin", env=bob, input="bob-password-1\n")

    def sdk(env: dict) -> str:
        result = subprocess.run(
            [sys.executable, "-c", SDK_READ, str(repo.root)],
            env={**repo.env, **env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert sdk(root).startswith("read ['amounts']")
    refused = sdk(bob)
    assert (
        refused.startswith("refused")
        and "workspace 'prod' does not exist or you have no role on it" in refused
    )
    repo.cli("access", "assign-role", "-w", "prod", "--role", "viewer", "--user", "bob", env=root)
    assert sdk(bob).startswith("read ['amounts']")

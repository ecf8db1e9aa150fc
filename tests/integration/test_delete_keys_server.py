"""Deleting keys through the account server over real HTTP: editors and admins may, viewers get 403 and
callers without a role on the workspace 404; every delete is in the audit log with the actor and the
counts, never the key values; `featureplane delete-keys` with a remote registry goes through it."""

from __future__ import annotations

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, point_at_server, start_account_server
from helpers import AMOUNTS_SERVICE, events_repo

pytestmark = pytest.mark.integration
PASSWORD = "a-long-enough-password"
PATH = "/api/v1/workspaces/prod/feature-views/amounts/delete-keys"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("delete_keys")
    shared = tmp_path / "stores"
    stores = {
        "offline_store": {"type": "delta", "path": str(shared / "offline")},
        "online_store": {"type": "sqlite", "path": str(shared / "online.db")},
    }
    server = start_account_server(tmp_path / "server", stores)
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    point_at_server(repo, server.url)
    for section, values in stores.items():
        repo.set_config(section, **values)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "FEATUREPLANE_API_KEY": "", "FEATUREPLANE_USER": ""}
    repo.cli("login", "--user", ADMIN, "--password-stdin", env=env, input=ADMIN_PASSWORD + "\n")
    repo.cli("workspace", "create", "prod", "--live", env=env)
    repo.cli("apply", "--yes", "-w", "prod", env=env)
    repo.cli("materialize", "amounts", "-w", "prod", "--start", "2024-01-01", "--end", "2024-01-03", env=env)
    admin = server.login(ADMIN, ADMIN_PASSWORD)
    tokens = {"admin": admin}
    for user, role in (("editor", "editor"), ("viewer", "viewer"), ("outsider", None)):
        status, answer, _ = server.call("POST", "/api/v1/users", {"name": user, "password": PASSWORD}, admin)
        assert status == 201, answer
        if role:
            grant = {"principal": f"user:{user}", "workspace": "prod", "role": role}
            assert server.call("POST", "/api/v1/roles", grant, admin)[0] == 201
        tokens[user] = server.login(user, PASSWORD)
    yield server, repo, env, tokens
    server.stop()


def online_amount(server, user: str):
    """Read through the server's own configuration (its registry, the shared stores)."""
    from featureplane.config import load_config
    from featureplane.runtime import Runtime

    with Runtime(load_config(server.config_path)) as runtime:
        state = runtime.registry.load("prod")
        (value,) = runtime.online_store.read([(state.table_id("amounts"), (user,))])
        return value


def test_roles_statuses_and_the_audit_log(world):
    server, _, _, tokens = world
    body = {"keys": [{"user_id": "u1"}]}
    status, events, _ = server.call(
        "GET", "/api/v1/audit?action=feature_view.delete_keys", None, tokens["admin"]
    )
    assert status == 200 and events == []
    assert server.call("POST", PATH, body, tokens["viewer"])[0] == 403
    assert server.call("POST", PATH, body, tokens["outsider"])[0] == 404
    assert server.call("POST", PATH, body)[0] == 401
    assert online_amount(server, "u1") is not None  # nothing was deleted by the refused calls

    status, answer, _ = server.call("POST", PATH, body, tokens["editor"])
    assert status == 200, answer
    assert answer["keys"] == 1 and answer["offline"]["rows"] == 2 and answer["online"]["rows"] == 1
    assert online_amount(server, "u1") is None
    again = server.call("POST", PATH, body, tokens["admin"])
    assert again[0] == 200 and again[1]["offline"]["rows"] == 0  # idempotent

    status, events, _ = server.call(
        "GET", "/api/v1/audit?action=feature_view.delete_keys", None, tokens["admin"]
    )
    assert status == 200
    assert [(e["actor"], e["workspace"], e["target"]) for e in events] == [
        ("user:root", "prod", "amounts"),
        ("user:editor", "prod", "amounts"),
    ]
    assert events[1]["detail"] == "done; 1 key(s); offline: 2 row(s), 0 failed; online: 1 row(s), 0 failed"
    assert all("u1" not in e["detail"] for e in events)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        (PATH.replace("amounts", "nope"), {"keys": [{"user_id": "u1"}]}, 404, "no feature view 'nope'"),
        (
            PATH,
            {"keys": [{"user_id": "u2"}, {"user_id": 7}]},
            400,
            "join key 'user_id' must be string, got 7",
        ),
        (PATH, {"keys": [{"customer": "u1"}]}, 400, "expected fields user_id, got customer"),
        (PATH, {"keys": []}, 422, "keys"),
        (PATH, {"keys": [{"user_id": "u1"}], "extra": 1}, 422, "extra"),
        (PATH, {"keys": [{"user_id": "u1"}], "online": False, "offline": False}, 400, "no store chosen"),
    ],
)
def test_bad_requests_get_a_clear_error_and_delete_nothing(world, path, body, status, fragment):
    server, _, _, tokens = world
    got, answer, _ = server.call("POST", path, body, tokens["editor"])
    assert got == status and fragment in answer["detail"], answer
    assert online_amount(server, "u2") is not None


def test_the_cli_deletes_through_the_server(world, tmp_path):
    """Runs after the tests above (one server for the module): u1 is gone already."""
    server, repo, env, tokens = world
    keys = tmp_path / "keys.csv"
    keys.write_text("user_id\nu2\n")
    done = repo.cli("delete-keys", "--view", "amounts", "--keys-file", str(keys), "-w", "prod", env=env)
    assert "prod/amounts: offline store: 1 key(s), 1 row(s) removed." in done.stdout
    assert online_amount(server, "u2") is None
    _, events, _ = server.call("GET", "/api/v1/audit?action=feature_view.delete_keys", None, tokens["admin"])
    assert (events[0]["actor"], events[0]["detail"]) == (
        "user:root",
        "done; 1 key(s); offline: 1 row(s), 0 failed; online: 1 row(s), 0 failed",
    )
    keys.write_text("user_id\n")
    refused = repo.cli(
        "delete-keys", "--view", "amounts", "--keys-file", str(keys), "-w", "prod", env=env, check=False
    )
    assert refused.returncode == 1 and "the list of keys is empty" in refused.stderr

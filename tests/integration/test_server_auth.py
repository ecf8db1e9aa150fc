"""Access control of the account server over real HTTP: an auth matrix with exact status codes, sign-in
limits, secrets that never come back, and injection attempts in every name field."""

from __future__ import annotations

import urllib.parse

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, start_account_server

pytestmark = pytest.mark.integration

PASSWORD = "a-long-enough-password"
ROUTES = [
    ("read", "GET", "/api/v1/workspaces/prod", None),
    ("state", "GET", "/api/v1/workspaces/prod/state", None),
    ("objects", "GET", "/api/v1/workspaces/prod/objects", None),
    ("history", "GET", "/api/v1/workspaces/prod/history", None),
    ("plan", "POST", "/api/v1/workspaces/prod/plan", {"definitions": {}}),
    ("apply", "POST", "/api/v1/workspaces/prod/apply", {"definitions": {}, "base_version": 0}),
    ("members", "GET", "/api/v1/roles?workspace=prod", None),
    ("grant", "POST", "/api/v1/roles", {"principal": "user:newcomer", "workspace": "prod", "role": "viewer"}),
    ("keys", "GET", "/api/v1/api-keys?workspace=prod", None),
    ("new key", "POST", "/api/v1/api-keys", {"workspace": "prod"}),
    ("audit", "GET", "/api/v1/audit?workspace=prod", None),
    ("delete", "DELETE", "/api/v1/workspaces/prod", None),
    ("users", "GET", "/api/v1/users", None),
]
#                  read state objects history plan apply members grant keys newkey audit delete users
EXPECTED = {
    "admin": (200, 200, 200, 200, 200, 200, 200, 201, 200, 201, 200, None, 200),
    "owner": (200, 200, 200, 200, 200, 200, 200, 201, 200, 201, 200, None, 403),
    "editor": (200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403),
    "viewer": (200, 200, 200, 200, 200, 403, 200, 403, 403, 403, 403, 403, 403),
    "consumer key": (200, 200, 200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "editor key": (200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403),
    "wrong workspace": (404,) * 12 + (403,),
    "no role": (404,) * 12 + (403,),
    "no token": (401,) * 13,
    "not bearer": (401,) * 13,
    "expired session": (401,) * 13,
    "forged session": (401,) * 13,
    "forged key": (401,) * 13,
    "revoked key": (401,) * 13,
    "ended session": (401,) * 13,
    "disabled user": (401,) * 13,
    "disabled user's key": (401,) * 13,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A server with workspaces prod and dev, and a principal for every row of the matrix."""
    server = start_account_server(tmp_path_factory.mktemp("auth") / "server")
    admin = server.login(ADMIN, ADMIN_PASSWORD)

    def ok(method, path, body=None, token=admin, expect=(200, 201, 204)):
        status, answer, _ = server.call(method, path, body, token)
        assert status in expect, (method, path, status, answer)
        return answer

    for name in ("prod", "dev"):
        ok("POST", "/api/v1/workspaces", {"name": name, "live": name == "prod"})
    roles = {"owner": "owner", "editor": "editor", "viewer": "viewer", "disabled": "editor"}
    for user in ("owner", "editor", "viewer", "outsider", "devonly", "disabled", "leaver"):
        ok("POST", "/api/v1/users", {"name": user, "password": PASSWORD})
    for user, role in roles.items():
        ok("POST", "/api/v1/roles", {"principal": f"user:{user}", "workspace": "prod", "role": role})
    ok("POST", "/api/v1/roles", {"principal": "user:devonly", "workspace": "dev", "role": "owner"})
    tokens = {"admin": admin}
    for user in ("owner", "editor", "viewer", "outsider", "devonly", "disabled", "leaver"):
        tokens[user] = server.login(user, PASSWORD)
    consumer = ok("POST", "/api/v1/api-keys", {"workspace": "prod", "role": "consumer"})["key"]
    ok("POST", "/api/v1/service-accounts", {"name": "ci"})
    ok("POST", "/api/v1/roles", {"principal": "service_account:ci", "workspace": "prod", "role": "editor"})
    editor_key = ok("POST", "/api/v1/service-accounts/ci/api-keys", {})["key"]
    revoked = ok("POST", "/api/v1/api-keys", {"workspace": "prod", "role": "consumer"})
    ok("DELETE", f"/api/v1/api-keys/{revoked['info']['id']}")
    store = server.access_store()
    try:
        expired = store.create_session("viewer", 0).token
        disabled_key = store.add_api_key("user:disabled").secret
    finally:
        store.close()
    ok("POST", "/api/v1/users/disabled/disable")
    ok("POST", "/api/v1/logout", token=tokens["leaver"])
    real = tokens["viewer"]
    callers = {
        "admin": admin,
        "owner": tokens["owner"],
        "editor": tokens["editor"],
        "viewer": real,
        "consumer key": consumer,
        "editor key": editor_key,
        "wrong workspace": tokens["devonly"],
        "no role": tokens["outsider"],
        "no token": None,
        "not bearer": "",
        "expired session": expired,
        "forged session": real[:-6] + ("AAAAAA" if not real.endswith("AAAAAA") else "BBBBBB"),
        "forged key": consumer.rsplit("_", 1)[0] + "_" + "x" * 43,
        "revoked key": revoked["key"],
        "ended session": tokens["leaver"],
        "disabled user": tokens["disabled"],
        "disabled user's key": disabled_key,
    }
    yield server, callers
    server.stop()


@pytest.mark.parametrize("who", list(EXPECTED))
def test_the_auth_matrix(world, who):
    server, callers = world
    token = callers[who]
    got = []
    for (_, method, path, body), expected in zip(ROUTES, EXPECTED[who], strict=True):
        if expected is None:
            got.append(None)
            continue
        if who == "not bearer":
            status, answer, headers = server.call(
                method, path, body, headers={"Authorization": "Basic cm9vdDp4"}
            )
        else:
            status, answer, headers = server.call(method, path, body, token)
        got.append(status)
        if status >= 400:
            assert set(answer) == {"detail", "error"}, answer
        if status == 401:
            assert headers.get("www-authenticate") == "Bearer"
    assert dict(zip([r[0] for r in ROUTES], got, strict=True)) == dict(
        zip([r[0] for r in ROUTES], EXPECTED[who], strict=True)
    )


def test_a_workspace_without_a_role_answers_like_one_that_does_not_exist(world):
    server, callers = world
    hidden = server.call("GET", "/api/v1/workspaces/prod", token=callers["no role"])
    missing = server.call("GET", "/api/v1/workspaces/nowhere", token=callers["no role"])
    assert hidden[0] == missing[0] == 404
    assert hidden[1]["detail"].replace("prod", "X") == missing[1]["detail"].replace("nowhere", "X")
    _, listed, _ = server.call("GET", "/api/v1/workspaces", token=callers["wrong workspace"])
    assert [w["name"] for w in listed] == ["dev"]


def test_owners_delete_their_workspace_and_its_roles_go_with_it(world):
    server, callers = world
    owner = callers["wrong workspace"]  # the owner of dev
    assert server.call("DELETE", "/api/v1/workspaces/dev", token=callers["viewer"])[0] == 404
    assert server.call("DELETE", "/api/v1/workspaces/dev", token=owner)[0] == 204
    assert server.call("GET", "/api/v1/workspaces/dev", token=owner)[0] == 404
    assert server.call("POST", "/api/v1/workspaces", {"name": "dev"}, callers["admin"])[0] == 201
    assert server.call("GET", "/api/v1/workspaces/dev", token=owner)[0] == 404  # no role survived


def test_sign_ins_are_limited_per_user_and_per_address(tmp_path):
    limits = {"login_attempts_per_user": 3, "login_attempts_per_address": 5, "login_window_seconds": 600}
    server = start_account_server(tmp_path / "server", {"server": limits})
    try:
        admin = server.login(ADMIN, ADMIN_PASSWORD)
        for name in ("alice", "bob", "carol"):
            server.call("POST", "/api/v1/users", {"name": name, "password": PASSWORD}, admin)

        def attempt(user, password="wrong password"):
            return server.call("POST", "/api/v1/login", {"user": user, "password": password})

        assert [attempt("alice")[0] for _ in range(3)] == [401, 401, 401]
        status, answer, headers = attempt("alice", PASSWORD)  # the right password, too late
        assert status == 429 and answer["error"] == "rate_limited" and int(headers["retry-after"]) > 0
        assert attempt("nobody")[0] == 401  # unknown users cost the same and count the same
        assert attempt("bob")[0] == 401
        assert attempt("carol", PASSWORD)[0] == 429  # this address has failed 5 times
        _, events, _ = server.call("GET", "/api/v1/audit?action=login.failed", token=admin)
        assert len(events) == 5 and {e["target"] for e in events} == {"user:alice", "user:nobody", "user:bob"}
        _, limited, _ = server.call("GET", "/api/v1/audit?action=login.limited", token=admin)
        assert len(limited) == 2
    finally:
        server.stop()


def test_secrets_are_shown_once_and_never_again(tmp_path):
    server = start_account_server(tmp_path / "server")
    try:
        admin = server.login(ADMIN, ADMIN_PASSWORD)
        server.call("POST", "/api/v1/workspaces", {"name": "prod", "live": True}, admin)
        server.call("POST", "/api/v1/users", {"name": "alice", "password": "alice-secret-pw-9"}, admin)
        alice = server.login("alice", "alice-secret-pw-9")
        server.call("POST", "/api/v1/service-accounts", {"name": "ci"}, admin)
        _, created, _ = server.call("POST", "/api/v1/api-keys", {"workspace": "prod"}, admin)
        _, account_key, _ = server.call("POST", "/api/v1/service-accounts/ci/api-keys", {}, admin)
        secrets = [ADMIN_PASSWORD, "alice-secret-pw-9", admin, alice, created["key"], account_key["key"]]
        server.call("PUT", "/api/v1/me/password", {"current_password": "alice-secret-pw-9",
                    "new_password": "alice-new-pw-10"}, alice)  # fmt: skip
        secrets.append("alice-new-pw-10")
        server.call("GET", "/api/v1/workspaces", token=created["key"])
        server.call("POST", "/api/v1/login", {"user": "alice", "password": "a wrong guess pw"})
        answers = [
            server.call("GET", path, token=admin)[1]
            for path in (
                "/api/v1/api-keys",
                "/api/v1/audit",
                "/api/v1/users",
                "/api/v1/me",
                "/api/v1/roles",
                "/api/v1/service-accounts",
            )
        ]
        text = repr(answers) + server.log
        store_bytes = b"".join(
            p.read_bytes() for p in (tmp_path / "server" / ".featureplane").glob("registry.db*")
        )
        for secret in secrets:
            assert secret not in text
            assert secret.encode() not in store_bytes
        assert "$argon2" not in text and "token_hash" not in text and "key_hash" not in text
        assert "a wrong guess pw" not in text
        assert server.call("GET", "/api/v1/me", token=alice)[0] == 401  # a password change ends sessions
    finally:
        server.stop()


INJECTIONS = [
    "x'; DROP TABLE workspaces; --",
    "prod' OR '1'='1",
    'a"; DELETE FROM principals; --',
    "1; SELECT * FROM api_keys",
    "prod;--",
    "prod\n",
    "prod%00",
    "(SELECT 1)",
]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_injection_in_every_name_field_is_refused_by_validation(world, attack):
    server, callers = world
    admin = callers["admin"]
    quoted = urllib.parse.quote(attack, safe="")
    bodies = [
        ("POST", "/api/v1/workspaces", {"name": attack}),
        ("POST", "/api/v1/users", {"name": attack, "password": PASSWORD}),
        ("POST", "/api/v1/login", {"user": attack, "password": PASSWORD}),
        ("POST", "/api/v1/service-accounts", {"name": attack}),
        ("POST", "/api/v1/roles", {"principal": f"user:{attack}", "workspace": "prod", "role": "viewer"}),
        ("POST", "/api/v1/roles", {"principal": "user:viewer", "workspace": attack, "role": "viewer"}),
        ("POST", "/api/v1/roles", {"principal": "user:viewer", "workspace": "prod", "role": attack}),
        ("POST", "/api/v1/api-keys", {"workspace": attack}),
        ("GET", f"/api/v1/workspaces/{quoted}", None),
        ("GET", f"/api/v1/workspaces/{quoted}/history", None),
        ("POST", f"/api/v1/workspaces/{quoted}/plan", {"definitions": {}}),
        ("GET", f"/api/v1/workspaces/prod/objects/feature_view/{quoted}", None),
        ("GET", f"/api/v1/workspaces/prod/objects/{quoted}/x", None),
        ("GET", f"/api/v1/users/{quoted}", None),
        ("POST", f"/api/v1/users/{quoted}/disable", None),
        ("POST", f"/api/v1/service-accounts/{quoted}/api-keys", {}),
        ("DELETE", f"/api/v1/api-keys/{quoted}", None),
        ("GET", f"/api/v1/roles?workspace={quoted}", None),
        ("GET", f"/api/v1/api-keys?workspace={quoted}", None),
        ("GET", f"/api/v1/audit?workspace={quoted}", None),
        ("GET", f"/api/v1/audit?actor={quoted}", None),
        ("DELETE", f"/api/v1/roles?principal=user:{quoted}&workspace=prod&role=viewer", None),
    ]
    for method, path, body in bodies:
        status, answer, _ = server.call(method, path, body, admin)
        assert status == 422 and answer["error"] == "invalid", (method, path, status, answer)
    entity = {"name": "user", "join_keys": [{"name": attack, "dtype": "string"}]}
    for definitions in (
        {"entity": [{"name": attack, "join_keys": []}]},
        {"entity": [entity]},
    ):
        status, answer, _ = server.call(
            "POST", "/api/v1/workspaces/prod/plan", {"definitions": definitions}, admin
        )
        assert status == 400 and "not a plain name" in answer["detail"], answer
    _, workspaces, _ = server.call("GET", "/api/v1/workspaces", token=admin)
    assert "prod" in [w["name"] for w in workspaces]
    _, users, _ = server.call("GET", "/api/v1/users", token=admin)
    assert {"root", "owner", "viewer"} <= {u["name"] for u in users}

"""Parts of the account server and its client that need no HTTP: checking the definitions a client
sends, the sign-in limiter, the token file and the roles a caller's bindings grant."""

from __future__ import annotations

import os
import stat
import time

import pytest

from featureplane.access.base import RoleBinding
from featureplane.definitions.specs import to_dict
from featureplane.registry.client import ServerError, forget_token, read_tokens, save_token
from featureplane.registry.remote import definitions_payload
from featureplane.server.auth import Caller
from featureplane.server.definitions import DefinitionsInvalid, parse_definitions
from featureplane.server.ratelimit import LoginLimiter


@pytest.fixture(scope="module")
def example_definitions():
    from helpers import AMOUNTS_SERVICE, events_repo

    from featureplane.repo.planning import load_definitions

    def build(tmp_path):
        repo = events_repo(tmp_path, AMOUNTS_SERVICE)
        return load_definitions(repo.runtime(), check_with_engine=False)

    return build


def test_a_repositorys_definitions_go_over_the_wire_and_back(tmp_path, example_definitions):
    definitions = example_definitions(tmp_path)
    parsed = parse_definitions(definitions_payload(definitions))
    assert [to_dict(s) for s in parsed.all()] == [to_dict(s) for s in definitions.all()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["feature_view"][0].pop("entities"), "entities is missing"),
        (lambda d: d["feature_view"][0].update(online="yes"), "online does not have the type"),
        (lambda d: d["feature_view"][0].update(features=[{"name": 1}]), "features does not have the type"),
        (lambda d: d["feature_view"][0].update(name="a b"), "not a plain name"),
        (lambda d: d["feature_view"][0].update(entities=["ghost"]), "no entity 'ghost'"),
        (lambda d: d["feature_service"][0]["features"][0].update(view="ghost"), "no feature view 'ghost'"),
        (lambda d: d["feature_view"][0].update(feature_start_time="soon"), "feature_start_time is not"),
        (lambda d: d["entity"].append(dict(d["entity"][0])), "duplicate name"),
        (lambda d: d["entity"].append("text"), "expected an object"),
        (lambda d: d.update(widget=[]), "unknown kind 'widget'"),
    ],
)
def test_definitions_that_do_not_hold_together_are_refused(tmp_path, example_definitions, change, message):
    payload = definitions_payload(example_definitions(tmp_path))
    change(payload)
    with pytest.raises(DefinitionsInvalid, match=message):
        parse_definitions(payload)


def test_the_limiter_counts_failures_per_user_and_per_address():
    limiter = LoginLimiter(per_user=2, per_address=3, window_seconds=0.2)
    assert limiter.retry_after("alice", "10.0.0.1") is None
    limiter.failed("alice", "10.0.0.1")
    limiter.failed("Alice", "10.0.0.2")  # user names count case-insensitively
    wait = limiter.retry_after("alice", "10.0.0.9")
    assert wait is not None and 0 < wait <= 0.2
    assert limiter.retry_after("bob", "10.0.0.1") is None
    limiter.failed("bob", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    assert limiter.retry_after("dave", "10.0.0.1") is not None
    time.sleep(0.25)
    assert limiter.retry_after("alice", "10.0.0.1") is None
    assert limiter.retry_after("dave", "10.0.0.1") is None


def test_the_limiter_stays_bounded():
    limiter = LoginLimiter(per_user=5, per_address=10_000, window_seconds=60, max_tracked=50)
    for i in range(500):
        limiter.failed(f"user{i}", "10.0.0.1")
    assert len(limiter._failures) <= 51


def test_the_token_file_is_private_and_keyed_by_url(tmp_path):
    path = tmp_path / "home" / ".featureplane" / "tokens.json"
    save_token(path, "http://127.0.0.1:8800/", "fps_x", "alice", "2030-01-01T00:00:00Z")
    save_token(path, "https://features.example.com", "fps_y", "bob", "2030-01-01T00:00:00Z")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    tokens = read_tokens(path)
    assert tokens["http://127.0.0.1:8800"]["token"] == "fps_x" and set(tokens) == {
        "http://127.0.0.1:8800",
        "https://features.example.com",
    }
    assert forget_token(path, "http://127.0.0.1:8800")["user"] == "alice"
    assert set(read_tokens(path)) == {"https://features.example.com"}
    assert forget_token(path, "http://127.0.0.1:8800") is None
    with pytest.raises(ServerError, match="not a server URL"):
        save_token(path, "ftp://x", "t", "u", "e")
    path.write_text("{not json")
    with pytest.raises(ServerError, match="cannot read the token file"):
        read_tokens(path)


def test_a_callers_roles_grant_what_they_say():
    def caller(kind: str, *bindings: tuple[str, str], admin: bool = False) -> Caller:
        principal = f"{kind}:x"
        return Caller(
            principal, kind, "x", admin, tuple(RoleBinding(principal, w, r) for w, r in bindings), "session"
        )

    viewer = caller("user", ("prod", "viewer"))
    assert viewer.can("view", "prod") and not viewer.can("apply", "prod") and not viewer.sees("dev")
    everywhere = caller("user", ("*", "owner"))
    assert everywhere.can("manage_access", "any") and everywhere.manages_some_workspace()
    consumer_key = caller("service_account", ("prod", "consumer"))
    assert consumer_key.can("read_features", "prod") and not consumer_key.can("view", "prod")
    assert consumer_key.sees("prod") and not consumer_key.manages_some_workspace()
    ci = caller("service_account", ("prod", "editor"))
    assert ci.can("apply", "prod") and ci.can("view", "prod")
    admin = caller("user", admin=True)
    assert admin.can("delete_workspace", "anything") and admin.sees("anything")

"""The access store's accounts: users and passwords, service accounts, sessions and the audit log.

The ``store`` fixture is parametrized by backend, so every backend of ``AccessStore`` runs the same
cases.
"""

from __future__ import annotations

import time

import pytest
from store_backends import BACKENDS, backend_config, stored

from featureplane.access import AccessError, open_access_store
from featureplane.access.base import hash_key


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    made = open_access_store(backend_config(request.param, tmp_path, request))
    yield made
    made.close()


def test_users_are_created_listed_and_disabled(store):
    alice = store.create_user("alice", "correct horse battery", admin=True, created_by="bootstrap")
    assert (alice.name, alice.admin, alice.has_password, alice.active) == ("alice", True, True, True)
    assert alice.principal_id == "user:alice" and alice.created_by == "bootstrap"
    store.create_user("bob")
    assert [(u.name, u.admin, u.has_password) for u in store.list_users()] == [
        ("alice", True, True),
        ("bob", False, False),
    ]
    assert store.user("bob").name == "bob"
    with pytest.raises(AccessError, match="already exists"):
        store.create_user("alice", "another password")
    with pytest.raises(AccessError, match="no user 'carol'"):
        store.user("carol")

    disabled = store.disable_user("bob", disabled_by="user:alice")
    assert not disabled.active and disabled.disabled_at
    assert not store.user("bob").active
    with pytest.raises(AccessError, match="no user"):
        store.disable_user("carol")


def test_a_user_who_only_held_roles_gets_an_account(store):
    store.assign_role("user:dana", "prod", "viewer")
    assert [u.name for u in store.list_users()] == ["dana"]
    assert not store.user("dana").has_password
    store.create_user("dana", "dana's long password")
    assert store.user("dana").has_password
    assert store.identity("user:dana").can("view", "prod")


@pytest.mark.parametrize(
    "name",
    [
        "x'; DROP TABLE principals; --",
        "a b",
        "",
        "-leading-dash",
        "a" * 129,
        "user:alice",
        'q"uote',
        "é",
        "alice\n",
    ],
)
def test_names_that_are_not_plain_are_refused(store, name):
    with pytest.raises(AccessError, match="is not valid"):
        store.create_user(name, "long enough password")
    with pytest.raises(AccessError, match="is not valid"):
        store.create_service_account(name)
    assert store.list_users() == [] and store.list_service_accounts() == []


def test_passwords_are_stored_as_argon2id_hashes_and_verified(store):
    store.create_user("alice", "correct horse battery")
    (row,) = stored(store, "SELECT password_hash FROM user_accounts")
    assert row[0].startswith("$argon2id$") and "correct horse battery" not in row[0]
    assert store.verify_password("alice", "correct horse battery").name == "alice"
    assert store.verify_password("alice", "wrong password") is None
    assert store.verify_password("nobody", "correct horse battery") is None
    assert store.verify_password("alice", "x" * 5000) is None
    with pytest.raises(AccessError, match="at least 8 characters"):
        store.create_user("bob", "short")
    with pytest.raises(AccessError, match="at least 8 characters"):
        store.set_password("alice", "short")
    store.set_password("alice", "a new long password")
    assert store.verify_password("alice", "correct horse battery") is None
    assert store.verify_password("alice", "a new long password") is not None
    store.create_user("nopass")
    assert store.verify_password("nopass", "") is None
    store.disable_user("alice")
    assert store.verify_password("alice", "a new long password") is None


def test_weaker_hashes_are_upgraded_at_the_next_login(store):
    from argon2 import PasswordHasher

    store.create_user("alice", "correct horse battery")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("correct horse battery")
    stored(store, "UPDATE user_accounts SET password_hash = ?", (weak,))
    assert store.verify_password("alice", "correct horse battery") is not None
    ((upgraded,),) = stored(store, "SELECT password_hash FROM user_accounts")
    assert upgraded != weak and store.verify_password("alice", "correct horse battery") is not None


def test_service_accounts_get_roles_and_keys(store):
    ci = store.create_service_account("ci", description="deploys on merge", created_by="user:alice")
    assert ci.id == "service_account:ci" and ci.description == "deploys on merge"
    with pytest.raises(AccessError, match="already exists"):
        store.create_service_account("ci")
    assert store.service_account("ci") == store.service_account("service_account:ci") == ci
    with pytest.raises(AccessError, match="no service account"):
        store.service_account("nope")

    store.assign_role(ci.id, "prod", "editor")
    created = store.add_api_key(ci.id, description="github actions", created_by="user:alice")
    assert created.info.principal_id == ci.id and created.info.bindings[0].role == "editor"
    identity = store.authenticate(created.secret)
    assert identity is not None and identity.principal_id == ci.id and identity.can("apply", "prod")
    second = store.add_api_key(ci.id)
    assert {k.id for k in store.list_api_keys("prod")} == {created.info.id, second.info.id}
    legacy = store.create_api_key("prod", "consumer")
    assert {a.id for a in store.list_service_accounts()} == {ci.id, legacy.info.principal_id}
    with pytest.raises(AccessError, match="no principal"):
        store.add_api_key("service_account:ghost")
    # Only hashes are stored.
    hashes = [r[0] for r in stored(store, "SELECT key_hash FROM api_keys")]
    assert hash_key(created.secret) in hashes and created.secret not in hashes


def test_disabling_a_user_stops_their_keys_and_sessions(store):
    store.create_user("bob", "bob's long password")
    store.assign_role("user:bob", "prod", "editor")
    key = store.add_api_key("user:bob")
    session = store.create_session("bob", 3600)
    assert store.authenticate(key.secret) is not None and store.session(session.token) is not None
    store.disable_user("bob")
    assert store.authenticate(key.secret) is None and store.session(session.token) is None
    with pytest.raises(AccessError, match="no active user"):
        store.create_session("bob", 3600)
    with pytest.raises(AccessError, match="disabled"):
        store.add_api_key("user:bob")


def test_sessions_expire_and_are_revoked(store):
    store.create_user("alice", "correct horse battery")
    created = store.create_session("alice", 3600, source_ip="10.0.0.7")
    token = created.token
    assert token.startswith("fps_") and created.info.user == "alice"
    found = store.session(token)
    assert found is not None and found.id == created.info.id and found.source_ip == "10.0.0.7"
    ((digest,),) = stored(store, "SELECT token_hash FROM sessions")
    assert digest == hash_key(token) and token not in digest

    # A forged token with a real id, a malformed one and an unknown one all find nothing.
    assert store.session(token[:-4] + "AAAA") is None
    assert store.session("fps_nothex_" + "x" * 43) is None
    assert store.session("Bearer " + token) is None

    expired = store.create_session("alice", 0)
    time.sleep(0.002)
    assert store.session(expired.token) is None

    store.revoke_session(token)
    assert store.session(token) is None
    store.revoke_session(token)  # ending an ended session is harmless
    store.revoke_session("fps_0000000000000000_unknown")

    a, b = store.create_session("alice", 3600), store.create_session("alice", 3600)
    assert store.revoke_user_sessions("alice") == 2
    assert store.session(a.token) is None and store.session(b.token) is None
    assert store.revoke_user_sessions("alice") == 0
    with pytest.raises(AccessError, match="no active user"):
        store.create_session("nobody", 3600)


def test_the_audit_log_records_and_filters(store):
    first = store.record_audit("user:alice", "apply", "prod", "version 1", "1 to create", "10.0.0.1")
    store.record_audit("user:alice", "role.assign", "prod", "user:bob", "editor", "10.0.0.1")
    store.record_audit("user:bob", "api_key.create", "dev", "key 0123456789ab", "", "10.0.0.2")
    store.record_audit("user:bob", "login", source_ip="10.0.0.2")
    events = store.audit_events()
    assert [e.action for e in events] == ["login", "api_key.create", "role.assign", "apply"]
    assert events[-1] == first and first.source_ip == "10.0.0.1" and first.at.endswith("Z")
    assert [e.action for e in store.audit_events(workspace="prod")] == ["role.assign", "apply"]
    assert [e.action for e in store.audit_events(actor="user:bob", action="login")] == ["login"]
    assert [e.action for e in store.audit_events(limit=1)] == ["login"]
    assert [e.action for e in store.audit_events(before_id=events[1].id)] == ["role.assign", "apply"]
    assert len(store.audit_events(since=first.at)) == 4
    assert store.audit_events(since="2999-01-01T00:00:00Z") == []
    with pytest.raises(AccessError, match="not an ISO-8601 time"):
        store.audit_events(since="yesterday")
    # Filters are values, never SQL.
    assert store.audit_events(workspace="prod' OR '1'='1") == []
    assert len(store.audit_events()) == 4

"""One contract for every access store backend (SQLite and PostgreSQL): API keys shown once and stored
as hashes, revocation, forged and malformed keys refused, role bindings, and hostile names kept out."""

from __future__ import annotations

import threading

import pytest
from store_backends import BACKENDS, INJECTION, backend_config

from featureplane.access import AccessError, open_access_store
from featureplane.access.base import KEY_PREFIX, RoleBinding, hash_key
from featureplane.access.roles import Permission
from featureplane.registry import open_registry


@pytest.fixture(params=BACKENDS)
def config(request, tmp_path):
    return backend_config(request.param, tmp_path, request)


@pytest.fixture
def store(config):
    store = open_access_store(config)
    yield store
    store.close()


def test_a_key_is_shown_once_and_authenticates_with_its_role(store):
    created = store.create_api_key("prod", "consumer", description="model A", created_by="alice")
    assert created.secret.startswith(f"{KEY_PREFIX}_{created.info.id}_")
    info = created.info
    assert (info.principal_id, info.description, info.created_by, info.active) == (
        f"service_account:{info.id}",
        "model A",
        "alice",
        True,
    )
    assert info.bindings == (RoleBinding(info.principal_id, "prod", "consumer"),)
    identity = store.authenticate(created.secret)
    assert identity is not None and identity.key_id == info.id and identity.principal_id == info.principal_id
    assert identity.can(Permission.READ_FEATURES, "prod")
    assert not identity.can(Permission.INGEST, "prod") and not identity.can(
        Permission.READ_FEATURES, "staging"
    )
    (listed,) = store.list_api_keys()
    assert listed == info
    assert created.secret not in repr(listed) and listed.display == f"fpk_{info.id}_..."


def test_keys_are_listed_oldest_first_and_by_workspace(store):
    a = store.create_api_key("prod", "consumer").info
    b = store.create_api_key("staging", "ingest").info
    c = store.create_api_key("prod", "admin").info
    listed = store.list_api_keys()
    assert {k.id for k in listed} == {a.id, b.id, c.id}
    assert [k.created_at for k in listed] == sorted(k.created_at for k in listed)
    assert {k.id for k in store.list_api_keys("prod")} == {a.id, c.id}
    assert store.list_api_keys("nope") == []


def test_active_keys_export_hashes_and_roles_only(store):
    kept = store.create_api_key("prod", "consumer")
    revoked = store.create_api_key("prod", "admin")
    store.revoke_api_key(revoked.info.id)
    (entry,) = store.active_keys()
    assert entry == {
        "key_id": kept.info.id,
        "principal_id": kept.info.principal_id,
        "key_hash": hash_key(kept.secret),
        "bindings": [["prod", "consumer"]],
    }


@pytest.mark.parametrize("form", ["bare", "display", "full"])
def test_revoked_keys_stop_authenticating(store, form):
    created = store.create_api_key("prod", "consumer")
    other = store.create_api_key("prod", "consumer")
    given = {"bare": created.info.id, "display": created.info.display, "full": created.secret}[form]
    revoked = store.revoke_api_key(given, revoked_by="bob")
    assert not revoked.active and revoked.revoked_at.endswith("Z")
    assert store.authenticate(created.secret) is None
    assert store.authenticate(other.secret) is not None
    again = store.revoke_api_key(created.info.id, revoked_by="carol")
    assert again.revoked_at == revoked.revoked_at  # the first revocation stands
    assert {k.id: k.active for k in store.list_api_keys()} == {created.info.id: False, other.info.id: True}


def test_unknown_keys_cannot_be_revoked(store):
    with pytest.raises(AccessError, match="no API key with id '000000000000'"):
        store.revoke_api_key("000000000000")
    with pytest.raises(AccessError, match="no API key"):
        store.revoke_api_key(INJECTION)


def test_forged_malformed_and_hostile_keys_are_refused(store):
    created = store.create_api_key("prod", "admin")
    other = store.create_api_key("prod", "consumer")
    key_id, secret = created.info.id, created.secret.split("_", 2)[2]
    forged = [
        f"fpk_{key_id}_{'A' * len(secret)}",  # the right id, a made-up secret
        f"fpk_{key_id}_{other.secret.split('_', 2)[2]}",  # the right id, another key's secret
        f"fpk_{other.info.id}_{secret}",  # another id, this secret
        created.secret + "x",
        created.secret.upper(),
        f"fpk_{key_id}",
        "",
        "fpk_",
        INJECTION,
        f"fpk_{key_id}_{INJECTION}",
        f"fpk_' OR '1'='1_{secret}",
        hash_key(created.secret),  # the stored hash is not a key
    ]
    for key in forged:
        assert store.authenticate(key) is None, key
    assert store.authenticate(created.secret) is not None


def test_roles_and_workspaces_are_checked_when_keys_are_created(store):
    with pytest.raises(AccessError, match="unknown role 'owner'; expected one of consumer, ingest, admin"):
        store.create_api_key("prod", "owner")
    for workspace in (INJECTION, "prod\n", "", "a b"):
        with pytest.raises(AccessError, match="is not valid"):
            store.create_api_key(workspace, "consumer")
    assert store.list_api_keys() == []


def test_role_bindings_for_users_and_service_accounts(store):
    key = store.create_api_key("prod", "consumer")
    assert store.assign_role("user:alice", "prod", "owner", assigned_by="root") == RoleBinding(
        "user:alice", "prod", "owner"
    )
    store.assign_role("user:alice", "prod", "owner")  # twice is once
    store.assign_role("user:bob", "*", "viewer")
    store.assign_role(key.info.principal_id, "staging", "consumer")
    alice = store.identity("user:alice")
    assert alice.bindings == (RoleBinding("user:alice", "prod", "owner"),)
    assert alice.can(Permission.MANAGE_ACCESS, "prod") and not alice.can(Permission.VIEW, "staging")
    assert store.identity("user:bob").can(Permission.VIEW, "anything")
    assert store.identity("user:nobody").bindings == ()
    assert store.bindings("prod") == [
        RoleBinding("user:bob", "*", "viewer"),
        RoleBinding(key.info.principal_id, "prod", "consumer"),
        RoleBinding("user:alice", "prod", "owner"),
    ]
    assert len(store.bindings()) == 4
    identity = store.authenticate(key.secret)
    assert identity is not None and identity.can(Permission.READ_FEATURES, "staging")
    (listed,) = store.list_api_keys("staging")
    assert listed.id == key.info.id and len(listed.bindings) == 2

    store.remove_role("user:alice", "prod", "owner")
    assert store.identity("user:alice").bindings == ()
    with pytest.raises(AccessError, match="has no role 'owner' on workspace 'prod'"):
        store.remove_role("user:alice", "prod", "owner")


@pytest.mark.parametrize(
    ("principal", "workspace", "role", "message"),
    [
        ("user:alice", "prod", "superuser", "unknown role 'superuser'"),
        ("user:alice", "prod", INJECTION, "unknown role"),
        ("alice", "prod", "viewer", "is not user:<name> or service_account:<id>"),
        ("user:", "prod", "viewer", "is not user:<name> or service_account:<id>"),
        (INJECTION, "prod", "viewer", "is not user:<name> or service_account:<id>"),
        ("service_account:000000000000", "prod", "viewer", "no service account"),
        ("user:alice", INJECTION, "viewer", "is not valid"),
        ("user:alice", "prod\n", "viewer", "is not valid"),
    ],
)
def test_bad_role_assignments_are_refused_and_write_nothing(store, principal, workspace, role, message):
    with pytest.raises(AccessError, match=message):
        store.assign_role(principal, workspace, role)
    assert store.bindings() == []


def test_hostile_user_names_and_descriptions_are_stored_as_data(config, store):
    registry = open_registry(config)
    try:
        registry.create_workspace("prod", live=False)
        hostile = f"user:{INJECTION}"
        store.assign_role(hostile, "prod", "viewer", assigned_by=INJECTION)
        key = store.create_api_key("prod", "consumer", description=INJECTION, created_by=INJECTION)
        assert store.identity(hostile).can(Permission.VIEW, "prod")
        assert store.list_api_keys()[0].description == INJECTION
        store.remove_role(hostile, "prod", "viewer")
        assert store.authenticate(key.secret) is not None
        assert [w.name for w in registry.list_workspaces()] == ["prod"]  # every table still there
    finally:
        registry.close()


def test_keys_created_concurrently_are_all_distinct_and_valid(config, store):
    created: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run() -> None:
        own = open_access_store(config)
        try:
            barrier.wait(timeout=60)
            key = own.create_api_key("prod", "consumer")
            with lock:
                created.append(key)
        finally:
            own.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len({k.info.id for k in created}) == 8
    assert all(store.authenticate(k.secret) is not None for k in created)
    assert len(store.list_api_keys()) == 8

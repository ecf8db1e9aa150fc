"""The PostgreSQL schema's migrations: a database made by an earlier featureplane is upgraded with its
data intact, processes starting together do not race, a failed migration leaves the database as it was,
and a database newer than the code is refused."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg
import pytest
from store_backends import definitions as specs
from store_backends import entity, plan_for, source, stored

from featureplane.access import open_access_store
from featureplane.access.base import hash_key
from featureplane.config import load_config
from featureplane.definitions.specs import spec_hash, to_json
from featureplane.registry import open_registry
from featureplane.registry.migrations import latest_version, migrations, schema_version, upgrade
from featureplane.util.postgres import PostgresError

KEY = "fpk_0123456789ab_" + "s" * 43


def config_for(dsn: str, tmp_path: Path):
    path = tmp_path / "featureplane.yaml"
    path.write_text(
        f"project: schema\ndata_dir: '{tmp_path / 'data'}'\nregistry: {{type: postgres, dsn: '{dsn}'}}\n"
    )
    return load_config(path)


# What each schema version holds, written with that version's own SQL (not today's stores).
def seed_registry(con: psycopg.Connection) -> None:
    spec = to_json(entity())
    con.execute(
        "INSERT INTO workspaces VALUES ('prod', true, 1, '2024-05-01T10:00:00Z', '2024-05-01T10:00:00Z')"
    )
    con.execute(
        "INSERT INTO objects VALUES ('prod', 'entity', 'user', %s::jsonb, %s, 1, 1, 1)",
        (spec, spec_hash(entity())),
    )
    con.execute(
        "INSERT INTO versions VALUES ('prod', 1, '2024-05-01T10:00:00Z', 'alice', '1 to create', '[]'::jsonb)"
    )
    con.execute(
        "INSERT INTO object_history VALUES ('prod', 1, 'entity', 'user', 'create', %s::jsonb)", (spec,)
    )


def seed_access(con: psycopg.Connection) -> None:
    con.execute(
        "INSERT INTO principals (id, kind, name, created_at) VALUES "
        "('service_account:0123456789ab', 'service_account', 'api-key-0123456789ab', '2024-05-01T10:00:00Z'), "
        "('user:alice', 'user', 'alice', '2024-05-01T10:00:00Z')"
    )
    con.execute(
        "INSERT INTO api_keys (id, principal_id, key_hash, created_at) VALUES "
        "('0123456789ab', 'service_account:0123456789ab', %s, '2024-05-01T10:00:00Z')",
        (hash_key(KEY),),
    )
    con.execute(
        "INSERT INTO role_bindings (principal_id, workspace, role, created_at) VALUES "
        "('service_account:0123456789ab', 'prod', 'consumer', '2024-05-01T10:00:00Z'), "
        "('user:alice', 'prod', 'owner', '2024-05-01T10:00:00Z')"
    )


def seed_accounts(con: psycopg.Connection) -> None:
    con.execute("INSERT INTO user_accounts (principal_id, admin) VALUES ('user:alice', true)")
    con.execute(
        "INSERT INTO audit_log (at, actor, action, workspace) VALUES "
        "('2024-05-01T10:00:00Z', 'user:alice', 'apply', 'prod')"
    )


SEEDS = {1: seed_registry, 2: seed_access, 3: seed_accounts}


def database_at(dsn: str, version: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        assert upgrade(con, target=version) == version
        with con.transaction():
            for number in range(1, version + 1):
                SEEDS[number](con)


def test_every_migration_has_seed_data_here():
    assert sorted(SEEDS) == [m.version for m in migrations()], "add a seed for the new migration"


@pytest.mark.parametrize("previous", range(1, latest_version()))
def test_a_database_at_an_earlier_schema_is_upgraded_with_its_data(postgres_dsn, tmp_path, previous):
    database_at(postgres_dsn, previous)
    config = config_for(postgres_dsn, tmp_path)
    registry = open_registry(config)  # opening it upgrades the schema
    access = open_access_store(config)
    try:
        with psycopg.connect(postgres_dsn) as con:
            assert schema_version(con) == latest_version()
            rows = con.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in migrations()]

        state = registry.load("prod")
        assert (state.version, state.live, state.info.created_at) == (1, True, "2024-05-01T10:00:00Z")
        assert state.definitions.entities == {"user": entity()}
        assert [(v.version, v.applied_by) for v in registry.history("prod")] == [(1, "alice")]
        assert registry.apply(plan_for(registry, "prod", specs(entity(), source()))) == 2

        if previous >= 2:
            identity = access.authenticate(KEY)
            assert identity is not None and identity.can("read_features", "prod")
            assert access.identity("user:alice").can("manage_access", "prod")
            assert access.user("alice").admin is (previous >= 3)
        # What the newer migrations added works on the upgraded database.
        access.create_user("bob", "a long enough password")
        assert access.verify_password("bob", "a long enough password") is not None
        access.record_audit("user:bob", "login")
        assert access.audit_events(limit=1)[0].actor == "user:bob"
    finally:
        access.close()
        registry.close()


def test_processes_starting_together_migrate_once(postgres_dsn):
    results: list[object] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            barrier.wait(timeout=60)
            try:
                results.append(upgrade(con))
            except Exception as exc:
                results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [latest_version()] * 8
    with psycopg.connect(postgres_dsn) as con:
        versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, latest_version() + 1))


def test_a_failed_migration_leaves_the_database_as_it_was(postgres_dsn, tmp_path):
    database_at(postgres_dsn, latest_version() - 1)
    last = migrations()[-1]
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        # Something in the way of the last migration's first table.
        first_table, *later_tables = re.findall(r"CREATE TABLE (\w+)", last.sql)
        con.execute(f"CREATE TABLE {first_table} (in_the_way integer)")
    with pytest.raises(PostgresError) as info:
        open_registry(config_for(postgres_dsn, tmp_path))
    message = str(info.value)
    assert f"migration {last.version:04d}_{last.name} failed" in message and "already exists" in message
    assert message.startswith(str(tmp_path / "featureplane.yaml")) and "\n" not in message
    with psycopg.connect(postgres_dsn) as con:
        assert schema_version(con) == latest_version() - 1
        tables = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert first_table in tables and not tables & set(later_tables)  # nothing of the migration was kept


def test_a_database_newer_than_this_featureplane_is_refused(postgres_dsn, tmp_path):
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        upgrade(con)
        con.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from_the_future')",
            (latest_version() + 1,),
        )
    with pytest.raises(PostgresError, match=r"newer than this featureplane knows .*upgrade featureplane"):
        open_registry(config_for(postgres_dsn, tmp_path))


def test_the_audit_log_cannot_be_changed_in_the_database(postgres_dsn, tmp_path):
    access = open_access_store(config_for(postgres_dsn, tmp_path))
    try:
        access.record_audit("user:alice", "apply", "prod")
        for statement in (
            "UPDATE audit_log SET actor = 'user:mallory'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(
                PostgresError, match="refused a statement: the audit log is append-only"
            ) as info:
                stored(access, statement)
            assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
        assert [e.actor for e in access.audit_events()] == ["user:alice"]
    finally:
        access.close()


def test_migration_files_ship_with_the_package():
    # The same files are what a wheel installs (package data in pyproject.toml).
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]
    assert "*.sql" in data["featureplane.registry.migrations"]

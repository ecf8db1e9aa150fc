"""The registry and access store on PostgreSQL as a team runs them: chosen in featureplane.yaml, the
password from the environment (never the file, never a message), one pool per process, one-line errors
when the server cannot be used, applies from 8 processes with one winner, and the CLI end to end."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import free_port, run_cli
from helpers import AMOUNTS_SERVICE, events_repo
from psycopg import sql
from store_backends import apply_in_process, definitions, entity, plan_for, source, view

from featureplane.access import open_access_store
from featureplane.config import load_config
from featureplane.registry import open_registry
from featureplane.registry.base import ConflictError
from featureplane.util import postgres
from featureplane.util.postgres import DatabaseUnavailable, PostgresError, display_dsn, dsn_has_password

PASSWORD = "s3cret pa'ss:w@rd/?"  # characters a DSN would have to escape
PASSWORD_ENV = {"FEATUREPLANE_DB_PASSWORD": "any value: the test server trusts local logins"}


def write_config(tmp_path: Path, registry: dict) -> Path:
    path = tmp_path / "featureplane.yaml"
    path.write_text(
        yaml.safe_dump({"project": "team", "data_dir": str(tmp_path / "data"), "registry": registry})
    )
    return path


@pytest.fixture
def password_dsn(postgres_server, postgres_dsn) -> str:
    """The DSN (without the password) of a fresh database owned by a login role that must give its
    password (scram-sha-256)."""
    role = f"team_{uuid.uuid4().hex[:8]}"
    database = postgres_dsn.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as con:
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
        )
        con.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        hba = postgres_server.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        con.execute("SELECT pg_reload_conf()")
    dsn = f"postgresql://{role}@127.0.0.1:{postgres_server.port}/{database}"
    for _ in range(200):  # until the server asks this role for its password
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            break
    return dsn


def test_the_password_comes_from_the_environment_and_is_never_shown(
    password_dsn, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    dsn = password_dsn
    config = load_config(
        write_config(tmp_path, {"type": "postgres", "dsn": dsn, "password_env": "TEAM_DB_PASSWORD"})
    )
    monkeypatch.delenv("TEAM_DB_PASSWORD", raising=False)
    with pytest.raises(PostgresError) as missing:
        open_registry(config)
    assert str(missing.value) == (
        f"{config.path}: registry.password_env: environment variable TEAM_DB_PASSWORD is not set "
        "(it holds the password for registry.dsn)"
    )

    monkeypatch.setenv("TEAM_DB_PASSWORD", "not the password")
    with pytest.raises(DatabaseUnavailable) as wrong:
        open_registry(config)
    message = str(wrong.value)
    assert message.startswith(f"{config.path}: registry.dsn: cannot connect to PostgreSQL at {dsn}")
    assert "password authentication failed" in message and "TEAM_DB_PASSWORD" in message
    assert "\n" not in message and "not the password" not in message

    monkeypatch.setenv("TEAM_DB_PASSWORD", PASSWORD)
    registry = open_registry(config)
    access = open_access_store(config)
    try:
        registry.create_workspace("prod", live=True)
        access.create_api_key("prod", "consumer")
        assert [w.name for w in registry.list_workspaces()] == ["prod"] and len(access.list_api_keys()) == 1
    finally:
        access.close()
        registry.close()
    shown = caplog.text + repr(config) + message + str(missing.value)
    assert PASSWORD not in shown and "s3cret" not in shown


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://team:hunter2@db.internal:5432/featureplane",
        "postgresql://team@db.internal/featureplane?password=hunter2",
        "host=db.internal user=team password=hunter2 dbname=featureplane",
        "host=db.internal PASSWORD = hunter2",
    ],
)
def test_a_password_in_the_file_is_refused_without_repeating_it(tmp_path, dsn):
    assert dsn_has_password(dsn)
    config = load_config(write_config(tmp_path, {"type": "postgres", "dsn": dsn}))
    with pytest.raises(PostgresError, match=r"registry\.dsn must not contain the password") as info:
        open_registry(config)
    assert "hunter2" not in str(info.value)


def test_dsns_are_shown_without_passwords():
    assert not dsn_has_password("postgresql://team@db.internal:5432/featureplane?sslmode=require")
    assert not dsn_has_password("host=db user=team passfile=/run/secrets/pgpass")
    assert display_dsn("host=db.internal port=6432 user=team dbname=fp password=x") == (
        "postgresql://team@db.internal:6432/fp"
    )
    assert display_dsn("postgresql://team:x@db/fp") == "postgresql://team@db/fp"


def test_an_unreachable_server_is_one_line_naming_the_setting(tmp_path):
    port = free_port()  # nothing listens there
    dsn = f"postgresql://postgres@127.0.0.1:{port}/featureplane"
    config = load_config(
        write_config(tmp_path, {"type": "postgres", "dsn": dsn, "connect_timeout_seconds": 2})
    )
    with pytest.raises(DatabaseUnavailable) as info:
        open_registry(config)
    assert str(info.value).startswith(
        f"{config.path}: registry.dsn: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:{port}/featureplane:"
    )
    assert "\n" not in str(info.value)
    result = run_cli(
        "workspace",
        "list",
        cwd=tmp_path,
        env={**os.environ, "FEATUREPLANE_CONFIG": str(config.path)},
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "registry.dsn: cannot connect" in result.stderr


def test_a_read_only_role_can_read_and_its_writes_fail_in_one_line(postgres_dsn, tmp_path):
    owner = open_registry(load_config(write_config(tmp_path, {"type": "postgres", "dsn": postgres_dsn})))
    owner.create_workspace("prod", live=True)
    owner.close()
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        con.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    reader_dir = tmp_path / "reader"
    reader_dir.mkdir()
    dsn = postgres_dsn.replace("postgres@", f"{role}@", 1)
    path = write_config(reader_dir, {"type": "postgres", "dsn": dsn})
    reader = open_registry(load_config(path))  # a current schema is only read: no lock, no DDL
    try:
        assert [w.name for w in reader.list_workspaces()] == ["prod"]
        with pytest.raises(
            PostgresError, match="refused a statement: permission denied for table workspaces"
        ):
            reader.create_workspace("dev", live=False)
    finally:
        reader.close()
    env = {**os.environ, "FEATUREPLANE_CONFIG": str(path)}
    result = run_cli("workspace", "create", "dev", cwd=reader_dir, env=env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "permission denied" in result.stderr


def test_one_pool_per_process_shared_by_the_stores_and_closed_with_the_last(postgres_dsn, tmp_path):
    config = load_config(write_config(tmp_path, {"type": "postgres", "dsn": postgres_dsn}))
    registry = open_registry(config)
    access = open_access_store(config)
    pool = registry.db._shared.pool
    assert access.db._shared.pool is pool
    assert sum(1 for shared in postgres._pools.values() if shared.pool is pool) == 1
    registry.create_workspace("prod", live=False)
    registry.close()
    registry.close()  # twice is once
    assert not pool.closed and access.list_api_keys() == []
    access.close()
    assert pool.closed and all(shared.pool is not pool for shared in postgres._pools.values())
    with pytest.raises(DatabaseUnavailable, match="closed"):
        registry.version("prod")
    again = open_registry(config)  # a new pool on the next open
    try:
        assert again.version("prod") == 0
    finally:
        again.close()


def test_connections_the_server_drops_are_replaced(postgres_dsn, tmp_path):
    config = load_config(
        write_config(tmp_path, {"type": "postgres", "dsn": postgres_dsn, "pool_min_size": 2})
    )
    registry = open_registry(config)
    try:
        registry.create_workspace("prod", live=False)
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            dropped = con.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        assert dropped >= 1
        assert registry.version("prod") == 0 and [w.name for w in registry.list_workspaces()] == ["prod"]
    finally:
        registry.close()


def test_concurrent_applies_from_8_processes_exactly_one_wins_each_round(postgres_dsn, tmp_path):
    path = write_config(tmp_path, {"type": "postgres", "dsn": postgres_dsn})
    registry = open_registry(load_config(path))
    context = multiprocessing.get_context("spawn")
    try:
        registry.create_workspace("prod", live=True)
        for round_number in range(1, 4):
            plans = [
                plan_for(registry, "prod", definitions(entity(), source(), view(f"r{round_number}_p{i}")))
                for i in range(8)
            ]
            barrier, results = context.Barrier(8), context.Queue()
            processes = [
                context.Process(target=apply_in_process, args=(str(path), plan.dumps(), barrier, results))
                for plan in plans
            ]
            for process in processes:
                process.start()
            outcomes = [results.get(timeout=300) for _ in processes]
            for process in processes:
                process.join(timeout=60)
            assert sorted(kind for kind, _ in outcomes) == ["conflict"] * 7 + ["won"], outcomes
            assert [value for kind, value in outcomes if kind == "won"] == [round_number]
            assert all(
                "changed since the plan was made" in value for kind, value in outcomes if kind == "conflict"
            )
            state = registry.load("prod")
            views = set(state.definitions.feature_views)
            assert (
                state.version == round_number
                and len(views) == 1
                and views <= {p.changes[-1].name for p in plans}
            )
        assert [v.applied_by for v in registry.history("prod")] == ["process"] * 3
        with pytest.raises(ConflictError):
            registry.apply(plans[0])
    finally:
        registry.close()


@pytest.fixture
def repo_with_postgres_cli(tmp_path, request):
    """The events repository (a feature service ``svc`` on view ``amounts``) with its registry in a
    fresh PostgreSQL database and its password named by ``password_env`` (PASSWORD_ENV sets it)."""
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    dsn = request.getfixturevalue("postgres_dsn")
    raw = yaml.safe_load(repo.config_path.read_text())
    raw["registry"] = {"type": "postgres", "dsn": dsn, "password_env": "FEATUREPLANE_DB_PASSWORD"}
    repo.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return repo


def test_the_cli_runs_on_a_postgres_registry(repo_with_postgres_cli, monkeypatch):
    repo, env = repo_with_postgres_cli, PASSWORD_ENV
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # for the stores this test opens itself
    assert "Created live workspace prod" in repo.cli("workspace", "create", "prod", "--live", env=env).stdout
    repo.cli("workspace", "create", "dev", env=env)
    listing = repo.cli("workspace", "list", env=env).stdout
    assert "prod" in listing and "dev" in listing and "live" in listing and "development" in listing
    out = repo.cli("plan", "-w", "prod", env=env).stdout
    assert "4 to create, 0 to update, 0 to recreate, 0 to delete" in out
    assert "now at version 1" in repo.cli("apply", "-w", "prod", "--yes", env=env).stdout
    assert repo.cli("plan", "-w", "prod", "--detailed-exitcode", env=env).returncode == 0

    key = repo.cli(
        "api-key", "create", "-w", "prod", "--description", "model A", "-q", env=env
    ).stdout.strip()
    key_id = key.split("_")[1]
    listed = repo.cli("api-key", "list", env=env).stdout
    assert key_id in listed and "active" in listed and "model A" in listed and key not in listed

    # The lookup service reads the same registry and keys.
    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.protocol import Request

    repo.set_config("serving", auth=True, registry_refresh_seconds=0)
    service = create_lookup_service(repo.config())
    body = json.dumps({"params": {"workspaceName": "prod", "featureServiceName": "svc"}}).encode()
    metadata = Request(
        "POST", "/api/v1/feature-service/metadata", {"authorization": f"Tecton-key {key}"}, body
    )
    try:
        assert service.handle(metadata).status == 200
        assert "Revoked API key" in repo.cli("api-key", "revoke", key_id, env=env).stdout
        assert "revoked" in repo.cli("api-key", "list", env=env).stdout
        assert service.handle(metadata).status == 401
    finally:
        service.snapshots.close()
        service.verifier.store.close()

    registry = open_registry(repo.config())
    try:
        assert [(v.version, v.summary) for v in registry.history("prod")] == [(1, "4 to create")]
        assert registry.get_workspace("dev").version == 0
    finally:
        registry.close()
    assert not (repo.root / ".featureplane" / "registry.db").exists()  # nothing went to SQLite

    unset = {k: v for k, v in repo.env.items() if k not in env}
    missing = run_cli("workspace", "list", cwd=repo.root, env=unset, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "registry.password_env: environment variable FEATUREPLANE_DB_PASSWORD is not set" in missing.stderr

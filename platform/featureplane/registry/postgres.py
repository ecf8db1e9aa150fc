"""The registry in PostgreSQL (a team's): the same tables and contract as the SQLite registry.

Apply locks the workspace's row (``SELECT ... FOR UPDATE``), checks it is still at the plan's base
version and writes every change, the history and the new version in one transaction: of concurrent
applies to one workspace, the first to lock the row wins and the others, once it commits, find a newer
version and raise ConflictError, having written nothing. Reads of a workspace's state run in one
REPEATABLE READ snapshot, so they never mix two versions. The schema comes from ``migrations/``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FEATURE_VIEW, DefinitionSet, from_dict, spec_hash, to_json
from featureplane.registry.base import (
    ConflictError,
    Registry,
    VersionInfo,
    WorkspaceExists,
    WorkspaceInfo,
    WorkspaceNotFound,
    WorkspaceState,
    check_workspace_name,
    refuse_protected,
    stale_plan,
)

if TYPE_CHECKING:
    import psycopg

    from featureplane.config import Config
    from featureplane.registry.plan import Plan
    from featureplane.util.postgres import PostgresDatabase

_WORKSPACE_COLUMNS = "name, live, version, created_at, updated_at"


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """A stored timestamp as the registry shows it: ISO-8601 in UTC to the second (as SQLite's)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def open_postgres_database(config: Config) -> PostgresDatabase:
    """The process's pool on the database named by ``registry`` in featureplane.yaml, its schema
    upgraded to this featureplane's on first use."""
    from featureplane.registry.migrations import upgrade
    from featureplane.util.postgres import open_database

    return open_database(config.registry, str(config.path), upgrade)


def _info(row: tuple) -> WorkspaceInfo:
    return WorkspaceInfo(row[0], bool(row[1]), int(row[2]), iso(row[3]), iso(row[4]))


class PostgresRegistry(Registry):
    def __init__(self, database: PostgresDatabase) -> None:
        self.db = database

    @classmethod
    def from_config(cls, config: Config) -> PostgresRegistry:
        return cls(open_postgres_database(config))

    def close(self) -> None:
        self.db.close()

    # -- workspaces ------------------------------------------------------------------------------

    def create_workspace(self, name: str, live: bool) -> WorkspaceInfo:
        check_workspace_name(name)
        moment = now()
        with self.db.connection() as con:
            row = con.execute(
                "INSERT INTO workspaces (name, live, version, created_at, updated_at) VALUES (%s, %s, 0, %s, %s) "
                f"ON CONFLICT (name) DO NOTHING RETURNING {_WORKSPACE_COLUMNS}",
                (name, bool(live), moment, moment),
            ).fetchone()
        if row is None:
            raise WorkspaceExists(f"workspace {name!r} already exists")
        return _info(row)

    def list_workspaces(self) -> list[WorkspaceInfo]:
        with self.db.connection() as con:
            rows = con.execute(f"SELECT {_WORKSPACE_COLUMNS} FROM workspaces ORDER BY name").fetchall()
        return [_info(r) for r in rows]

    def get_workspace(self, name: str) -> WorkspaceInfo:
        with self.db.connection() as con:
            return self._workspace(con, name)

    def _workspace(self, con: psycopg.Connection, name: str, *, for_update: bool = False) -> WorkspaceInfo:
        lock = " FOR UPDATE" if for_update else ""
        row = con.execute(
            f"SELECT {_WORKSPACE_COLUMNS} FROM workspaces WHERE name = %s{lock}", (name,)
        ).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT name FROM workspaces ORDER BY name")]
            raise WorkspaceNotFound(name, known)
        return _info(row)

    def delete_workspace(self, name: str) -> None:
        with self.db.transaction() as con:
            self._workspace(con, name, for_update=True)
            # objects and versions (and with them the object history) go by ON DELETE CASCADE
            con.execute("DELETE FROM workspaces WHERE name = %s", (name,))

    def version(self, name: str) -> int:
        with self.db.connection() as con:
            row = con.execute("SELECT version FROM workspaces WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise WorkspaceNotFound(name)
        return int(row[0])

    # -- state -----------------------------------------------------------------------------------

    def load(self, name: str) -> WorkspaceState:
        with self.db.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            info = self._workspace(con, name)
            rows = con.execute(
                "SELECT kind, spec, generation FROM objects WHERE workspace = %s ORDER BY kind, name",
                (name,),
            ).fetchall()
        state = WorkspaceState(info=info, definitions=DefinitionSet())
        for kind, spec, generation in rows:
            parsed = from_dict(kind, spec)
            state.definitions.add(parsed)
            if kind == FEATURE_VIEW:
                state.generations[parsed.name] = generation
        return state

    def apply(self, plan: Plan, applied_by: str = "") -> int:
        from featureplane.registry.plan import CREATE, DELETE, RECREATE

        with self.db.transaction() as con:
            info = self._workspace(con, plan.workspace, for_update=True)
            if info.version != plan.base_version:
                raise stale_plan(plan.workspace, plan.base_version, info.version)
            if info.live:
                applied = self._applied_specs(con, plan)
                refuse_protected(plan, lambda kind, name: applied.get((kind, name)))
            version = info.version + 1
            moment = now()
            history: list[tuple[Any, ...]] = []
            for change in plan.changes:
                key = (plan.workspace, change.kind, change.name)
                if change.action == DELETE:
                    con.execute("DELETE FROM objects WHERE workspace = %s AND kind = %s AND name = %s", key)
                    text = None
                else:
                    assert change.new is not None
                    text = to_json(change.new)
                    digest = spec_hash(change.new)
                    if change.action == CREATE:
                        con.execute(
                            "INSERT INTO objects (workspace, kind, name, spec, spec_hash, generation,"
                            " created_version, updated_version) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
                            (*key, text, digest, version, version, version),
                        )
                    else:
                        generation = ", generation = %s" if change.action == RECREATE else ""
                        params: list[Any] = [text, digest, version]
                        if change.action == RECREATE:
                            params.append(version)
                        cursor = con.execute(
                            f"UPDATE objects SET spec = %s::jsonb, spec_hash = %s, updated_version = %s{generation}"
                            " WHERE workspace = %s AND kind = %s AND name = %s",
                            (*params, *key),
                        )
                        if cursor.rowcount != 1:
                            raise ConflictError(
                                f"{change.kind} {change.name!r} is not in workspace {plan.workspace!r}"
                            )
                history.append((plan.workspace, version, change.kind, change.name, change.action, text))
            con.execute(
                "INSERT INTO versions (workspace, version, applied_at, applied_by, summary, changes)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                (
                    plan.workspace,
                    version,
                    moment,
                    applied_by,
                    plan.summary(),
                    json.dumps([c.to_json() for c in plan.changes]),
                ),
            )
            with con.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO object_history (workspace, version, kind, name, action, spec)"
                    " VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                    history,
                )
            con.execute(
                "UPDATE workspaces SET version = %s, updated_at = %s WHERE name = %s",
                (version, moment, plan.workspace),
            )
        return version

    @staticmethod
    def _applied_specs(con: psycopg.Connection, plan: Plan) -> dict[tuple[str, str], dict]:
        """The applied specs of the objects the plan deletes or recreates."""
        from featureplane.registry.plan import DELETE, RECREATE

        wanted = [(c.kind, c.name) for c in plan.changes if c.action in (DELETE, RECREATE)]
        if not wanted:
            return {}
        rows = con.execute(
            "SELECT kind, name, spec FROM objects WHERE workspace = %s AND (kind, name) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
            (plan.workspace, [k for k, _ in wanted], [n for _, n in wanted]),
        ).fetchall()
        return {(kind, name): spec for kind, name, spec in rows}

    def history(self, name: str) -> list[VersionInfo]:
        with self.db.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._workspace(con, name)
            rows = con.execute(
                "SELECT workspace, version, applied_at, applied_by, summary FROM versions WHERE workspace = %s"
                " ORDER BY version",
                (name,),
            ).fetchall()
        return [VersionInfo(w, v, iso(at), by, summary) for w, v, at, by, summary in rows]

"""The embedded registry: one SQLite file, a row per object, a version per workspace.

Apply takes SQLite's write lock (``BEGIN IMMEDIATE``), checks the workspace is still at the plan's base
version and writes every change and the new version in one transaction, so two concurrent applies cannot
both win and a failed apply leaves nothing behind. Standard library only: the lookup service reads it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FEATURE_VIEW, DefinitionSet, from_dict, spec_hash, to_json
from featureplane.errors import storage_error
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
    from featureplane.registry.plan import Plan

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    name TEXT PRIMARY KEY,
    live INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_version INTEGER NOT NULL,
    updated_version INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind, name)
);
CREATE TABLE IF NOT EXISTS versions (
    workspace TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    summary TEXT NOT NULL,
    changes TEXT NOT NULL,
    PRIMARY KEY (workspace, version)
);
CREATE TABLE IF NOT EXISTS object_history (
    workspace TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    spec TEXT
);
"""


# SQLite errors that mean the file cannot be used at all (not a conflict or a bad statement).
_UNUSABLE = re.compile(r"readonly|unable to open|disk I/O|not a database|no such file")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SQLiteRegistry(Registry):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._initialised = False
        self._init_lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise storage_error(self.path, exc, "the registry") from exc
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            if not self._initialised:
                with self._init_lock:
                    con.execute("PRAGMA journal_mode = WAL")
                    con.executescript(SCHEMA)
                    self._initialised = True
            yield con
        except sqlite3.OperationalError as exc:
            if not _UNUSABLE.search(str(exc)):
                raise
            raise storage_error(self.path, exc, "the registry") from exc
        finally:
            con.close()

    # -- workspaces ------------------------------------------------------------------------------

    def create_workspace(self, name: str, live: bool) -> WorkspaceInfo:
        check_workspace_name(name)
        now = _now()
        with self._connect() as con:
            try:
                con.execute(
                    "INSERT INTO workspaces (name, live, version, created_at, updated_at) VALUES (?, ?, 0, ?, ?)",
                    (name, int(live), now, now),
                )
            except sqlite3.IntegrityError:
                raise WorkspaceExists(f"workspace {name!r} already exists") from None
        return WorkspaceInfo(name, live, 0, now, now)

    def list_workspaces(self) -> list[WorkspaceInfo]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT name, live, version, created_at, updated_at FROM workspaces ORDER BY name"
            ).fetchall()
        return [WorkspaceInfo(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows]

    def get_workspace(self, name: str) -> WorkspaceInfo:
        with self._connect() as con:
            return self._workspace(con, name)

    def _workspace(self, con: sqlite3.Connection, name: str) -> WorkspaceInfo:
        row = con.execute(
            "SELECT name, live, version, created_at, updated_at FROM workspaces WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT name FROM workspaces ORDER BY name")]
            raise WorkspaceNotFound(name, known)
        return WorkspaceInfo(row[0], bool(row[1]), row[2], row[3], row[4])

    def delete_workspace(self, name: str) -> None:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                self._workspace(con, name)
                for table in ("objects", "versions", "object_history"):
                    con.execute(f"DELETE FROM {table} WHERE workspace = ?", (name,))
                con.execute("DELETE FROM workspaces WHERE name = ?", (name,))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def version(self, name: str) -> int:
        with self._connect() as con:
            row = con.execute("SELECT version FROM workspaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise WorkspaceNotFound(name)
        return int(row[0])

    # -- state -----------------------------------------------------------------------------------

    def load(self, name: str) -> WorkspaceState:
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                info = self._workspace(con, name)
                rows = con.execute(
                    "SELECT kind, spec, generation FROM objects WHERE workspace = ? ORDER BY kind, name",
                    (name,),
                ).fetchall()
            finally:
                con.execute("COMMIT")
        state = WorkspaceState(info=info, definitions=DefinitionSet())
        for kind, spec, generation in rows:
            parsed = from_dict(kind, json.loads(spec))
            state.definitions.add(parsed)
            if kind == FEATURE_VIEW:
                state.generations[parsed.name] = generation
        return state

    def apply(self, plan: Plan, applied_by: str = "") -> int:
        from featureplane.registry.plan import CREATE, DELETE, RECREATE

        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                info = self._workspace(con, plan.workspace)
                if info.version != plan.base_version:
                    raise stale_plan(plan.workspace, plan.base_version, info.version)
                if info.live:
                    refuse_protected(
                        plan, lambda kind, name: self._applied_spec(con, plan.workspace, kind, name)
                    )
                version = info.version + 1
                now = _now()
                for change in plan.changes:
                    if change.action == DELETE:
                        con.execute(
                            "DELETE FROM objects WHERE workspace = ? AND kind = ? AND name = ?",
                            (plan.workspace, change.kind, change.name),
                        )
                        text = None
                    else:
                        assert change.new is not None
                        text = to_json(change.new)
                        if change.action == CREATE:
                            con.execute(
                                "INSERT INTO objects (workspace, kind, name, spec, spec_hash, generation, created_version,"
                                " updated_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (
                                    plan.workspace,
                                    change.kind,
                                    change.name,
                                    text,
                                    spec_hash(change.new),
                                    version,
                                    version,
                                    version,
                                ),
                            )
                        else:
                            generation_sql = ", generation = ?" if change.action == RECREATE else ""
                            params: list = [text, spec_hash(change.new), version]
                            if change.action == RECREATE:
                                params.append(version)
                            cursor = con.execute(
                                f"UPDATE objects SET spec = ?, spec_hash = ?, updated_version = ?{generation_sql}"
                                " WHERE workspace = ? AND kind = ? AND name = ?",
                                (*params, plan.workspace, change.kind, change.name),
                            )
                            if cursor.rowcount != 1:
                                raise ConflictError(
                                    f"{change.kind} {change.name!r} is not in workspace {plan.workspace!r}"
                                )
                    con.execute(
                        "INSERT INTO object_history (workspace, version, kind, name, action, spec) VALUES (?, ?, ?, ?, ?, ?)",
                        (plan.workspace, version, change.kind, change.name, change.action, text),
                    )
                con.execute(
                    "INSERT INTO versions (workspace, version, applied_at, applied_by, summary, changes) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        plan.workspace,
                        version,
                        now,
                        applied_by,
                        plan.summary(),
                        json.dumps([c.to_json() for c in plan.changes]),
                    ),
                )
                con.execute(
                    "UPDATE workspaces SET version = ?, updated_at = ? WHERE name = ?",
                    (version, now, plan.workspace),
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return version

    @staticmethod
    def _applied_spec(con: sqlite3.Connection, workspace: str, kind: str, name: str) -> dict | None:
        row = con.execute(
            "SELECT spec FROM objects WHERE workspace = ? AND kind = ? AND name = ?", (workspace, kind, name)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def history(self, name: str) -> list[VersionInfo]:
        with self._connect() as con:
            self._workspace(con, name)
            rows = con.execute(
                "SELECT workspace, version, applied_at, applied_by, summary FROM versions WHERE workspace = ? ORDER BY version",
                (name,),
            ).fetchall()
        return [VersionInfo(*row) for row in rows]

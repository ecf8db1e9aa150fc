"""Principals, API keys and role bindings in the registry's SQLite database.

``principals`` holds who acts (``service_account`` now; ``user`` when CLI roles arrive), ``api_keys``
the hashed keys of a principal, ``role_bindings`` the roles a principal holds per workspace. Creating a
key writes all three in one transaction.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from featureplane.access.base import (
    AccessError,
    AccessStore,
    ApiKeyInfo,
    CreatedKey,
    Identity,
    RoleBinding,
    api_key_role,
    bare_key_id,
    binding_workspace,
    hash_key,
    key_id_of,
    new_key,
    no_key,
    principal_kind,
    same_hash,
    workspace_role,
)
from featureplane.util.localdb import ThreadLocalSQLite

SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    disabled_at TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    key_hash TEXT NOT NULL,
    hash_scheme TEXT NOT NULL DEFAULT 'sha256',
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    revoked_at TEXT,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS role_bindings (
    principal_id TEXT NOT NULL REFERENCES principals(id),
    workspace TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (principal_id, workspace, role)
);
CREATE INDEX IF NOT EXISTS role_bindings_by_workspace ON role_bindings (workspace);
"""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SQLiteAccessStore(AccessStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = ThreadLocalSQLite(self.path, SCHEMA, timeout=30)

    def close(self) -> None:
        self.db.close()

    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        api_key_role(role)
        binding_workspace(workspace)
        key_id, secret = new_key()
        principal = f"service_account:{key_id}"
        now = _now()
        with self.db.transaction() as con:
            con.execute(
                "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                "VALUES (?, 'service_account', ?, ?, ?, ?)",
                (principal, f"api-key-{key_id}", description, now, created_by),
            )
            con.execute(
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, principal, hash_key(secret), description, now, created_by),
            )
            con.execute(
                "INSERT INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (principal, workspace, role, now, created_by),
            )
        binding = RoleBinding(principal, workspace, role)
        info = ApiKeyInfo(key_id, principal, (binding,), description, now, created_by)
        return CreatedKey(info, secret)

    def _bindings(self, con: sqlite3.Connection, principal: str) -> tuple[RoleBinding, ...]:
        rows = con.execute(
            "SELECT workspace, role FROM role_bindings WHERE principal_id = ? ORDER BY workspace, role",
            (principal,),
        ).fetchall()
        return tuple(RoleBinding(principal, w, r) for w, r in rows)

    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        con = self.db.connection()
        sql = "SELECT id, principal_id, description, created_at, created_by, revoked_at FROM api_keys"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE principal_id IN (SELECT principal_id FROM role_bindings WHERE workspace = ?)"
            params = (workspace,)
        rows = con.execute(sql + " ORDER BY created_at, id", params).fetchall()
        return [ApiKeyInfo(r[0], r[1], self._bindings(con, r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        key_id = bare_key_id(key_id)
        with self.db.transaction() as con:
            row = con.execute(
                "SELECT id, principal_id, description, created_at, created_by, revoked_at FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
            if row is None:
                raise no_key(key_id)
            revoked_at = row[5]
            if revoked_at is None:
                revoked_at = _now()
                con.execute(
                    "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                    (revoked_at, revoked_by, key_id),
                )
        return ApiKeyInfo(row[0], row[1], self._bindings(con, row[1]), row[2], row[3], row[4], revoked_at)

    def active_keys(self) -> list[dict]:
        con = self.db.connection()
        rows = con.execute(
            "SELECT k.id, k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
            "WHERE k.revoked_at IS NULL AND p.disabled_at IS NULL ORDER BY k.id"
        ).fetchall()
        return [
            {
                "key_id": key_id,
                "principal_id": principal,
                "key_hash": key_hash,
                "bindings": [[b.workspace, b.role] for b in self._bindings(con, principal)],
            }
            for key_id, principal, key_hash in rows
        ]

    def identity(self, principal_id: str) -> Identity:
        con = self.db.connection()
        return Identity("", principal_id, self._bindings(con, principal_id))

    def assign_role(self, principal_id: str, workspace: str, role: str, assigned_by: str = "") -> RoleBinding:
        workspace_role(role)
        binding_workspace(workspace)
        kind, name = principal_kind(principal_id)
        now = _now()
        with self.db.transaction() as con:
            known = con.execute("SELECT 1 FROM principals WHERE id = ?", (principal_id,)).fetchone()
            if known is None:
                if kind != "user":
                    raise AccessError(
                        f"no service account {principal_id!r} (see `featureplane api-key list`)"
                    )
                con.execute(
                    "INSERT INTO principals (id, kind, name, created_at, created_by) VALUES (?, 'user', ?, ?, ?)",
                    (principal_id, name, now, assigned_by),
                )
            con.execute(
                "INSERT OR IGNORE INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (principal_id, workspace, role, now, assigned_by),
            )
        return RoleBinding(principal_id, workspace, role)

    def remove_role(self, principal_id: str, workspace: str, role: str) -> None:
        with self.db.transaction() as con:
            cursor = con.execute(
                "DELETE FROM role_bindings WHERE principal_id = ? AND workspace = ? AND role = ?",
                (principal_id, workspace, role),
            )
            if cursor.rowcount == 0:
                raise AccessError(f"{principal_id} has no role {role!r} on workspace {workspace!r}")

    def bindings(self, workspace: str | None = None) -> list[RoleBinding]:
        con = self.db.connection()
        sql = "SELECT principal_id, workspace, role FROM role_bindings"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE workspace IN (?, '*')"
            params = (workspace,)
        rows = con.execute(sql + " ORDER BY workspace, principal_id, role", params).fetchall()
        return [RoleBinding(*row) for row in rows]

    def authenticate(self, key: str) -> Identity | None:
        key_id = key_id_of(key)
        if key_id is None:
            return None
        con = self.db.connection()
        row = con.execute(
            "SELECT k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
            "WHERE k.id = ? AND k.revoked_at IS NULL AND p.disabled_at IS NULL",
            (key_id,),
        ).fetchone()
        if row is None or not same_hash(row[1], hash_key(key)):
            return None
        return Identity(key_id, row[0], self._bindings(con, row[0]))

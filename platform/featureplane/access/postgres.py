"""Principals, API keys and role bindings in the registry's PostgreSQL database.

The same tables and contract as the SQLite store (``sqlite.py``), created by the registry's migrations
and reached through the process's shared pool. Creating a key writes the principal, the key's hash and
its role binding in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from featureplane.registry.postgres import iso, now, open_postgres_database

if TYPE_CHECKING:
    import psycopg

    from featureplane.config import Config
    from featureplane.util.postgres import PostgresDatabase

_KEY_COLUMNS = "id, principal_id, description, created_at, created_by, revoked_at"


class PostgresAccessStore(AccessStore):
    def __init__(self, database: PostgresDatabase) -> None:
        self.db = database

    @classmethod
    def from_config(cls, config: Config) -> PostgresAccessStore:
        return cls(open_postgres_database(config))

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _bindings(con: psycopg.Connection, principal: str) -> tuple[RoleBinding, ...]:
        rows = con.execute(
            "SELECT workspace, role FROM role_bindings WHERE principal_id = %s ORDER BY workspace, role",
            (principal,),
        ).fetchall()
        return tuple(RoleBinding(principal, w, r) for w, r in rows)

    def _key_info(self, con: psycopg.Connection, row: tuple) -> ApiKeyInfo:
        key_id, principal, description, created_at, created_by, revoked_at = row
        bindings = self._bindings(con, principal)
        return ApiKeyInfo(
            key_id, principal, bindings, description, iso(created_at), created_by, iso(revoked_at)
        )

    # -- API keys --------------------------------------------------------------------------------

    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        api_key_role(role)
        binding_workspace(workspace)
        key_id, secret = new_key()
        principal = f"service_account:{key_id}"
        moment = now()
        with self.db.transaction() as con:
            con.execute(
                "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                "VALUES (%s, 'service_account', %s, %s, %s, %s)",
                (principal, f"api-key-{key_id}", description, moment, created_by),
            )
            con.execute(
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (key_id, principal, hash_key(secret), description, moment, created_by),
            )
            con.execute(
                "INSERT INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (%s, %s, %s, %s, %s)",
                (principal, workspace, role, moment, created_by),
            )
        binding = RoleBinding(principal, workspace, role)
        info = ApiKeyInfo(key_id, principal, (binding,), description, iso(moment), created_by)
        return CreatedKey(info, secret)

    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE principal_id IN (SELECT principal_id FROM role_bindings WHERE workspace = %s)"
            params = (workspace,)
        with self.db.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows = con.execute(sql + " ORDER BY created_at, id", params).fetchall()
            return [self._key_info(con, row) for row in rows]

    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        key_id = bare_key_id(key_id)
        with self.db.transaction() as con:
            # Revoking twice keeps the first revocation's time and author.
            con.execute(
                "UPDATE api_keys SET revoked_at = %s, revoked_by = %s WHERE id = %s AND revoked_at IS NULL",
                (now(), revoked_by, key_id),
            )
            row = con.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)).fetchone()
            if row is None:
                raise no_key(key_id)
            return self._key_info(con, row)

    def active_keys(self) -> list[dict]:
        with self.db.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            keys = con.execute(
                "SELECT k.id, k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
                "WHERE k.revoked_at IS NULL AND p.disabled_at IS NULL ORDER BY k.id"
            ).fetchall()
            bindings: dict[str, list[list[str]]] = {}
            for principal, workspace, role in con.execute(
                "SELECT principal_id, workspace, role FROM role_bindings ORDER BY principal_id, workspace, role"
            ):
                bindings.setdefault(principal, []).append([workspace, role])
        return [
            {
                "key_id": key_id,
                "principal_id": principal,
                "key_hash": key_hash,
                "bindings": bindings.get(principal, []),
            }
            for key_id, principal, key_hash in keys
        ]

    def authenticate(self, key: str) -> Identity | None:
        key_id = key_id_of(key)
        if key_id is None:
            return None
        with self.db.connection() as con:
            row = con.execute(
                "SELECT k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
                "WHERE k.id = %s AND k.revoked_at IS NULL AND p.disabled_at IS NULL",
                (key_id,),
            ).fetchone()
            if row is None or not same_hash(row[1], hash_key(key)):
                return None
            return Identity(key_id, row[0], self._bindings(con, row[0]))

    # -- role bindings ---------------------------------------------------------------------------

    def identity(self, principal_id: str) -> Identity:
        with self.db.connection() as con:
            return Identity("", principal_id, self._bindings(con, principal_id))

    def assign_role(self, principal_id: str, workspace: str, role: str, assigned_by: str = "") -> RoleBinding:
        workspace_role(role)
        binding_workspace(workspace)
        kind, name = principal_kind(principal_id)
        moment = now()
        with self.db.transaction() as con:
            if kind == "user":
                con.execute(
                    "INSERT INTO principals (id, kind, name, created_at, created_by) VALUES (%s, 'user', %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (principal_id, name, moment, assigned_by),
                )
            elif con.execute("SELECT 1 FROM principals WHERE id = %s", (principal_id,)).fetchone() is None:
                raise AccessError(f"no service account {principal_id!r} (see `featureplane api-key list`)")
            con.execute(
                "INSERT INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (principal_id, workspace, role, moment, assigned_by),
            )
        return RoleBinding(principal_id, workspace, role)

    def remove_role(self, principal_id: str, workspace: str, role: str) -> None:
        with self.db.connection() as con:
            cursor = con.execute(
                "DELETE FROM role_bindings WHERE principal_id = %s AND workspace = %s AND role = %s",
                (principal_id, workspace, role),
            )
            if cursor.rowcount == 0:
                raise AccessError(f"{principal_id} has no role {role!r} on workspace {workspace!r}")

    def bindings(self, workspace: str | None = None) -> list[RoleBinding]:
        sql = "SELECT principal_id, workspace, role FROM role_bindings"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE workspace IN (%s, '*')"
            params = (workspace,)
        with self.db.connection() as con:
            rows = con.execute(sql + " ORDER BY workspace, principal_id, role", params).fetchall()
        return [RoleBinding(*row) for row in rows]

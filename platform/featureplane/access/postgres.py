"""Principals, API keys, role bindings, accounts, sessions and the audit log in the registry's
PostgreSQL database.

The same tables and contract as the SQLite store (``sqlite.py``), created by the registry's migrations
and reached through the process's shared pool. Creating a key writes the principal, the key's hash and
its role binding in one transaction; disabling a user revokes their sessions in the same one. Passwords
are argon2id hashes, keys and session tokens SHA-256 digests; the audit log is append-only (a trigger
refuses updates and deletes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featureplane.access.base import (
    AccessError,
    AccessStore,
    ApiKeyInfo,
    AuditEvent,
    CreatedKey,
    CreatedSession,
    Identity,
    RoleBinding,
    ServiceAccountInfo,
    SessionInfo,
    UserInfo,
    api_key_role,
    bare_key_id,
    binding_workspace,
    check_principal_name,
    hash_key,
    key_id_of,
    new_key,
    new_session_token,
    no_key,
    principal_kind,
    same_hash,
    session_id_of,
    workspace_role,
)
from featureplane.registry.postgres import iso, now, open_postgres_database

if TYPE_CHECKING:
    import psycopg

    from featureplane.config import Config
    from featureplane.util.postgres import PostgresDatabase

_KEY_COLUMNS = "id, principal_id, description, created_at, created_by, revoked_at"
_USER_COLUMNS = (
    "SELECT p.name, coalesce(a.admin, false), p.created_at, p.created_by, p.disabled_at, "
    "a.password_hash IS NOT NULL FROM principals AS p LEFT JOIN user_accounts AS a ON a.principal_id = p.id "
    "WHERE p.kind = 'user'"
)
_SERVICE_ACCOUNT_FIELDS = "id, name, description, created_at, created_by, disabled_at"
_SERVICE_ACCOUNT_COLUMNS = f"SELECT {_SERVICE_ACCOUNT_FIELDS} FROM principals WHERE kind = 'service_account'"
_AUDIT_FIELDS = "id, at, actor, action, workspace, target, detail, source_ip"


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

    # -- users ------------------------------------------------------------------------------------

    def _user_row(self, con: psycopg.Connection, principal: str, *, lock: bool = False) -> tuple | None:
        return con.execute(
            _USER_COLUMNS + " AND p.id = %s" + (" FOR UPDATE OF p" if lock else ""), (principal,)
        ).fetchone()

    def create_user(
        self, name: str, password: str | None = None, *, admin: bool = False, created_by: str = ""
    ) -> UserInfo:
        from featureplane.access.passwords import hash_password

        check_principal_name(name)
        try:
            hashed = hash_password(password) if password is not None else None
        except ValueError as exc:
            raise AccessError(str(exc)) from None
        principal, moment = f"user:{name}", now()
        with self.db.transaction() as con:
            con.execute(
                "INSERT INTO principals (id, kind, name, created_at, created_by) VALUES (%s, 'user', %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (principal, name, moment, created_by),
            )
            added = con.execute(
                "INSERT INTO user_accounts (principal_id, password_hash, admin, password_changed_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (principal_id) DO NOTHING RETURNING principal_id",
                (principal, hashed, bool(admin), moment if hashed else None),
            ).fetchone()
            if added is None:
                raise AccessError(f"user {name!r} already exists")
            row = self._user_row(con, principal)
        return _user(row)

    def user(self, name: str) -> UserInfo:
        with self.db.connection() as con:
            row = self._user_row(con, f"user:{name}")
        if row is None:
            raise AccessError(f"no user {name!r:.140}")
        return _user(row)

    def list_users(self) -> list[UserInfo]:
        with self.db.connection() as con:
            rows = con.execute(_USER_COLUMNS + " ORDER BY p.name").fetchall()
        return [_user(r) for r in rows]

    def disable_user(self, name: str, disabled_by: str = "") -> UserInfo:
        principal, moment = f"user:{name}", now()
        with self.db.transaction() as con:
            if self._user_row(con, principal, lock=True) is None:
                raise AccessError(f"no user {name!r:.140}")
            con.execute(
                "UPDATE principals SET disabled_at = coalesce(disabled_at, %s) WHERE id = %s",
                (moment, principal),
            )
            con.execute(
                "UPDATE sessions SET revoked_at = %s WHERE principal_id = %s AND revoked_at IS NULL",
                (moment, principal),
            )
            row = self._user_row(con, principal)
        return _user(row)

    def set_password(self, name: str, password: str) -> None:
        from featureplane.access.passwords import hash_password

        try:
            hashed = hash_password(password)
        except ValueError as exc:
            raise AccessError(str(exc)) from None
        principal = f"user:{name}"
        with self.db.transaction() as con:
            if self._user_row(con, principal, lock=True) is None:
                raise AccessError(f"no user {name!r:.140}")
            con.execute(
                "INSERT INTO user_accounts (principal_id, password_hash, password_changed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (principal_id) DO UPDATE SET password_hash = excluded.password_hash, "
                "password_changed_at = excluded.password_changed_at",
                (principal, hashed, now()),
            )

    def verify_password(self, name: str, password: str) -> UserInfo | None:
        from featureplane.access import passwords

        with self.db.connection() as con:
            row = con.execute(
                "SELECT a.password_hash, p.disabled_at FROM principals AS p "
                "JOIN user_accounts AS a ON a.principal_id = p.id WHERE p.id = %s",
                (f"user:{name}",),
            ).fetchone()
        stored = row[0] if row is not None else None
        if not passwords.verify_password(stored, password) or row[1] is not None:
            return None
        if passwords.needs_rehash(stored):
            self.set_password(name, password)
        return self.user(name)

    # -- service accounts -------------------------------------------------------------------------

    def create_service_account(
        self, name: str, *, description: str = "", created_by: str = ""
    ) -> ServiceAccountInfo:
        check_principal_name(name, "service account name")
        principal, moment = f"service_account:{name}", now()
        with self.db.connection() as con:
            row = con.execute(
                "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                "VALUES (%s, 'service_account', %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING "
                f"RETURNING {_SERVICE_ACCOUNT_FIELDS}",
                (principal, name, description, moment, created_by),
            ).fetchone()
        if row is None:
            raise AccessError(f"service account {name!r} already exists")
        return _service_account(row)

    def service_account(self, account_id: str) -> ServiceAccountInfo:
        principal = (
            account_id if account_id.startswith("service_account:") else f"service_account:{account_id}"
        )
        with self.db.connection() as con:
            row = con.execute(_SERVICE_ACCOUNT_COLUMNS + " AND id = %s", (principal,)).fetchone()
        if row is None:
            raise AccessError(f"no service account {account_id!r:.140}")
        return _service_account(row)

    def list_service_accounts(self) -> list[ServiceAccountInfo]:
        with self.db.connection() as con:
            rows = con.execute(_SERVICE_ACCOUNT_COLUMNS + " ORDER BY created_at, id").fetchall()
        return [_service_account(r) for r in rows]

    def add_api_key(self, principal_id: str, *, description: str = "", created_by: str = "") -> CreatedKey:
        key_id, secret = new_key()
        moment = now()
        with self.db.transaction() as con:
            # FOR SHARE: a concurrent disable waits for the key to exist, then stops it too.
            row = con.execute(
                "SELECT disabled_at FROM principals WHERE id = %s FOR SHARE", (principal_id,)
            ).fetchone()
            if row is None:
                raise AccessError(f"no principal {principal_id!r:.140}")
            if row[0] is not None:
                raise AccessError(f"{principal_id} is disabled")
            con.execute(
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (key_id, principal_id, hash_key(secret), description, moment, created_by),
            )
            bindings = self._bindings(con, principal_id)
        info = ApiKeyInfo(key_id, principal_id, bindings, description, iso(moment), created_by)
        return CreatedKey(info, secret)

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, user: str, ttl_seconds: float, *, source_ip: str = "") -> CreatedSession:
        principal = f"user:{user}"
        session_id, token = new_session_token()
        created = now()
        expires = created + timedelta(seconds=ttl_seconds)
        with self.db.transaction() as con:
            row = con.execute(
                "SELECT disabled_at FROM principals WHERE id = %s AND kind = 'user' FOR SHARE", (principal,)
            ).fetchone()
            if row is None or row[0] is not None:
                raise AccessError(f"no active user {user!r:.140}")
            con.execute(
                "INSERT INTO sessions (id, principal_id, token_hash, created_at, expires_at, source_ip) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (session_id, principal, hash_key(token), created, expires, source_ip),
            )
        info = SessionInfo(session_id, user, precise(created), precise(expires), None, source_ip)
        return CreatedSession(info, token)

    def session(self, token: str) -> SessionInfo | None:
        session_id = session_id_of(token)
        if session_id is None:
            return None
        with self.db.connection() as con:
            row = con.execute(
                "SELECT s.token_hash, p.name, s.created_at, s.expires_at, s.source_ip FROM sessions AS s "
                "JOIN principals AS p ON p.id = s.principal_id "
                "WHERE s.id = %s AND s.revoked_at IS NULL AND p.disabled_at IS NULL",
                (session_id,),
            ).fetchone()
        if row is None or not same_hash(row[0], hash_key(token)) or row[3] <= now():
            return None
        return SessionInfo(session_id, row[1], precise(row[2]), precise(row[3]), None, row[4])

    def revoke_session(self, token_or_id: str) -> None:
        session_id = session_id_of(token_or_id) or token_or_id
        with self.db.connection() as con:
            con.execute(
                "UPDATE sessions SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (now(), session_id),
            )

    def revoke_user_sessions(self, user: str) -> int:
        moment = now()
        with self.db.connection() as con:
            cursor = con.execute(
                "UPDATE sessions SET revoked_at = %s WHERE principal_id = %s AND revoked_at IS NULL "
                "AND expires_at > %s",
                (moment, f"user:{user}", moment),
            )
            return cursor.rowcount

    # -- audit log --------------------------------------------------------------------------------

    def record_audit(
        self,
        actor: str,
        action: str,
        workspace: str = "",
        target: str = "",
        detail: str = "",
        source_ip: str = "",
    ) -> AuditEvent:
        values = (actor, action, workspace or "", target or "", detail or "", source_ip or "")
        with self.db.connection() as con:
            row = con.execute(
                "INSERT INTO audit_log (at, actor, action, workspace, target, detail, source_ip) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_AUDIT_FIELDS}",
                (now(), *values),
            ).fetchone()
        return _audit(row)

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        workspace: str | None = None,
        since: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("actor", actor), ("action", action), ("workspace", workspace)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("at >= %s")
            params.append(parse_since(since))
        if before_id is not None:
            where.append("id < %s")
            params.append(int(before_id))
        sql = f"SELECT {_AUDIT_FIELDS} FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
        with self.db.connection() as con:
            rows = con.execute(sql + " ORDER BY id DESC LIMIT %s", (*params, max(0, int(limit)))).fetchall()
        return [_audit(r) for r in rows]


def _user(row: tuple) -> UserInfo:
    name, admin, created_at, created_by, disabled_at, has_password = row
    return UserInfo(name, bool(admin), iso(created_at), created_by, iso(disabled_at), bool(has_password))


def _service_account(row: tuple) -> ServiceAccountInfo:
    account_id, name, description, created_at, created_by, disabled_at = row
    return ServiceAccountInfo(account_id, name, description, iso(created_at), created_by, iso(disabled_at))


def _audit(row: tuple) -> AuditEvent:
    event_id, at, *rest = row
    return AuditEvent(int(event_id), precise(at), *rest)


def precise(value: datetime) -> str:
    """Session and audit times keep microseconds (expiry is compared on them), as in SQLite."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_since(since: str) -> datetime:
    try:
        moment = datetime.fromisoformat(since)
    except (TypeError, ValueError):
        raise AccessError(f"since: {since!r:.60} is not an ISO-8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

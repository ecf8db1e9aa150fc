"""Principals, API keys, role bindings, accounts, sessions and the audit log in the registry's SQLite
database.

``principals`` holds who acts (``user`` or ``service_account``), ``api_keys`` the hashed keys of a
principal, ``role_bindings`` the roles a principal holds per workspace. Creating a key writes all three in
one transaction. ``user_accounts`` holds a user's password hash and admin flag (a user who only holds
roles has none), ``sessions`` the hashed tokens of logins, ``audit_log`` who did what, append-only.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS user_accounts (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    password_hash TEXT,
    admin INTEGER NOT NULL DEFAULT 0,
    password_changed_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT,
    source_ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_principal ON sessions (principal_id);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    workspace TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    source_ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_by_workspace ON audit_log (workspace, id);
"""

_USER_COLUMNS = (
    "SELECT p.name, COALESCE(a.admin, 0), p.created_at, p.created_by, p.disabled_at, "
    "a.password_hash IS NOT NULL FROM principals AS p LEFT JOIN user_accounts AS a ON a.principal_id = p.id "
    "WHERE p.kind = 'user'"
)
_SERVICE_ACCOUNT_COLUMNS = (
    "SELECT id, name, description, created_at, created_by, disabled_at FROM principals "
    "WHERE kind = 'service_account'"
)
_AUDIT_COLUMNS = "SELECT id, at, actor, action, workspace, target, detail, source_ip FROM audit_log"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _precise(moment: datetime) -> str:
    """Session and audit times keep microseconds: expiry is compared on them."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _user(row: tuple) -> UserInfo:
    return UserInfo(row[0], bool(row[1]), row[2], row[3], row[4], bool(row[5]))


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

    # -- users ------------------------------------------------------------------------------------

    def create_user(
        self, name: str, password: str | None = None, *, admin: bool = False, created_by: str = ""
    ) -> UserInfo:
        from featureplane.access.passwords import hash_password

        check_principal_name(name)
        try:
            hashed = hash_password(password) if password is not None else None
        except ValueError as exc:
            raise AccessError(str(exc)) from None
        principal, now = f"user:{name}", _now()
        with self.db.transaction() as con:
            if con.execute("SELECT 1 FROM user_accounts WHERE principal_id = ?", (principal,)).fetchone():
                raise AccessError(f"user {name!r} already exists")
            con.execute(
                "INSERT OR IGNORE INTO principals (id, kind, name, created_at, created_by) "
                "VALUES (?, 'user', ?, ?, ?)",
                (principal, name, now, created_by),
            )
            con.execute(
                "INSERT INTO user_accounts (principal_id, password_hash, admin, password_changed_at) "
                "VALUES (?, ?, ?, ?)",
                (principal, hashed, int(admin), now if hashed else None),
            )
            row = con.execute(_USER_COLUMNS + " AND p.id = ?", (principal,)).fetchone()
        return _user(row)

    def user(self, name: str) -> UserInfo:
        row = self.db.connection().execute(_USER_COLUMNS + " AND p.id = ?", (f"user:{name}",)).fetchone()
        if row is None:
            raise AccessError(f"no user {name!r}")
        return _user(row)

    def list_users(self) -> list[UserInfo]:
        rows = self.db.connection().execute(_USER_COLUMNS + " ORDER BY p.name").fetchall()
        return [_user(r) for r in rows]

    def disable_user(self, name: str, disabled_by: str = "") -> UserInfo:
        principal, now = f"user:{name}", _now()
        with self.db.transaction() as con:
            if con.execute(_USER_COLUMNS + " AND p.id = ?", (principal,)).fetchone() is None:
                raise AccessError(f"no user {name!r}")
            con.execute(
                "UPDATE principals SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?", (now, principal)
            )
            con.execute(
                "UPDATE sessions SET revoked_at = ? WHERE principal_id = ? AND revoked_at IS NULL",
                (_precise(datetime.now(UTC)), principal),
            )
            row = con.execute(_USER_COLUMNS + " AND p.id = ?", (principal,)).fetchone()
        return _user(row)

    def set_password(self, name: str, password: str) -> None:
        from featureplane.access.passwords import hash_password

        try:
            hashed = hash_password(password)
        except ValueError as exc:
            raise AccessError(str(exc)) from None
        principal = f"user:{name}"
        with self.db.transaction() as con:
            if con.execute(_USER_COLUMNS + " AND p.id = ?", (principal,)).fetchone() is None:
                raise AccessError(f"no user {name!r}")
            con.execute(
                "INSERT INTO user_accounts (principal_id, password_hash, password_changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (principal_id) DO UPDATE SET password_hash = excluded.password_hash, "
                "password_changed_at = excluded.password_changed_at",
                (principal, hashed, _now()),
            )

    def verify_password(self, name: str, password: str) -> UserInfo | None:
        from featureplane.access import passwords

        con = self.db.connection()
        row = con.execute(
            "SELECT a.password_hash, p.disabled_at FROM principals AS p "
            "JOIN user_accounts AS a ON a.principal_id = p.id WHERE p.id = ?",
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
        principal, now = f"service_account:{name}", _now()
        with self.db.transaction() as con:
            try:
                con.execute(
                    "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                    "VALUES (?, 'service_account', ?, ?, ?, ?)",
                    (principal, name, description, now, created_by),
                )
            except sqlite3.IntegrityError:
                raise AccessError(f"service account {name!r} already exists") from None
        return ServiceAccountInfo(principal, name, description, now, created_by)

    def service_account(self, account_id: str) -> ServiceAccountInfo:
        principal = (
            account_id if account_id.startswith("service_account:") else f"service_account:{account_id}"
        )
        row = self.db.connection().execute(_SERVICE_ACCOUNT_COLUMNS + " AND id = ?", (principal,)).fetchone()
        if row is None:
            raise AccessError(f"no service account {account_id!r}")
        return ServiceAccountInfo(*row)

    def list_service_accounts(self) -> list[ServiceAccountInfo]:
        rows = self.db.connection().execute(_SERVICE_ACCOUNT_COLUMNS + " ORDER BY created_at, id").fetchall()
        return [ServiceAccountInfo(*r) for r in rows]

    def add_api_key(self, principal_id: str, *, description: str = "", created_by: str = "") -> CreatedKey:
        key_id, secret = new_key()
        now = _now()
        with self.db.transaction() as con:
            row = con.execute("SELECT disabled_at FROM principals WHERE id = ?", (principal_id,)).fetchone()
            if row is None:
                raise AccessError(f"no principal {principal_id!r}")
            if row[0] is not None:
                raise AccessError(f"{principal_id} is disabled")
            con.execute(
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, principal_id, hash_key(secret), description, now, created_by),
            )
            bindings = self._bindings(con, principal_id)
        return CreatedKey(ApiKeyInfo(key_id, principal_id, bindings, description, now, created_by), secret)

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, user: str, ttl_seconds: float, *, source_ip: str = "") -> CreatedSession:
        principal = f"user:{user}"
        session_id, token = new_session_token()
        created = datetime.now(UTC)
        expires = created + timedelta(seconds=ttl_seconds)
        with self.db.transaction() as con:
            row = con.execute(
                "SELECT disabled_at FROM principals WHERE id = ? AND kind = 'user'", (principal,)
            ).fetchone()
            if row is None or row[0] is not None:
                raise AccessError(f"no active user {user!r}")
            con.execute(
                "INSERT INTO sessions (id, principal_id, token_hash, created_at, expires_at, source_ip) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, principal, hash_key(token), _precise(created), _precise(expires), source_ip),
            )
        info = SessionInfo(session_id, user, _precise(created), _precise(expires), None, source_ip)
        return CreatedSession(info, token)

    def session(self, token: str) -> SessionInfo | None:
        session_id = session_id_of(token)
        if session_id is None:
            return None
        row = (
            self.db.connection()
            .execute(
                "SELECT s.token_hash, p.name, s.created_at, s.expires_at, s.source_ip FROM sessions AS s "
                "JOIN principals AS p ON p.id = s.principal_id "
                "WHERE s.id = ? AND s.revoked_at IS NULL AND p.disabled_at IS NULL",
                (session_id,),
            )
            .fetchone()
        )
        if row is None or not same_hash(row[0], hash_key(token)):
            return None
        if datetime.fromisoformat(row[3]) <= datetime.now(UTC):
            return None
        return SessionInfo(session_id, row[1], row[2], row[3], None, row[4])

    def revoke_session(self, token_or_id: str) -> None:
        session_id = session_id_of(token_or_id) or token_or_id
        with self.db.transaction() as con:
            con.execute(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_precise(datetime.now(UTC)), session_id),
            )

    def revoke_user_sessions(self, user: str) -> int:
        now = _precise(datetime.now(UTC))
        with self.db.transaction() as con:
            cursor = con.execute(
                "UPDATE sessions SET revoked_at = ? WHERE principal_id = ? AND revoked_at IS NULL "
                "AND expires_at > ?",
                (now, f"user:{user}", now),
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
        at = _precise(datetime.now(UTC))
        with self.db.transaction() as con:
            cursor = con.execute(
                "INSERT INTO audit_log (at, actor, action, workspace, target, detail, source_ip) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, actor, action, workspace or "", target or "", detail or "", source_ip or ""),
            )
            event_id = int(cursor.lastrowid or 0)
        return AuditEvent(
            event_id, at, actor, action, workspace or "", target or "", detail or "", source_ip or ""
        )

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
        where, params = _audit_filters(actor, action, workspace, since, before_id)
        sql = (
            _AUDIT_COLUMNS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        )
        rows = self.db.connection().execute(sql, (*params, max(0, int(limit)))).fetchall()
        return [AuditEvent(*r) for r in rows]


def _audit_filters(
    actor: str | None, action: str | None, workspace: str | None, since: str | None, before_id: int | None
) -> tuple[list[str], list]:
    where: list[str] = []
    params: list = []
    for column, value in (("actor", actor), ("action", action), ("workspace", workspace)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            raise AccessError(f"since: {since!r:.60} is not an ISO-8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        where.append("at >= ?")
        params.append(_precise(moment.astimezone(UTC)))
    if before_id is not None:
        where.append("id < ?")
        params.append(int(before_id))
    return where, params

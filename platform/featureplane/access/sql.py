"""Principals, API keys, role bindings, accounts, sessions and the audit log in a SQL database: the
logic the SQLite and PostgreSQL stores share, written once.

``principals`` holds who acts (``user`` or ``service_account``), ``api_keys`` the hashed keys of a
principal, ``role_bindings`` the roles a principal holds per workspace. Creating a key writes all three
in one transaction; disabling a user revokes their sessions in the same one. ``user_accounts`` holds a
user's password hash (argon2id) and admin flag (a user who only holds roles has none), ``sessions``
the hashed tokens of logins, ``audit_log`` who did what, append-only.

A backend (``sqlite.py``, ``postgres.py``) supplies the connections, how times are stored and shown,
its row locks, and its parameter style: statements here are written with ``?`` placeholders.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

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

_KEY_FIELDS = "id, principal_id, description, created_at, created_by, revoked_at"
_USER_COLUMNS = (
    "SELECT p.name, coalesce(a.admin, false), p.created_at, p.created_by, p.disabled_at, "
    "a.password_hash IS NOT NULL FROM principals AS p LEFT JOIN user_accounts AS a ON a.principal_id = p.id "
    "WHERE p.kind = 'user'"
)
_SERVICE_ACCOUNT_FIELDS = "id, name, description, created_at, created_by, disabled_at"
_SERVICE_ACCOUNT_COLUMNS = f"SELECT {_SERVICE_ACCOUNT_FIELDS} FROM principals WHERE kind = 'service_account'"
_AUDIT_FIELDS = "id, at, actor, action, workspace, target, detail, source_ip"


class SQLAccessStore(AccessStore):
    # Row locks a backend takes where concurrent writers must wait (SQLite's write transactions
    # already run one at a time).
    FOR_SHARE = ""
    FOR_UPDATE_USER = ""

    # -- what a backend supplies -----------------------------------------------------------------

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """A connection for reads."""

    def _snapshot(self) -> AbstractContextManager[Any]:
        """A connection whose reads see one state of the database (several statements)."""
        return self._read()

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A connection inside one transaction: committed on success, rolled back on any error."""

    def _sql(self, statement: str) -> str:
        """The statement in the driver's parameter style."""
        return statement

    @abstractmethod
    def _now(self) -> Any:
        """The current time as creation and revocation times are stored (shown to the second)."""

    @abstractmethod
    def _now_precise(self) -> Any:
        """The current time as session and audit times are stored (to the microsecond: expiry is
        compared on them)."""

    @abstractmethod
    def _stored_at(self, moment: datetime) -> Any:
        """An aware datetime as session and audit times are stored."""

    @abstractmethod
    def _shown(self, value: Any) -> str | None:
        """A stored creation or revocation time as ISO-8601 text to the second."""

    @abstractmethod
    def _shown_precise(self, value: Any) -> str:
        """A stored session or audit time as ISO-8601 text to the microsecond."""

    @abstractmethod
    def _passed(self, value: Any) -> bool:
        """Whether a stored session time is now or in the past."""

    # -- helpers ---------------------------------------------------------------------------------

    def _run(self, con: Any, statement: str, params: tuple | list = ()) -> Any:
        return con.execute(self._sql(statement), params)

    def _bindings(self, con: Any, principal: str) -> tuple[RoleBinding, ...]:
        rows = self._run(
            con,
            "SELECT workspace, role FROM role_bindings WHERE principal_id = ? ORDER BY workspace, role",
            (principal,),
        ).fetchall()
        return tuple(RoleBinding(principal, w, r) for w, r in rows)

    def _key_info(self, con: Any, row: tuple) -> ApiKeyInfo:
        key_id, principal, description, created_at, created_by, revoked_at = row
        bindings = self._bindings(con, principal)
        return ApiKeyInfo(
            key_id,
            principal,
            bindings,
            description,
            self._shown(created_at),
            created_by,
            self._shown(revoked_at),
        )  # type: ignore[arg-type]

    def _user_row(self, con: Any, principal: str, *, lock: bool = False) -> tuple | None:
        lock_clause = self.FOR_UPDATE_USER if lock else ""
        return self._run(con, _USER_COLUMNS + " AND p.id = ?" + lock_clause, (principal,)).fetchone()

    def _user(self, row: tuple) -> UserInfo:
        name, admin, created_at, created_by, disabled_at, has_password = row
        return UserInfo(
            name,
            bool(admin),
            self._shown(created_at),
            created_by,
            self._shown(disabled_at),
            bool(has_password),
        )  # type: ignore[arg-type]

    def _service_account(self, row: tuple) -> ServiceAccountInfo:
        account_id, name, description, created_at, created_by, disabled_at = row
        return ServiceAccountInfo(
            account_id, name, description, self._shown(created_at), created_by, self._shown(disabled_at)
        )  # type: ignore[arg-type]

    def _audit(self, row: tuple) -> AuditEvent:
        event_id, at, *rest = row
        return AuditEvent(int(event_id), self._shown_precise(at), *rest)

    # -- API keys --------------------------------------------------------------------------------

    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        api_key_role(role)
        binding_workspace(workspace)
        key_id, secret = new_key()
        principal = f"service_account:{key_id}"
        moment = self._now()
        with self._write() as con:
            self._run(
                con,
                "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                "VALUES (?, 'service_account', ?, ?, ?, ?)",
                (principal, f"api-key-{key_id}", description, moment, created_by),
            )
            self._run(
                con,
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, principal, hash_key(secret), description, moment, created_by),
            )
            self._run(
                con,
                "INSERT INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (principal, workspace, role, moment, created_by),
            )
        binding = RoleBinding(principal, workspace, role)
        info = ApiKeyInfo(key_id, principal, (binding,), description, self._shown(moment), created_by)  # type: ignore[arg-type]
        return CreatedKey(info, secret)

    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        sql = f"SELECT {_KEY_FIELDS} FROM api_keys"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE principal_id IN (SELECT principal_id FROM role_bindings WHERE workspace = ?)"
            params = (workspace,)
        with self._snapshot() as con:
            rows = self._run(con, sql + " ORDER BY created_at, id", params).fetchall()
            return [self._key_info(con, row) for row in rows]

    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        key_id = bare_key_id(key_id)
        with self._write() as con:
            # Revoking twice keeps the first revocation's time and author.
            self._run(
                con,
                "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (self._now(), revoked_by, key_id),
            )
            row = self._run(con, f"SELECT {_KEY_FIELDS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise no_key(key_id)
            return self._key_info(con, row)

    def active_keys(self) -> list[dict]:
        with self._snapshot() as con:
            keys = self._run(
                con,
                "SELECT k.id, k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
                "WHERE k.revoked_at IS NULL AND p.disabled_at IS NULL ORDER BY k.id",
            ).fetchall()
            bindings: dict[str, list[list[str]]] = {}
            for principal, workspace, role in self._run(
                con,
                "SELECT principal_id, workspace, role FROM role_bindings ORDER BY principal_id, workspace, role",
            ).fetchall():
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
        with self._read() as con:
            row = self._run(
                con,
                "SELECT k.principal_id, k.key_hash FROM api_keys AS k JOIN principals AS p ON p.id = k.principal_id "
                "WHERE k.id = ? AND k.revoked_at IS NULL AND p.disabled_at IS NULL",
                (key_id,),
            ).fetchone()
            if row is None or not same_hash(row[1], hash_key(key)):
                return None
            return Identity(key_id, row[0], self._bindings(con, row[0]))

    # -- role bindings ---------------------------------------------------------------------------

    def identity(self, principal_id: str) -> Identity:
        with self._read() as con:
            return Identity("", principal_id, self._bindings(con, principal_id))

    def assign_role(self, principal_id: str, workspace: str, role: str, assigned_by: str = "") -> RoleBinding:
        workspace_role(role)
        binding_workspace(workspace)
        kind, name = principal_kind(principal_id)
        moment = self._now()
        with self._write() as con:
            if kind == "user":
                self._run(
                    con,
                    "INSERT INTO principals (id, kind, name, created_at, created_by) VALUES (?, 'user', ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (principal_id, name, moment, assigned_by),
                )
            elif self._run(con, "SELECT 1 FROM principals WHERE id = ?", (principal_id,)).fetchone() is None:
                raise AccessError(f"no service account {principal_id!r} (see `featureplane api-key list`)")
            self._run(
                con,
                "INSERT INTO role_bindings (principal_id, workspace, role, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (principal_id, workspace, role, moment, assigned_by),
            )
        return RoleBinding(principal_id, workspace, role)

    def remove_role(self, principal_id: str, workspace: str, role: str) -> None:
        with self._write() as con:
            cursor = self._run(
                con,
                "DELETE FROM role_bindings WHERE principal_id = ? AND workspace = ? AND role = ?",
                (principal_id, workspace, role),
            )
            if cursor.rowcount == 0:
                raise AccessError(f"{principal_id} has no role {role!r} on workspace {workspace!r}")

    def bindings(self, workspace: str | None = None) -> list[RoleBinding]:
        sql = "SELECT principal_id, workspace, role FROM role_bindings"
        params: tuple = ()
        if workspace is not None:
            sql += " WHERE workspace IN (?, '*')"
            params = (workspace,)
        with self._read() as con:
            rows = self._run(con, sql + " ORDER BY workspace, principal_id, role", params).fetchall()
        return [RoleBinding(*row) for row in rows]

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
        principal, moment = f"user:{name}", self._now()
        with self._write() as con:
            self._run(
                con,
                "INSERT INTO principals (id, kind, name, created_at, created_by) VALUES (?, 'user', ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (principal, name, moment, created_by),
            )
            added = self._run(
                con,
                "INSERT INTO user_accounts (principal_id, password_hash, admin, password_changed_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (principal_id) DO NOTHING RETURNING principal_id",
                (principal, hashed, bool(admin), moment if hashed else None),
            ).fetchall()
            if not added:
                raise AccessError(f"user {name!r} already exists")
            row = self._user_row(con, principal)
        return self._user(row)  # type: ignore[arg-type]

    def user(self, name: str) -> UserInfo:
        with self._read() as con:
            row = self._user_row(con, f"user:{name}")
        if row is None:
            raise AccessError(f"no user {name!r:.140}")
        return self._user(row)

    def list_users(self) -> list[UserInfo]:
        with self._read() as con:
            rows = self._run(con, _USER_COLUMNS + " ORDER BY p.name").fetchall()
        return [self._user(r) for r in rows]

    def disable_user(self, name: str, disabled_by: str = "") -> UserInfo:
        principal = f"user:{name}"
        with self._write() as con:
            if self._user_row(con, principal, lock=True) is None:
                raise AccessError(f"no user {name!r:.140}")
            self._run(
                con,
                "UPDATE principals SET disabled_at = coalesce(disabled_at, ?) WHERE id = ?",
                (self._now(), principal),
            )
            self._run(
                con,
                "UPDATE sessions SET revoked_at = ? WHERE principal_id = ? AND revoked_at IS NULL",
                (self._now_precise(), principal),
            )
            row = self._user_row(con, principal)
        return self._user(row)  # type: ignore[arg-type]

    def set_password(self, name: str, password: str) -> None:
        from featureplane.access.passwords import hash_password

        try:
            hashed = hash_password(password)
        except ValueError as exc:
            raise AccessError(str(exc)) from None
        principal = f"user:{name}"
        with self._write() as con:
            if self._user_row(con, principal, lock=True) is None:
                raise AccessError(f"no user {name!r:.140}")
            self._run(
                con,
                "INSERT INTO user_accounts (principal_id, password_hash, password_changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (principal_id) DO UPDATE SET password_hash = excluded.password_hash, "
                "password_changed_at = excluded.password_changed_at",
                (principal, hashed, self._now()),
            )

    def verify_password(self, name: str, password: str) -> UserInfo | None:
        from featureplane.access import passwords

        with self._read() as con:
            row = self._run(
                con,
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
        principal = f"service_account:{name}"
        with self._write() as con:
            rows = self._run(
                con,
                "INSERT INTO principals (id, kind, name, description, created_at, created_by) "
                "VALUES (?, 'service_account', ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING "
                f"RETURNING {_SERVICE_ACCOUNT_FIELDS}",
                (principal, name, description, self._now(), created_by),
            ).fetchall()
        if not rows:
            raise AccessError(f"service account {name!r} already exists")
        return self._service_account(rows[0])

    def service_account(self, account_id: str) -> ServiceAccountInfo:
        principal = (
            account_id if account_id.startswith("service_account:") else f"service_account:{account_id}"
        )
        with self._read() as con:
            row = self._run(con, _SERVICE_ACCOUNT_COLUMNS + " AND id = ?", (principal,)).fetchone()
        if row is None:
            raise AccessError(f"no service account {account_id!r:.140}")
        return self._service_account(row)

    def list_service_accounts(self) -> list[ServiceAccountInfo]:
        with self._read() as con:
            rows = self._run(con, _SERVICE_ACCOUNT_COLUMNS + " ORDER BY created_at, id").fetchall()
        return [self._service_account(r) for r in rows]

    def add_api_key(self, principal_id: str, *, description: str = "", created_by: str = "") -> CreatedKey:
        key_id, secret = new_key()
        moment = self._now()
        with self._write() as con:
            # FOR SHARE: a concurrent disable waits for the key to exist, then stops it too.
            row = self._run(
                con, "SELECT disabled_at FROM principals WHERE id = ?" + self.FOR_SHARE, (principal_id,)
            ).fetchone()
            if row is None:
                raise AccessError(f"no principal {principal_id!r:.140}")
            if row[0] is not None:
                raise AccessError(f"{principal_id} is disabled")
            self._run(
                con,
                "INSERT INTO api_keys (id, principal_id, key_hash, description, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, principal_id, hash_key(secret), description, moment, created_by),
            )
            bindings = self._bindings(con, principal_id)
        info = ApiKeyInfo(key_id, principal_id, bindings, description, self._shown(moment), created_by)  # type: ignore[arg-type]
        return CreatedKey(info, secret)

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, user: str, ttl_seconds: float, *, source_ip: str = "") -> CreatedSession:
        principal = f"user:{user}"
        session_id, token = new_session_token()
        created = datetime.now(UTC)
        expires = created + timedelta(seconds=ttl_seconds)
        stored = (self._stored_at(created), self._stored_at(expires))
        with self._write() as con:
            row = self._run(
                con,
                "SELECT disabled_at FROM principals WHERE id = ? AND kind = 'user'" + self.FOR_SHARE,
                (principal,),
            ).fetchone()
            if row is None or row[0] is not None:
                raise AccessError(f"no active user {user!r:.140}")
            self._run(
                con,
                "INSERT INTO sessions (id, principal_id, token_hash, created_at, expires_at, source_ip) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, principal, hash_key(token), *stored, source_ip),
            )
        shown = [self._shown_precise(value) for value in stored]
        return CreatedSession(SessionInfo(session_id, user, *shown, None, source_ip), token)

    def session(self, token: str) -> SessionInfo | None:
        session_id = session_id_of(token)
        if session_id is None:
            return None
        with self._read() as con:
            row = self._run(
                con,
                "SELECT s.token_hash, p.name, s.created_at, s.expires_at, s.source_ip FROM sessions AS s "
                "JOIN principals AS p ON p.id = s.principal_id "
                "WHERE s.id = ? AND s.revoked_at IS NULL AND p.disabled_at IS NULL",
                (session_id,),
            ).fetchone()
        if row is None or not same_hash(row[0], hash_key(token)) or self._passed(row[3]):
            return None
        created, expires = self._shown_precise(row[2]), self._shown_precise(row[3])
        return SessionInfo(session_id, row[1], created, expires, None, row[4])

    def revoke_session(self, token_or_id: str) -> None:
        session_id = session_id_of(token_or_id) or token_or_id
        with self._write() as con:
            self._run(
                con,
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self._now_precise(), session_id),
            )

    def revoke_user_sessions(self, user: str) -> int:
        moment = self._now_precise()
        with self._write() as con:
            cursor = self._run(
                con,
                "UPDATE sessions SET revoked_at = ? WHERE principal_id = ? AND revoked_at IS NULL "
                "AND expires_at > ?",
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
        with self._write() as con:
            (row,) = self._run(
                con,
                "INSERT INTO audit_log (at, actor, action, workspace, target, detail, source_ip) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_AUDIT_FIELDS}",
                (self._now_precise(), *values),
            ).fetchall()  # all: SQLite finishes a RETURNING statement only once its rows are read
        return self._audit(row)

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
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(self._stored_at(parse_since(since)))
        if before_id is not None:
            where.append("id < ?")
            params.append(int(before_id))
        sql = f"SELECT {_AUDIT_FIELDS} FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as con:
            rows = self._run(con, sql + " ORDER BY id DESC LIMIT ?", (*params, max(0, int(limit)))).fetchall()
        return [self._audit(r) for r in rows]


def parse_since(since: str) -> datetime:
    """An audit filter's ISO-8601 time, naive meaning UTC."""
    try:
        moment = datetime.fromisoformat(since)
    except (TypeError, ValueError):
        raise AccessError(f"since: {since!r:.60} is not an ISO-8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def precise(value: datetime) -> str:
    """An aware time as ISO-8601 text in UTC to the microsecond."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

"""The access store in the registry's SQLite database (``sql.py`` holds the logic, shared with
PostgreSQL). Creation and revocation times are stored as ISO-8601 text to the second, session and
audit times to the microsecond; write transactions (``BEGIN IMMEDIATE``) run one at a time, so no row
locks are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featureplane.access.sql import SQLAccessStore, precise
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


class SQLiteAccessStore(SQLAccessStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = ThreadLocalSQLite(self.path, SCHEMA, timeout=30)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        yield self.db.connection()

    def _write(self) -> Any:
        return self.db.transaction()

    def _now(self) -> str:
        return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def _now_precise(self) -> str:
        return precise(datetime.now(UTC))

    def _stored_at(self, moment: datetime) -> str:
        return precise(moment)

    def _shown(self, value: Any) -> str | None:
        return value

    def _shown_precise(self, value: Any) -> str:
        return value

    def _passed(self, value: Any) -> bool:
        return datetime.fromisoformat(value) <= datetime.now(UTC)

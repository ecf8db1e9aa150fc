"""The connection to Snowflake shared by the Snowflake engine and offline store.

Settings come from ``featureplane.yaml`` (``engine: {type: snowflake, ...}``), with secrets read from the
environment through ``${VAR}``. Secrets never leave this module: settings, clients and errors print them
as ``***``, and every error message is scrubbed of their values before it is raised.

The engine and the offline store of one process share one session (one login) when their connection
settings are equal, so a transformation's output can stay in a temporary table that the store copies
with ``INSERT ... SELECT``: feature rows never travel through Python on the way to the offline store.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.types import DataType, Timestamp, from_arrow

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("featureplane.snowflake")

# Keys of an engine/offline_store section that hold secrets: never printed, logged or put in errors.
SECRET_KEYS = frozenset(
    {"password", "private_key", "private_key_file_pwd", "private_key_passphrase", "token", "passcode"}
)
CONNECTION_KEYS = (
    "account",
    "user",
    "role",
    "warehouse",
    "database",
    "schema",
    "authenticator",
    "private_key_file",
    "host",
    "port",
    "protocol",
    "login_timeout",
    "network_timeout",
)
SESSION_DEFAULTS = {
    # Timestamps are naive UTC everywhere in featureplane; the session agrees, whatever the account says.
    "TIMEZONE": "UTC",
    "TIMESTAMP_TYPE_MAPPING": "TIMESTAMP_NTZ",
}
HISTORY_SIZE = 2_000

# Snowflake column types for featureplane types (arrays are semi-structured ARRAY values).
SQL_TYPES = {
    "int64": "NUMBER(38,0)",
    "float64": "FLOAT",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP_NTZ(6)",
}
_SIMPLE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class SnowflakeError(RuntimeError):
    """A Snowflake call failed. The message never contains a secret."""


# -- identifiers, literals and types ---------------------------------------------------------------


def quote(identifier: str) -> str:
    """A case-sensitive identifier, exactly as given (featureplane's own tables and columns)."""
    return '"' + identifier.replace('"', '""') + '"'


def user_identifier(identifier: str) -> str:
    """An identifier written by a user: unquoted (so Snowflake folds it to upper case, as it does in
    the user's SQL) when it is a plain name, quoted otherwise."""
    return identifier if _SIMPLE_IDENTIFIER.match(identifier) else quote(identifier)


def user_table(name: str) -> str:
    """``schema.table`` or ``database.schema.table`` as a user wrote it."""
    return ".".join(user_identifier(part) for part in name.split("."))


def literal_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def literal_time(value: datetime) -> str:
    return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP_NTZ(6))"


def sql_type(dtype: DataType) -> str:
    return "ARRAY" if dtype.is_array else SQL_TYPES[dtype.name]


def cast_to(expression: str, declared: DataType, actual_type: str | None = None) -> str:
    """``expression`` as the declared type; zoned timestamps are converted to UTC first."""
    if declared == Timestamp and actual_type in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
        expression = f"CONVERT_TIMEZONE('UTC', {expression})"
    return f"CAST({expression} AS {sql_type(declared)})"


def column_type(type_name: str, scale: int | None, declared: DataType | None = None) -> DataType | None:
    """The featureplane type of a result column (``type_name`` as in the connector's metadata).

    Snowflake arrays carry no element type, so an ARRAY (or VARIANT) column matches a declared array."""
    from featureplane.types import Bool, Float64, Int64, String

    if type_name == "FIXED":
        return Int64 if not scale else Float64
    if type_name in ("REAL", "DECFLOAT"):
        return Float64
    if type_name == "TEXT":
        return String
    if type_name == "BOOLEAN":
        return Bool
    if type_name in ("DATE", "TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        return Timestamp
    if type_name in ("ARRAY", "VARIANT") and declared is not None and declared.is_array:
        return declared
    return None


def conform_arrow(table: pa.Table, fields: list[tuple[str, DataType]]) -> pa.Table:
    """Select ``fields`` from a query result (names matched case-insensitively) with the Arrow types
    the rest of featureplane uses: naive microsecond timestamps, int64, float64, lists."""
    import pyarrow as pa

    from featureplane.types import to_arrow

    by_name = {name.lower(): i for i, name in enumerate(table.column_names)}
    columns = []
    for name, dtype in fields:
        index = by_name.get(name.lower())
        if index is None:
            raise SnowflakeError(
                f"the result has no column {name!r} (columns: {', '.join(table.column_names)})"
            )
        columns.append(_conform_column(table.column(index), dtype, to_arrow(dtype)))
    return pa.Table.from_arrays(columns, schema=pa.schema([(n, to_arrow(t)) for n, t in fields]))


def _conform_column(column: pa.ChunkedArray, dtype: DataType, target: pa.DataType) -> Any:
    import json

    import pyarrow as pa
    import pyarrow.compute as pc

    if dtype.is_array and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        values = [None if v is None else json.loads(v) for v in column.to_pylist()]
        if dtype.element == Timestamp:
            values = [None if v is None else [_array_time(x) for x in v] for v in values]
        return pa.array(values, type=target)
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = pc.cast(column, pa.timestamp(column.type.unit, tz="UTC")).cast(
            pa.timestamp(column.type.unit)
        )
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    return column.cast(target, safe=False) if column.type != target else column


def _array_time(value: Any) -> Any:
    """A time inside an array: an ISO string, or microseconds since 1970 (as aggregate tiles keep the
    times of their last values, exactly)."""
    from datetime import timedelta

    from featureplane.definitions.specs import parse_time

    if value is None:
        return None
    if isinstance(value, int):
        return datetime(1970, 1, 1) + timedelta(microseconds=value)
    return parse_time(value)


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SnowflakeSettings:
    """How to connect: an account, a user, a role, a warehouse and a default database and schema.

    ``secrets`` (password, key-pair passphrase, token) are kept apart and never shown."""

    options: tuple[tuple[str, Any], ...]
    secrets: tuple[tuple[str, str], ...] = field(default=())
    session_parameters: tuple[tuple[str, Any], ...] = field(default=())
    connect_args: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def from_section(cls, section: dict[str, Any], where: str) -> SnowflakeSettings:
        """Settings from an ``engine`` or ``offline_store`` section of featureplane.yaml."""
        options = {k: section[k] for k in CONNECTION_KEYS if section.get(k) not in (None, "")}
        secrets = {k: str(section[k]) for k in SECRET_KEYS if section.get(k) not in (None, "")}
        if "account" not in options:
            raise SnowflakeError(f"{where}: a Snowflake connection needs an account")
        if "user" not in options and options.get("authenticator", "").lower() not in ("oauth",):
            raise SnowflakeError(f"{where}: a Snowflake connection needs a user")
        for key in ("session_parameters", "connect_args"):
            if not isinstance(section.get(key) or {}, dict):
                raise SnowflakeError(f"{where}: {key} must be a mapping")
        parameters = dict(SESSION_DEFAULTS)
        parameters["QUERY_TAG"] = section.get("query_tag") or "featureplane"
        parameters.update(section.get("session_parameters") or {})
        return cls(
            options=tuple(sorted(options.items())),
            secrets=tuple(sorted(secrets.items())),
            session_parameters=tuple(sorted(parameters.items())),
            connect_args=tuple(sorted((section.get("connect_args") or {}).items())),
        )

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    @property
    def key(self) -> str:
        """Equal for settings that can share one session (secrets included, as a hash)."""
        text = repr((self.options, self.secrets, self.session_parameters, self.connect_args))
        return hashlib.sha256(text.encode()).hexdigest()

    def redact(self, text: str) -> str:
        for _, value in self.secrets:
            if len(value) >= 3:
                text = text.replace(value, "***")
        return text

    def describe(self) -> dict[str, Any]:
        """The non-secret settings (for metadata and messages)."""
        options = dict(self.options)
        names = ("account", "user", "role", "warehouse", "database", "schema")
        shown = {k: options[k] for k in names if k in options}
        if self.secrets:
            shown["credentials"] = ", ".join(k for k, _ in self.secrets)
        return shown

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options)
        hidden = ", ".join(f"{k}='***'" for k, _ in self.secrets)
        return f"SnowflakeSettings({', '.join(p for p in (shown, hidden) if p)})"

    __str__ = __repr__

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(self.options)
        secrets = dict(self.secrets)
        if "private_key" in secrets:
            kwargs["private_key"] = _private_key(
                secrets.pop("private_key"), secrets.pop("private_key_passphrase", None)
            )
        if "private_key_passphrase" in secrets:
            kwargs["private_key_file_pwd"] = secrets.pop("private_key_passphrase")
        kwargs.update(secrets)
        kwargs["session_parameters"] = dict(self.session_parameters)
        kwargs.update(dict(self.connect_args))
        kwargs.setdefault("application", "featureplane")
        return kwargs


def _private_key(pem: str, passphrase: str | None) -> Any:
    """A PEM private key (from an environment variable) as the key object the connector takes."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = pem.strip().replace("\\n", "\n")
    try:
        return load_pem_private_key(text.encode(), password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        raise SnowflakeError(
            f"the Snowflake private key is not a readable PEM key ({type(exc).__name__})"
        ) from None


# -- the client ------------------------------------------------------------------------------------


class SnowflakeClient:
    """One Snowflake session: statements, transactions, uploads and a history of the SQL sent."""

    def __init__(self, settings: SnowflakeSettings) -> None:
        self.settings = settings
        self.history: deque[str] = deque(maxlen=HISTORY_SIZE)
        self._connection: Any = None
        self._lock = threading.RLock()
        self._users = 0

    def __repr__(self) -> str:
        return f"SnowflakeClient({self.settings!r})"

    @property
    def connection(self) -> Any:
        if self._connection is None:
            import snowflake.connector

            where = ", ".join(f"{k} {v}" for k, v in self.settings.describe().items() if k != "credentials")
            try:
                self._connection = snowflake.connector.connect(**self.settings.connect_kwargs())
            except snowflake.connector.errors.Error as exc:
                raise self._error(exc, f"cannot connect to Snowflake ({where})") from None
            log.info("connected to Snowflake (%s)", where)
        return self._connection

    def _error(self, exc: BaseException, context: str) -> SnowflakeError:
        text = str(getattr(exc, "msg", None) or exc).strip()
        errno = getattr(exc, "errno", None)
        prefix = f"{errno:06d}: " if isinstance(errno, int) and errno > 0 else ""
        if text.startswith(prefix.strip()):
            prefix = ""
        lines = [line for line in text.splitlines() if line.strip()]
        return SnowflakeError(self.settings.redact(f"{context}: {prefix}{' '.join(lines[:3])}"))

    def _record(self, sql: str) -> None:
        sql = self.settings.redact(sql)
        self.history.append(sql)
        log.debug("snowflake: %s", sql)

    def execute(self, sql: str, params: Any = None) -> Any:
        """Run one statement and return its cursor."""
        import snowflake.connector

        with self._lock:
            cursor = self.connection.cursor()
            self._record(sql)
            try:
                cursor.execute(sql, params)
            except snowflake.connector.errors.Error as exc:
                raise self._error(exc, "Snowflake rejected a statement") from None
            return cursor

    def fetchall(self, sql: str, params: Any = None) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def fetch_arrow(self, sql: str) -> pa.Table:
        return self.execute(sql).fetch_arrow_all(force_return_table=True)

    def fetch_arrow_batches(self, sql: str) -> Iterator[pa.Table]:
        """The result in the chunks Snowflake stores it in, downloaded one at a time."""
        yield from self.execute(sql).fetch_arrow_batches()

    def describe(self, sql: str) -> list[tuple[str, str, int | None]]:
        """The result columns of a query without running it: (name, type name, scale)."""
        import snowflake.connector
        from snowflake.connector.constants import FIELD_ID_TO_NAME

        with self._lock:
            self._record(f"DESCRIBE {sql}")
            try:
                metadata = self.connection.cursor().describe(sql)
            except snowflake.connector.errors.Error as exc:
                raise self._error(exc, "Snowflake cannot compile a query") from None
        return [(m.name, FIELD_ID_TO_NAME[m.type_code], m.scale) for m in metadata]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK when anything fails (no DDL inside: it would commit)."""
        with self._lock:
            self.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    def temporary_name(self, kind: str) -> str:
        return f"FP_{kind}_{uuid.uuid4().hex[:16].upper()}"

    def upload(self, table: pa.Table, name: str, *, temporary: bool = True, quoted: bool = True) -> str:
        """Create a table shaped like ``table`` and load it with ``write_pandas`` (Parquet through a
        temporary stage, then COPY INTO). Returns the table's SQL name."""
        from snowflake.connector.pandas_tools import write_pandas

        columns = []
        for column in table.schema:
            dtype = from_arrow(column.type)
            if dtype is None:
                raise SnowflakeError(f"column {column.name!r} is {column.type}, which cannot be uploaded")
            ident = quote(column.name) if quoted else user_identifier(column.name)
            columns.append(f"{ident} {sql_type(dtype)}")
        target = quote(name) if temporary else user_table(name)
        kind = "TEMPORARY TABLE" if temporary else "TABLE"
        self.execute(f"CREATE OR REPLACE {kind} {target} ({', '.join(columns)})")
        if table.num_rows:
            parts = name.split(".")
            with self._lock:
                self._record(f"write_pandas {target} ({table.num_rows} rows)")
                try:
                    write_pandas(
                        self.connection,
                        _upload_frame(table),
                        parts[-1],
                        database=parts[-3] if len(parts) > 2 else None,
                        schema=parts[-2] if len(parts) > 1 else None,
                        quote_identifiers=quoted,
                        use_logical_type=True,
                    )
                except Exception as exc:
                    raise self._error(exc, f"uploading {table.num_rows} rows to {target} failed") from None
        return target

    def drop_quietly(self, relation: str) -> None:
        with contextlib.suppress(SnowflakeError):
            self.execute(f"DROP TABLE IF EXISTS {relation}")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = None


def _upload_frame(table: pa.Table) -> Any:
    """A pandas frame write_pandas turns into the right Parquet types (naive UTC microseconds)."""
    import pyarrow as pa

    columns = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", "UTC"), safe=False).cast(pa.timestamp("us"))
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names).to_pandas()


class UsesSnowflake:
    """A part (engine, offline store) that opens the process's shared client for its settings on first
    use and gives it back on close."""

    settings: SnowflakeSettings
    _client: SnowflakeClient | None = None

    @property
    def client(self) -> SnowflakeClient:
        if self._client is None:
            self._client = acquire_client(self.settings)
        return self._client

    def release(self) -> None:
        if self._client is not None:
            release_client(self._client)
            self._client = None


_clients: dict[str, SnowflakeClient] = {}
_clients_lock = threading.Lock()


def acquire_client(settings: SnowflakeSettings) -> SnowflakeClient:
    """The process's client for these settings (created on first use); give it back with release."""
    with _clients_lock:
        client = _clients.get(settings.key)
        if client is None:
            client = _clients[settings.key] = SnowflakeClient(settings)
        client._users += 1
        return client


def release_client(client: SnowflakeClient) -> None:
    with _clients_lock:
        client._users -= 1
        if client._users <= 0:
            _clients.pop(client.settings.key, None)
            client.close()

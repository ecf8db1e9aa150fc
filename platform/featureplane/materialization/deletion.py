"""Deleting entities' rows from a feature view's stores (``FeatureView.delete_keys``, the right to be
forgotten).

1. Validate every key against the view's join keys (types, nulls), in one streaming pass: a bad key
   anywhere deletes nothing.
2. Take the lock materialization takes for the view (a FeatureTable's ingest lock), waiting at most
   ``wait_seconds``: a delete never interleaves with a write of the same view.
3. In chunks of ``chunk_size`` keys: delete from the offline store (one commit per chunk), then from the
   online store.

Offline goes first because the online store is derived from it: every online sync writes the offline
store's latest rows, so a key deleted online first could be written back by a sync before its offline
rows go. Deleted offline first, nothing can bring it back. A delete killed between the two stores leaves
the key gone offline and still online; running it again deletes it online too (every step is a no-op
for keys already gone), and so does the view's next materialization: the delete committed a new offline
version that the online sync marker does not match, so that sync compares every key and removes the
ones without rows. A finished delete moves the marker to the new version when it was current before.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec, FieldSpec
from featureplane.errors import FeatureplaneError
from featureplane.util.locks import LockTimeout, file_lock_within

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

CHUNK_KEYS = 100_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FAILED_KEYS_SHOWN = 20


class DeletionError(FeatureplaneError, ValueError):
    """The delete was refused before anything was deleted: ``code`` is ``invalid`` (bad keys or
    choice of stores), ``not_found`` (no such view) or ``busy`` (the view stayed locked)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class DeletionIncomplete(FeatureplaneError):
    """Some keys could not be deleted from a store; ``report`` says which. Running it again finishes."""

    def __init__(self, message: str, report: DeletionReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class StoreDeletion:
    """What one store did: keys asked for, rows removed (online: rows or items), keys that failed."""

    store: str
    keys: int = 0
    rows: int = 0
    failed_keys: list[tuple] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "keys": self.keys,
            "rows": self.rows,
            "failed_keys": [list(k) for k in self.failed_keys],
        }


@dataclass
class DeletionReport:
    workspace: str
    view: str
    table_id: str
    keys: int = 0
    offline: StoreDeletion | None = None
    online: StoreDeletion | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "view": self.view,
            "table_id": self.table_id,
            "keys": self.keys,
            "offline": self.offline.to_json() if self.offline else None,
            "online": self.online.to_json() if self.online else None,
        }


# -- keys ---------------------------------------------------------------------------------------------


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _coerce(key: FieldSpec, value: Any, where: str, from_text: bool) -> Any:
    """``value`` as the join key's type, or a DeletionError naming where it came from."""
    kind = key.type.name
    if value is None or (from_text and value == ""):
        raise DeletionError(f"{where}: join key {key.name!r} is empty; every key needs a value")
    try:
        if kind == "string":
            if isinstance(value, str):
                return value
        elif kind == "int64":
            number = None
            if from_text and isinstance(value, str):
                number = int(value.strip())
            elif _is_integer(value):
                number = int(value)
            if number is not None and INT64_MIN <= number <= INT64_MAX:
                return number
        elif kind == "float64":
            if from_text and isinstance(value, str):
                return float(value)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif kind == "bool":
            if from_text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, bool):
                return value
        elif kind == "timestamp":
            from featureplane.definitions.specs import parse_time

            if isinstance(value, str):
                return parse_time(value)
            if isinstance(value, datetime):
                return parse_time(value.isoformat())
    except (ValueError, OverflowError):
        pass
    raise DeletionError(
        f"{where}: join key {key.name!r} must be {key.type}, got {value!r:.80}"
        f"{'' if from_text else f' ({type(value).__name__})'}"
    )


def _is_integer(value: Any) -> bool:
    """A Python or numpy integer (not a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or getattr(getattr(value, "dtype", None), "kind", "") in ("i", "u")


def coerce_key(view: FeatureViewSpec, values: Sequence[Any], where: str, from_text: bool = False) -> tuple:
    if len(values) != len(view.join_keys):
        raise DeletionError(
            f"{where}: expected {len(view.join_keys)} value(s) ({', '.join(view.join_key_names)}), "
            f"got {len(values)}"
        )
    return tuple(_coerce(k, v, where, from_text) for k, v in zip(view.join_keys, values, strict=True))


class CsvKeys:
    """The keys of a CSV file whose header names the view's join keys; iterable more than once (each
    pass reads the file again, so a million keys never sit in memory)."""

    def __init__(self, path: str | Path, view: FeatureViewSpec) -> None:
        self.path = Path(path)
        self.view = view

    def __iter__(self) -> Iterator[tuple]:
        try:
            handle = self.path.open(newline="", encoding="utf-8-sig")  # spreadsheets write a BOM
        except OSError as exc:
            raise DeletionError(f"{self.path}: cannot read the keys file ({exc.strerror or exc})") from None
        with handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DeletionError(
                    f"{self.path}: the keys file is empty; its first line must name the join keys"
                )
            names = [h.strip() for h in header]
            wanted = self.view.join_key_names
            if sorted(names) != sorted(wanted):
                raise DeletionError(
                    f"{self.path}: line 1: the header must name the join keys of {self.view.name!r} "
                    f"({', '.join(wanted)}), got {', '.join(names) or 'nothing'}"
                )
            order = [names.index(k) for k in wanted]
            try:
                for line, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) != len(names):
                        raise DeletionError(
                            f"{self.path}: line {line}: expected {len(names)} field(s), got {len(row)}"
                        )
                    yield coerce_key(self.view, [row[i] for i in order], f"{self.path}: line {line}", True)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DeletionError(f"{self.path}: not a readable CSV file: {exc}") from None


def keys_from(view: FeatureViewSpec, keys: Any) -> list[tuple]:
    """Keys given in Python: a pandas DataFrame or Arrow table with the join-key columns, dicts, tuples,
    or plain values when the view has one join key."""
    import pyarrow as pa

    wanted = view.join_key_names
    what = f"delete_keys of {view.name!r}"
    columns = None
    if isinstance(keys, pa.Table):
        columns = keys.column_names
        rows: Iterable[Any] = keys.to_pylist()
    elif hasattr(keys, "to_dict") and hasattr(keys, "columns"):  # a pandas DataFrame
        columns = [str(c) for c in keys.columns]
        rows = keys.to_dict("records")
    elif isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise DeletionError(f"{what}: keys must be a DataFrame or a list of keys, got {type(keys).__name__}")
    else:
        rows = keys
    if columns is not None and sorted(columns) != sorted(wanted):
        raise DeletionError(
            f"{what}: the keys' columns must be the join keys ({', '.join(wanted)}), got {', '.join(columns)}"
        )
    out = []
    for n, row in enumerate(rows):
        where = f"{what}: key {n}"
        if isinstance(row, dict):
            if sorted(row) != sorted(wanted):
                raise DeletionError(
                    f"{where}: expected fields {', '.join(wanted)}, got {', '.join(map(str, row))}"
                )
            values = [None if _missing(row[k]) else row[k] for k in wanted]
        elif isinstance(row, tuple | list):
            values = list(row)
        else:
            values = [row]
        out.append(coerce_key(view, values, where))
    return out


def _missing(value: Any) -> bool:
    try:
        return value != value  # NaN, NaT
    except (TypeError, ValueError):
        return False


# -- deleting -----------------------------------------------------------------------------------------


def _keys_table(view: FeatureViewSpec, chunk: list[tuple]) -> pa.Table:
    import pyarrow as pa

    from featureplane.types import to_arrow

    columns = list(zip(*chunk, strict=True)) if chunk else [()] * len(view.join_keys)
    return pa.table(
        {k.name: pa.array(list(c), to_arrow(k.type)) for k, c in zip(view.join_keys, columns, strict=True)}
    )


def _lock(runtime: Runtime, view: FeatureViewSpec, table_id: str) -> Path:
    """The lock its writers hold: the ingest fold's for a feature table, else the materialization's."""
    from featureplane.ingest.offline import ingest_lock
    from featureplane.materialization.materialize import view_lock

    return ingest_lock(runtime, table_id) if view.kind == "table" else view_lock(runtime, table_id)


def deletable_view(state: WorkspaceState, view_name: str) -> FeatureViewSpec:
    """The view, if it stores rows that can be deleted; a DeletionError otherwise."""
    try:
        view = state.feature_view(view_name)
    except KeyError:
        known = ", ".join(sorted(state.definitions.feature_views)) or "none"
        raise DeletionError(
            f"workspace {state.name!r} has no feature view {view_name!r} (it has: {known})", "not_found"
        ) from None
    if view.is_realtime:
        raise DeletionError(f"feature view {view_name!r} is computed per request and stores no rows")
    if not state.live:
        raise DeletionError(f"workspace {state.name!r} is a development workspace: it stores no feature rows")
    return view


def delete_keys(
    runtime: Runtime,
    state: WorkspaceState,
    view_name: str,
    keys: Iterable[tuple],
    *,
    online: bool = True,
    offline: bool = True,
    wait_seconds: float | None = None,
    chunk_size: int = CHUNK_KEYS,
    progress: Callable[[str], None] | None = None,
) -> DeletionReport:
    """Delete the rows of ``keys`` (validated tuples, or a re-iterable source such as ``CsvKeys``)
    from the view's offline and/or online store. ``keys`` is read twice: once to validate it all,
    once to delete."""
    say = progress or (lambda message: None)
    view = deletable_view(state, view_name)
    table_id = state.table_id(view_name)
    report = DeletionReport(workspace=state.name, view=view_name, table_id=table_id)
    report.keys = sum(1 for _ in keys)
    if report.keys == 0:
        raise DeletionError(f"no keys to delete from {view_name!r}: the list of keys is empty")
    # A batch view's offline table feeds its online rows even with offline=False: it goes too.
    offline = offline and (view.offline or view.is_batch)
    online = online and view.online
    if not (offline or online):
        raise DeletionError(f"nothing to delete from {view_name!r}: no store chosen holds its rows")
    if wait_seconds is None:
        wait_seconds = runtime.config.lifecycle.delete_wait_seconds
    if view.kind == "table" and offline:
        from featureplane.ingest.offline import flush_ingest_log

        flush_ingest_log(runtime, state, [view_name])  # logged records are deleted with the rest
    report.offline = StoreDeletion("offline") if offline else None
    report.online = StoreDeletion("online") if online else None
    try:
        with file_lock_within(_lock(runtime, view, table_id), wait_seconds):
            _delete(runtime, view, table_id, keys, report, chunk_size, say)
    except LockTimeout:
        raise DeletionError(
            f"feature view {view_name!r} of workspace {state.name!r} is being written (a materialization "
            f"or ingest fold holds its lock) and stayed busy for {wait_seconds:g}s; nothing was deleted, "
            "try again when it finishes",
            "busy",
        ) from None
    failed = [s for s in (report.offline, report.online) if s and s.failed_keys]
    if failed:
        shown = "; ".join(
            f"{s.store}: {len(s.failed_keys)} key(s) ({', '.join(map(str, s.failed_keys[:FAILED_KEYS_SHOWN]))})"
            for s in failed
        )
        raise DeletionIncomplete(
            f"{view_name!r}: some keys were not deleted ({shown}); run the same delete again", report
        )
    return report


def _delete(
    runtime: Runtime,
    view: FeatureViewSpec,
    table_id: str,
    keys: Iterable[tuple],
    report: DeletionReport,
    chunk_size: int,
    say: Callable[[str], None],
) -> None:
    from featureplane.online_stores.dynamodb_access import DynamoDBWriteError

    store, online_store = runtime.offline_store, runtime.online_store
    track_marker = view.is_batch and report.offline is not None and report.online is not None
    marker_current = track_marker and online_store.sync_marker(table_id) == store.version(table_id)
    iterator = iter(keys)
    done = 0
    while True:
        chunk = list(dict.fromkeys(islice(iterator, chunk_size)))
        if not chunk:
            break
        if report.offline is not None:
            report.offline.keys += len(chunk)
            report.offline.rows += store.delete_keys(table_id, view, _keys_table(view, chunk))
        if report.online is not None:
            report.online.keys += len(chunk)
            try:
                report.online.rows += online_store.delete(table_id, chunk)
            except DynamoDBWriteError as exc:
                failed = {k.split("|", 1)[-1] for k in exc.keys}
                report.online.failed_keys += [k for k in chunk if _encoded(k) in failed]
                report.online.rows += len(chunk) - len(failed)
        done += len(chunk)
        say(f"{report.workspace}/{report.view}: {done:,} of {report.keys:,} key(s) deleted")
    if marker_current and report.online is not None and not report.online.failed_keys:
        online_store.set_sync_marker(table_id, store.version(table_id))


def _encoded(key: tuple) -> str:
    from featureplane.online_stores.base import encode_key

    return encode_key(key)

"""The offline store interface.

A feature view's data lives in one table per ``table_id`` (``<workspace>/<view>/g<generation>``). Writes
replace exactly one window ``[start, end)`` atomically, so reruns are idempotent and a killed write leaves
the previous state readable. The point-in-time join runs inside the store, where the data lives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featureplane.compute.base import Engine, StagedResult


@dataclass(frozen=True)
class RetrievalPart:
    """One view's contribution to a training set: which stored table and which features.

    ``data`` replaces the stored table with rows computed ad hoc from the sources (``from_source``)."""

    view: FeatureViewSpec
    table_id: str
    features: list[str]
    data: pa.Table | None = None


@dataclass(frozen=True)
class TableStats:
    """The files a table's current version reads, and their bytes."""

    files: int
    bytes: int


@dataclass
class OnlineChanges:
    """What the online store must do so it equals the offline store's latest rows again.

    ``upserts`` yields Arrow record batches of (join keys..., timestamp, features...) in the view's order;
    ``deletes`` lists join-key tuples that no longer have any row. ``complete``: ``upserts`` holds
    every key's latest row (not only changed ones), so any other key online has vanished."""

    upserts: Iterator[pa.RecordBatch]
    deletes: list[tuple]
    complete: bool = False


def latest_row_clause(view: FeatureViewSpec, quote: Callable[[str], str]) -> str:
    """DuckDB's ``QUALIFY`` keeping each key's latest row of a plain view's rows (ties broken by the
    feature values, so the choice is deterministic)."""
    keys = ", ".join(quote(k) for k in view.join_key_names)
    order = "".join(f", {quote(f.name)} DESC NULLS LAST" for f in view.features if not f.type.is_array)
    return f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {quote(view.timestamp_field)} DESC{order}) = 1"


def ties_order(view: FeatureViewSpec, quote: Callable[[str], str]) -> str:
    """What orders a plain view's rows of one key and time (``, f ASC NULLS FIRST, ...``), so that
    every store orders them, and gives each its range, alike."""
    return "".join(f", {quote(f.name)} ASC NULLS FIRST" for f in view.features if not f.type.is_array)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas for training data: integer and boolean features stay integers and booleans when
    they have nulls (pandas' nullable dtypes) instead of turning into floats and objects."""
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


class OfflineStore(ABC):
    @abstractmethod
    def write_window(
        self,
        table_id: str,
        view: FeatureViewSpec,
        start: datetime,
        end: datetime,
        data: pa.Table | StagedResult,
    ) -> int:
        """Replace the rows in ``[start, end)`` with ``data`` in one commit; return the new table version.

        ``data`` is a StagedResult only when the engine shares this store's backend (see
        ``accepts_staged_from``)."""

    def accepts_staged_from(self, engine: Engine) -> bool:
        """Whether this store writes ``engine``'s staged results where they are (same backend and
        session), so materialization need not fetch the rows."""
        return False

    @abstractmethod
    def version(self, table_id: str) -> int | None:
        """The table's current version, or None if nothing was written yet."""

    @abstractmethod
    def read(
        self, table_id: str, view: FeatureViewSpec, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """Rows with timestamps in ``[start, end)`` (all rows when omitted), sorted by keys and time."""

    @abstractmethod
    def online_changes(
        self,
        table_id: str,
        view: FeatureViewSpec,
        before_version: int | None,
        start: datetime | None,
        end: datetime | None,
        batch_size: int = 50_000,
    ) -> OnlineChanges:
        """The latest row per key that changed between ``before_version`` and now, for keys with rows in
        ``[start, end)`` in either version; every key's latest row when ``before_version`` is None."""

    @abstractmethod
    def get_historical_features(
        self,
        spine: pd.DataFrame,
        timestamp_key: str,
        parts: list[RetrievalPart],
        *,
        prefix_features: bool = True,
    ) -> pd.DataFrame:
        """Point-in-time join: for each spine row and view, the latest row at or before the spine's
        timestamp and within the view's ttl. Keeps the spine's rows, order and columns."""

    @abstractmethod
    def features_in_range(
        self, table_id: str, view: FeatureViewSpec, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Rows valid at some point in ``[start, end)``, with ``_valid_from`` and ``_valid_to``."""

    @abstractmethod
    def drop(self, table_id: str) -> None:
        """Delete a table's data (old generations, deleted views and workspaces)."""

    def drop_workspace(self, workspace: str, table_ids: list[str]) -> None:
        """Delete all data of a workspace (every generation where the backend can list them)."""
        for table_id in table_ids:
            self.drop(table_id)

    def delete_keys(self, table_id: str, view: FeatureViewSpec, keys: pa.Table) -> int:
        """Delete every row of the entities in ``keys`` (a table of the view's join keys, no duplicates)
        in one commit; return how many rows went. An aggregate view's partition markers stay. Deleting
        keys that have no rows changes nothing."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete keys")

    def ingest_watermarks(self, table_id: str, segments: list[str]) -> dict[str, int]:
        """How many bytes of each ingest log segment are already in the table (0 when none are)."""
        raise NotImplementedError(f"{type(self).__name__} does not support ingested feature tables")

    def append_ingested(
        self, table_id: str, view: FeatureViewSpec, data: pa.Table, watermarks: dict[str, int]
    ) -> int:
        """Append ingested rows and record the segments' new ``watermarks`` in the same commit, so a
        fold of the ingest log is applied exactly once; return the new table version."""
        raise NotImplementedError(f"{type(self).__name__} does not support ingested feature tables")

    # -- maintenance (see docs/data-lifecycle.md) --------------------------------------------------

    def table_stats(self, table_id: str) -> TableStats | None:
        """Files and bytes of the table's current version; None where the backend manages its own
        storage (a warehouse) or the table does not exist."""
        return None

    def compact(self, table_id: str, view: FeatureViewSpec, *, z_order: bool = False) -> dict[str, Any]:
        """Rewrite small files into large ones (optionally clustered by the join keys) without
        changing the rows; return what the backend reports. Stores that cluster by themselves do
        nothing and say so."""
        return {"skipped": f"{type(self).__name__} manages its storage itself"}

    def vacuum(self, table_id: str, *, retention_hours: int, dry_run: bool = False) -> list[str]:
        """Delete files no version younger than ``retention_hours`` reads (only list them with
        ``dry_run``); return those files."""
        return []

    @abstractmethod
    def delete_before(self, table_id: str, view: FeatureViewSpec, cutoff: datetime) -> int:
        """Delete the rows (an aggregate view's tiles; its partition markers stay) whose timestamp is
        before ``cutoff``, in one commit; return how many were deleted (``offline_retention``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> dict[str, Any]:
        return {}

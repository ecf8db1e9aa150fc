"""A transformation's output staged in a DuckDB database file of its own (``DuckDBStagedResult``).

The DuckDB engine computes an aggregate view's tiles straight into a table of a temporary database
file under the engine's spill directory, then closes its connection. The stage is read through a
connection of its own under the same ``memory_limit``: the table's blocks live on disk and DuckDB
keeps only what fits, so a year of tiles costs the process a bounded amount of memory. Validation
fetches a group of whole partitions at a time, the offline store writes a stream of batches, and a
first backfill's online rows are computed from the same table. ``close`` deletes the file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.compute.base import StagedResult
from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

STAGE = "__fp_stage"
TABLE = "staged_rows"
EPOCH = datetime(1970, 1, 1)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal_time(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def stage_path(spill_directory: Path) -> Path:
    """A new, unused database file name under the spill directory."""
    spill_directory.mkdir(parents=True, exist_ok=True)
    return spill_directory / f"stage-{os.getpid()}-{uuid.uuid4().hex}.duckdb"


def create_stage(con: duckdb.DuckDBPyConnection, path: Path, sql: str) -> None:
    """Run ``sql`` on ``con`` into the stage table of a new database file at ``path`` (then detached,
    so the engine's connection can close without dropping it)."""
    con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {STAGE}").fetchall()
    try:
        con.execute(f"CREATE TABLE {STAGE}.{TABLE} AS {sql}").fetchall()
    finally:
        con.execute(f"DETACH {STAGE}").fetchall()


class DuckDBStagedResult(StagedResult):
    """Rows in the stage table of a DuckDB database file, in the order the engine produced them."""

    def __init__(self, path: Path, timestamp_field: str, con: duckdb.DuckDBPyConnection) -> None:
        """``con``: a connection of its own to the database file at ``path`` (UTC, the engine's limits)."""
        self.path = path
        self.timestamp_field = timestamp_field
        self.con: duckdb.DuckDBPyConnection | None = con
        self._rows: int | None = None

    def _con(self) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            raise RuntimeError(f"the staged rows at {self.path} were dropped")
        return self.con

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = int(self._con().execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0])
        return self._rows

    def null_count(self, column: str) -> int:
        c = quote(column)
        return int(self._con().execute(f"SELECT count(*) - count({c}) FROM {TABLE}").fetchall()[0][0])

    def to_arrow(self) -> pa.Table:
        return self._con().sql(f"SELECT * FROM {TABLE}").to_arrow_table()

    def reader(self, batch_rows: int) -> pa.RecordBatchReader:
        # A scan without ORDER BY keeps the table's order (DuckDB preserves insertion order).
        return self._con().sql(f"SELECT * FROM {TABLE}").to_arrow_reader(batch_rows)

    def with_markers(
        self, view: FeatureViewSpec, partitions: list[tuple[datetime, datetime]]
    ) -> StagedResult:
        """Marker rows appended to the stage table (after the tiles, as the in-memory path does)."""
        con = self._con()
        values = ", ".join(f"({literal_time(start)})" for start, _ in partitions)
        con.execute(f"INSERT INTO {TABLE} ({quote(view.timestamp_field)}) VALUES {values}").fetchall()
        return self

    def chunks(
        self, view: FeatureViewSpec, partitions: list[tuple[datetime, datetime]], max_rows: int
    ) -> Iterator[tuple[datetime, datetime, pa.Table]]:
        """Groups of consecutive whole partitions of about ``max_rows`` rows (by one count per partition);
        all rows at once when some lie outside every partition, as the in-memory path validates them."""
        con = self._con()
        ts = quote(self.timestamp_field)
        start, end = partitions[0][0], partitions[-1][1]
        step = int((partitions[0][1] - partitions[0][0]).total_seconds() * 1_000_000)
        origin = int((start - EPOCH).total_seconds() * 1_000_000)
        counted = con.execute(
            f"SELECT (epoch_us({ts}) - {origin}) // {step} AS i, count(*) FROM {TABLE} "
            f"WHERE {ts} >= {literal_time(start)} AND {ts} < {literal_time(end)} GROUP BY i"
        ).fetchall()
        sizes = [0] * len(partitions)
        for index, rows in counted:
            sizes[int(index)] = int(rows)
        if sum(sizes) != self.num_rows:
            yield start, end, self.to_arrow()
            return
        group: list[int] = []
        total = 0
        for index, size in enumerate(sizes):
            if group and total + size > max_rows:
                yield self._fetch(partitions[group[0]][0], partitions[group[-1]][1])
                group, total = [], 0
            group.append(index)
            total += size
        if group:
            yield self._fetch(partitions[group[0]][0], partitions[group[-1]][1])

    def _fetch(self, start: datetime, end: datetime) -> tuple[datetime, datetime, pa.Table]:
        ts = quote(self.timestamp_field)
        rows = (
            self._con()
            .sql(f"SELECT * FROM {TABLE} WHERE {ts} >= {literal_time(start)} AND {ts} < {literal_time(end)}")
            .to_arrow_table()
        )
        return start, end, rows

    def local_duckdb(self) -> tuple[duckdb.DuckDBPyConnection, str] | None:
        return self._con(), TABLE

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        for suffix in ("", ".wal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

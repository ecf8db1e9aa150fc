"""The Delta offline store's time buckets (``_partition``) and its stream of rows to write."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.compute.base import StagedResult

PARTITION_COLUMN = "_partition"
WRITE_BATCH_ROWS = 100_000
# Rows of a Parquet row group. The writer keeps each open file's current row group as Arrow until it
# is full, and a window's months (or days) are all open until the commit: its default (about a
# million rows) held most of a year's aggregate tiles uncompressed.
ROW_GROUP_ROWS = 131_072


def daily_buckets(view: FeatureViewSpec) -> bool:
    return (view.batch_schedule_seconds or 86400) < 86400


def bucket(view: FeatureViewSpec, value: datetime) -> int:
    """The ``_partition`` value of a timestamp: yyyymm, or yyyymmdd for views scheduled within a day."""
    month = value.year * 100 + value.month
    return month * 100 + value.day if daily_buckets(view) else month


def writer_properties() -> Any:
    """Parquet settings of every file the store writes (``ROW_GROUP_ROWS``)."""
    from deltalake import WriterProperties

    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS)


def with_partition(data: pa.Table, view: FeatureViewSpec) -> pa.Table:
    """The table with its ``_partition`` column, computed arithmetically (strftime is slow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = data[view.timestamp_field]
    value = pc.add(pc.multiply(pc.year(stamps), 100), pc.month(stamps))
    if daily_buckets(view):
        value = pc.add(pc.multiply(value, 100), pc.day(stamps))
    return data.append_column(PARTITION_COLUMN, value.cast(pa.int32()))


def partitioned_reader(data: pa.Table | StagedResult, view: FeatureViewSpec) -> pa.RecordBatchReader:
    """The rows as a stream of batches of at most ``WRITE_BATCH_ROWS``, each with its ``_partition``:
    the writer then holds a file's worth of rows, not a second copy; staged rows are read from the
    stage as they are written, never held whole."""
    import pyarrow as pa

    from featureplane.compute.base import StagedResult

    if not isinstance(data, StagedResult):
        return with_partition(data, view).to_reader(max_chunksize=WRITE_BATCH_ROWS)
    rows = data.reader(WRITE_BATCH_ROWS)
    schema = rows.schema.append(pa.field(PARTITION_COLUMN, pa.int32()))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in rows:
            yield from with_partition(pa.Table.from_batches([batch]), view).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def create_table_streamed(path: Path, reader: pa.RecordBatchReader) -> None:
    """A new table from ``reader`` (rows with their ``_partition``) in one commit, holding one batch
    at a time: each batch's rows go to an open Parquet file of their bucket, and the files are added
    in a single transaction when the stream ends. (``write_deltalake`` collects its whole input
    before writing it.) Files carry row and null counts; readers prune by bucket."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import Schema
    from deltalake.transaction import AddAction, create_table_with_add_actions

    columns = [n for n in reader.schema.names if n != PARTITION_COLUMN]
    file_schema = pa.schema([reader.schema.field(n) for n in columns])
    writers: dict[int, tuple[str, pq.ParquetWriter]] = {}
    counts: dict[int, tuple[int, dict[str, int]]] = {}
    try:
        for batch in reader:
            buckets = batch.column(PARTITION_COLUMN)
            for value in pc.unique(buckets).to_pylist():
                rows = batch.filter(pc.equal(buckets, value)).select(columns)
                if value not in writers:
                    name = f"{PARTITION_COLUMN}={value}/part-{uuid.uuid4().hex}.parquet"
                    (path / name).parent.mkdir(parents=True, exist_ok=True)
                    writers[value] = (
                        name,
                        pq.ParquetWriter(path / name, file_schema, compression="snappy"),
                    )
                writers[value][1].write_batch(rows, row_group_size=ROW_GROUP_ROWS)
                total, nulls = counts.get(value, (0, {}))
                for column in columns:
                    nulls[column] = nulls.get(column, 0) + rows.column(column).null_count
                counts[value] = total + rows.num_rows, nulls
    finally:
        for _, writer in writers.values():
            writer.close()
    actions = []
    for value, (name, _) in sorted(writers.items()):
        total, nulls = counts[value]
        stat = (path / name).stat()
        actions.append(
            AddAction(
                name,
                stat.st_size,
                {PARTITION_COLUMN: str(value)},
                int(stat.st_mtime * 1000),
                True,
                json.dumps({"numRecords": total, "nullCount": nulls}),
            )
        )
    create_table_with_add_actions(
        str(path), Schema.from_arrow(reader.schema), actions, partition_by=[PARTITION_COLUMN]
    )

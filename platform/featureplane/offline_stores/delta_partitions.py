"""The Delta offline store's time buckets (``_partition``) and its stream of rows to write."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.compute.base import StagedResult

PARTITION_COLUMN = "_partition"
WRITE_BATCH_ROWS = 100_000


def daily_buckets(view: FeatureViewSpec) -> bool:
    return (view.batch_schedule_seconds or 86400) < 86400


def bucket(view: FeatureViewSpec, value: datetime) -> int:
    """The ``_partition`` value of a timestamp: yyyymm, or yyyymmdd for views scheduled within a day."""
    month = value.year * 100 + value.month
    return month * 100 + value.day if daily_buckets(view) else month


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

"""Splitting a materialized window's rows into its partitions, without copying them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.materialization.partitions import partition_key, windows

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class PartitionSlice:
    key: str
    start: datetime
    end: datetime
    rows: pa.Table


def split_partitions(
    view: FeatureViewSpec, table: pa.Table, start: datetime, end: datetime
) -> Iterator[PartitionSlice]:
    """The rows of each of the view's partitions in ``[start, end)``, as zero-copy slices of the rows
    sorted by time (sorted here only if they are not already). Rows outside the window (there should be
    none) belong to no partition."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = view.timestamp_field
    parts = list(windows(view, start, end))
    if len(parts) == 1:
        yield PartitionSlice(partition_key(view, parts[0][0]), parts[0][0], parts[0][1], table)
        return
    stamps = table.column(ts).cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    if len(stamps) > 1 and not (stamps[1:] >= stamps[:-1]).all():  # out of order, or nulls (NaN here)
        order = pc.sort_indices(table, [(ts, "ascending")])
        table, stamps = table.take(order), stamps[order.to_numpy()]
    epoch = datetime(1970, 1, 1)
    bounds = np.array(
        [int((s - epoch).total_seconds() * 1_000_000) for s, _ in parts]
        + ([int((parts[-1][1] - epoch).total_seconds() * 1_000_000)] if parts else []),
        dtype=np.int64,
    )
    offsets = np.searchsorted(stamps, bounds, side="left") if len(stamps) else np.zeros(len(bounds), int)
    for i, (s, e) in enumerate(parts):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        yield PartitionSlice(partition_key(view, s), s, e, table.slice(lo, hi - lo))

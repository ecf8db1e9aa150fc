"""The stream path's batched work gives what one record (or one entity) at a time gives: the SQLite
store's tile reads in chunks, the ingest log read in windows, event times computed from a datetime's
fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from stream_views import T0, aggregate_view, processor, record

from featureplane.definitions.specs import FieldSpec, SourceSpec
from featureplane.ingest.log import IngestLog
from featureplane.ingest.records import stream_table_id
from featureplane.streams import ingest_source, sqlite
from featureplane.streams.ingest_source import LINE_RECORDS, IngestLogSource
from featureplane.streams.processor import to_us

MINUTE = timedelta(minutes=1)


def batches(users: int) -> list[list]:
    """Three batches over ``users`` users on two shards, the last one taking both shards far enough
    on that the first minutes' tiles pass retention."""
    first = [record("s1", n, f"u{n % users}", T0 + n * timedelta(seconds=7), n) for n in range(3 * users)]
    again = [record("s2", n, f"u{n % users}", T0 + n * timedelta(seconds=11), 1) for n in range(2 * users)]
    later = [record("s1", 10_000 + n, f"u{n}", T0 + 60 * MINUTE + n * MINUTE, 5) for n in range(users)]
    later.append(record("s2", 10_000, "u0", T0 + 60 * MINUTE, 5))
    return [first, again, first[:5] + later]  # the third also redelivers five records


def outcome(proc, users: int) -> tuple:
    keys = [(f"u{n}",) for n in range(users)]
    rows = proc.store.online.read([(proc.table_id, key) for key in keys])
    tiles = [proc.store.tiles(proc.table_id, key) for key in keys]
    return [None if r is None else (r.event_ts, r.values) for r in rows], tiles


def test_tiles_read_in_chunks_give_what_one_statement_gives(tmp_path, monkeypatch):
    view = aggregate_view(lateness=timedelta(minutes=2))
    users = 12
    whole = processor(tmp_path / "whole", view)
    for batch in batches(users):
        whole.process(batch)
    monkeypatch.setattr(sqlite, "READ_CHUNK", 5)
    chunked = processor(tmp_path / "chunked", view)
    results = [chunked.process(batch) for batch in batches(users)]
    assert [(r.applied, r.duplicates) for r in results] == [(3 * users, 0), (2 * users, 0), (users + 1, 5)]
    assert outcome(chunked, users) == outcome(whole, users)
    # The later batch moved retention past the first minutes: its entities keep only their new tile.
    rows, tiles = outcome(chunked, users)
    assert all(len(t) == 1 for t in tiles)
    assert all(len(values[0]) == 1 for _, values in rows)


def source(tmp_path) -> tuple[IngestLog, IngestLogSource, str]:
    fields = [FieldSpec("user_id", "string"), FieldSpec("ts", "timestamp"), FieldSpec("amount", "int64")]
    spec = SourceSpec("payments", "stream", timestamp_field="ts", stream={"type": "push"}, schema=fields)
    log = IngestLog(tmp_path / "log")
    return log, IngestLogSource(log, "prod", spec), stream_table_id("prod", "payments")


def pushed(log: IngestLog, table_id: str, lines: int, per_line: int) -> None:
    for line in range(lines):
        rows = [[0, f"u{line}-{n}", f"2026-01-05T12:{line % 60:02d}:00Z", n] for n in range(per_line)]
        log.append("prod", {table_id: rows})
    log.close()


def read_all(src: IngestLogSource, limit: int) -> list:
    out, positions = [], {}
    while records := src.read(positions, limit):
        out += records
        positions = {**positions, records[-1].shard: records[-1].sequence}
    return out


@pytest.mark.parametrize("window", [40, 700, 1 << 20])  # shorter than a line, a few lines, everything
def test_the_ingest_log_read_in_windows_gives_every_record_once_in_order(tmp_path, monkeypatch, window):
    log, src, table_id = source(tmp_path)
    pushed(log, table_id, lines=30, per_line=4)
    segment = log.segments("prod")[0]
    with open(segment, "ab") as handle:
        handle.write(b"0badc0de {torn")  # a crashed writer's unacknowledged tail
    monkeypatch.setattr(ingest_source, "READ_BYTES", window)
    records = read_all(src, limit=7)
    assert [r.data["user_id"] for r in records] == [f"u{line}-{n}" for line in range(30) for n in range(4)]
    assert records[0].data == {"user_id": "u0-0", "ts": "2026-01-05T12:00:00Z", "amount": 0}
    sequences = [r.sequence for r in records]
    assert sequences == sorted(set(sequences))
    # A checkpoint inside a line resumes after it: the line's earlier records are not read again.
    middle = records[41]
    again = src.read({segment.name: middle.sequence}, 3)
    assert again[0] == records[42] and middle.sequence % LINE_RECORDS == 1


def test_a_record_of_the_wrong_width_fails_naming_the_segment(tmp_path):
    log, src, table_id = source(tmp_path)
    log.append("prod", {table_id: [[0, "u1", "2026-01-05T12:00:00Z"]]})
    log.close()
    with pytest.raises(
        ValueError,
        match=r"ingest log segment .*\.log: a record of prod/payments/stream .* 2 values, the source has 3 fields",
    ):
        src.read({}, 10)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 5, 12, 0, 1, 123456),
        datetime(1969, 12, 31, 23, 59, 59, 999999),
        datetime(2026, 1, 5, 12, 0, 1, 5, tzinfo=UTC),
        datetime(2026, 1, 5, 3, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 1, 5, 3, 30, tzinfo=timezone(-timedelta(hours=8, microseconds=7))),
        "2026-01-05T12:00:01.5Z",
        "2026-01-05T12:00:01+02:00",
        "2026-01-05",
    ],
)
def test_event_times_from_the_fields_equal_datetime_arithmetic(value):
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    assert to_us(value, "ts") == (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def test_a_pandas_timestamp_keeps_its_microseconds():
    import pandas as pd

    stamp = pd.Timestamp("2026-01-05T12:00:01.123456789")
    assert to_us(stamp, "ts") == (stamp.to_pydatetime(warn=False) - datetime(1970, 1, 1)) // timedelta(
        microseconds=1
    )

"""A shard read to its end (here a sealed ingest log segment, consumed) is recorded as finished, and
stops holding the view's tile retention back: without that, the first segment's old watermark would
keep every tile from its time on, forever."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from stream_repo import payment, stream_repo
from test_stream_crash import push

from featureplane.serving.app import create_lookup_service
from featureplane.streams.runner import open_stream, run_stream
from featureplane.streams.sqlite import SQLiteStreamStore
from featureplane.streams.store import ShardState

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat() + "Z"


def test_a_consumed_segment_is_finished_and_its_tiles_expire(tmp_path):
    repo = stream_repo(tmp_path / "repo")
    first = create_lookup_service(repo.config())
    push(first, [payment("u1", at(0), 5), payment("u2", at(1), 7)])
    first.ingestor.log.close()  # sealed: a server stopped, say
    second = create_lookup_service(repo.config())
    push(second, [payment("u1", at(300), 3)])  # five hours on, in the next segment
    with repo.runtime() as runtime:
        run_stream(runtime, "prod", "payment_counts", once=True)
        processor, _ = open_stream(runtime, "prod", "payment_counts")
        state = processor.state()
        segments = sorted(state.shards)
        assert len(segments) == 2
        assert state.shards[segments[0]].finished and not state.shards[segments[1]].finished
        floor = processor.retain_from(state)
        # Set by the open segment alone: its watermark (at 300) minus the lateness (2 h) and the
        # longest window (1 h), in minute intervals.
        newest = (T0 + timedelta(minutes=300) - datetime(1970, 1, 1)) // timedelta(minutes=1)
        assert floor == newest - 180

        push(second, [payment("u1", at(301), 4)])
        run_stream(runtime, "prod", "payment_counts", once=True)
        kept = processor.store.tiles(processor.table_id, ("u1",))
        assert min(kept) >= floor  # u1's tile at 0 is gone: nothing can update or read it any more
        assert sum(tile["cols"]["amount"]["n"] for tile in kept.values()) == 2
    second.ingestor.log.close()


def test_finishing_is_stored_and_repeating_it_changes_nothing(tmp_path):
    repo = stream_repo(tmp_path / "repo")
    with repo.runtime() as runtime:
        processor, _ = open_stream(runtime, "prod", "payment_counts")
        from featureplane.streams.processor import StreamRecord

        processor.process(
            [
                StreamRecord("a", 1, payment("u1", at(0), 1)["record"]),
                StreamRecord("b", 1, payment("u1", at(60), 1)["record"]),
            ]
        )
        assert processor.finish_shards(["a", "never-seen"]) == ["a"]
        assert processor.finish_shards(["a"]) == []
        again = SQLiteStreamStore(runtime.online_store).state(processor.table_id)
        assert again.shards["a"] == ShardState(1, again.shards["a"].watermark_us, 0, 0, True)
        assert again.slowest_watermark_us == again.shards["b"].watermark_us

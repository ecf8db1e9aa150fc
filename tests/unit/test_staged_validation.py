"""An aggregate view's tiles staged in DuckDB and validated a group of partitions at a time give the
check results, profiles, offline tiles and online rows of a validation of the whole window at once;
the stage's file is gone afterwards."""

from __future__ import annotations

import dataclasses

from test_aggregations import D1, DAY, STATS, applied, random_events

from featureplane.materialization.materialize import materialize
from featureplane.monitoring.profiles import PartitionProfiler
from featureplane.monitoring.quality import GXValidator

DAYS = 6


class CountingProfiler(PartitionProfiler):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return super().__call__(*args)


def backfill(tmp_path, chunk_rows: int):
    repo, runtime, state = applied(tmp_path, STATS, random_events(11, 600, D1, DAYS, users=6))
    repo.set_config("monitoring", quality={"chunk_rows": chunk_rows})
    runtime = repo.runtime()
    profiler = CountingProfiler()
    result = materialize(
        runtime, state, "stats", D1, D1 + DAYS * DAY, validators=[GXValidator(sample_size=3), profiler]
    )
    table_id = state.table_id("stats")
    offline = runtime.offline_store.read(table_id, state.feature_view("stats")).sort_by("ts").to_pylist()
    online = runtime.online_store.read([(table_id, (f"u{i}",)) for i in range(7)])
    spill = list(runtime.config.data_dir.rglob("stage-*.duckdb*"))
    return result, profiler, offline, online, spill


def test_groups_of_partitions_validate_as_the_whole_window(tmp_path):
    grouped, profiled, offline, online, spill = backfill(tmp_path / "grouped", chunk_rows=20)
    whole, profiled_whole, offline_whole, online_whole, _ = backfill(tmp_path / "whole", chunk_rows=10**9)
    assert profiled.calls > 2 and profiled_whole.calls == 1  # the grouped run really took groups
    assert spill == []
    assert [dataclasses.asdict(c) for c in grouped.checks] == [dataclasses.asdict(c) for c in whole.checks]
    assert len(grouped.checks) > 2 and all(c.partitions for c in grouped.checks)
    assert profiled.profiles == profiled_whole.profiles and len(profiled.profiles) == DAYS
    assert offline == offline_whole and online == online_whole
    assert grouped.rows == whole.rows > 0


def test_a_failing_check_blocks_the_write_and_drops_the_stage(tmp_path):
    from featureplane.materialization.materialize import ValidationFailed

    repo, runtime, state = applied(tmp_path, STATS, random_events(3, 200, D1, DAYS, users=4))
    repo.set_config("monitoring", quality={"chunk_rows": 20})
    runtime = repo.runtime()

    def fail_day_three(view, rows, start, end):
        from featureplane.monitoring.checks import CheckResult

        bad = start <= D1 + 2 * DAY < end
        return [
            CheckResult(name="day_three", expectation="x", severity="error", passed=not bad, partitions=["k"])
        ]

    class Blocking:
        def __call__(self, *args):
            return fail_day_three(*args)

        def combine(self, view, chunks):
            from featureplane.monitoring.checks import combine_results

            return combine_results(chunks, 3)

    try:
        materialize(runtime, state, "stats", D1, D1 + DAYS * DAY, validators=[Blocking()])
    except ValidationFailed as failure:
        assert [c.passed for c in failure.results] == [False]
    else:
        raise AssertionError("the blocking check did not stop the write")
    assert runtime.offline_store.version(state.table_id("stats")) is None
    assert list(runtime.config.data_dir.rglob("stage-*.duckdb*")) == []

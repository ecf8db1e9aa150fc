"""Aggregate feature views on the Snowflake engine and offline store give what DuckDB + Delta give.

Every aggregate function (count, sum, mean, min, max, stddev_samp/pop, first, last, last_n,
count_distinct) over finite and lifetime windows, on random events with nulls and shared timestamps,
materialized on both paths: DuckDB day by day, Snowflake a whole range per query (the stand-in, fakesnow,
behind the real connector). The tiles, the training sets, the ranges of values and the online values
must be the same, also after a rerun and an out-of-order backfill on the Snowflake side, and when one
path's engine writes to the other path's offline store.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from helpers import events_repo, floats_close, rows_sql
from snowflake_helpers import not_snowflake_sql, snowflake_events_repo, snowflake_yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))  # the view and events of the unit tests
from test_aggregations import COLUMNS, D1, DAY, STATS, random_events

from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace

pytestmark = pytest.mark.integration

USERS = [f"u{i}" for i in range(5)]
# DuckDB sums a tile's doubles with compensated summation, so its tiles do not depend on the order of
# the rows; Snowflake's SUM does not promise that (it sums in parallel), and roll-ups add doubles over
# window frames in an order neither engine promises. So float sums and squared deviations agree to 1e-12
# relative; everything else (counts, integer sums, min/max, first/last, last_n, distinct counts, times)
# exactly.
RTOL = 1e-12


def close(actual, expected) -> bool:
    return floats_close(actual, expected, RTOL)


class Side:
    def __init__(self, repo) -> None:
        self.runtime = repo.runtime()
        self.runtime.registry.create_workspace("prod", live=True)
        apply_plan(self.runtime, plan_repository(self.runtime, "prod"))
        self.state = self.runtime.registry.load("prod")
        self.workspace = Workspace(self.runtime, self.state)

    def materialize(self, start: datetime, end: datetime):
        return materialize(self.runtime, self.state, "stats", start, end)

    def tiles(self):
        return self.runtime.offline_store.read(self.state.table_id("stats"), self.state.feature_view("stats"))

    def online(self) -> list:
        table_id = self.state.table_id("stats")
        return [
            None if r is None else (r.event_ts, r.values)
            for r in self.runtime.online_store.read([(table_id, (u,)) for u in USERS])
        ]


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory, snowflake_server):
    events = random_events(seed=11, count=400, start=D1 - DAY, days=7)
    tables = {"raw.events": rows_sql(COLUMNS, events)}
    duck = Side(events_repo(tmp_path_factory.mktemp("duck"), STATS, tables=tables))
    snow = Side(snowflake_events_repo(tmp_path_factory.mktemp("snow"), snowflake_server, STATS, tables))
    for day in range(5):
        duck.materialize(D1 + day * DAY, D1 + (day + 1) * DAY)
    snow.materialize(D1 + 2 * DAY, D1 + 5 * DAY)  # out of order: the later range first
    snow.materialize(D1, D1 + 2 * DAY)
    yield duck, snow
    duck.runtime.close()
    snow.runtime.close()


def spine() -> pd.DataFrame:
    rng = random.Random(5)
    times = [D1 + timedelta(minutes=rng.randrange(6 * 24 * 60)) for _ in range(60)]
    times += [D1 + 2 * DAY, D1 + 5 * DAY, D1 - DAY]  # on interval boundaries, and before any tile
    rows = [(u, t) for u in [*USERS, "nobody"] for t in times] + [(None, D1 + DAY)]
    return pd.DataFrame(rows, columns=["user_id", "ts"]).sample(frac=1.0, random_state=2)


def test_tiles_are_identical(sides):
    duck, snow = sides
    expected, actual = duck.tiles(), snow.tiles()
    assert expected.num_rows > 50
    assert actual.schema == expected.schema
    assert close(actual.to_pylist(), expected.to_pylist())


def test_training_sets_are_identical(sides):
    duck, snow = sides
    expected = duck.workspace.get_feature_view("stats").get_historical_features(spine(), "ts")
    actual = snow.workspace.get_feature_view("stats").get_historical_features(spine(), "ts")
    assert expected.iloc[:, 2].notna().sum() > 100, list(expected.columns)
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RTOL)


def test_feature_ranges_are_identical(sides):
    duck, snow = sides
    window = (D1 + DAY + timedelta(hours=5), D1 + 4 * DAY)
    expected = duck.workspace.get_feature_view("stats").get_features_in_range(*window)
    actual = snow.workspace.get_feature_view("stats").get_features_in_range(*window)
    assert len(expected) > 20
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RTOL)


def test_online_values_are_identical_after_reruns(sides):
    duck, snow = sides
    assert close(snow.online(), duck.online())
    assert sum(v is not None for v in duck.online()) >= 4
    before = snow.tiles()
    snow.materialize(D1 + DAY, D1 + 2 * DAY)
    assert snow.tiles().equals(before)
    assert close(snow.online(), duck.online())


def duckdb_engine_snowflake_store_yaml(server, database: str) -> str:
    """The DuckDB engine writing to the Snowflake offline store (connection settings on the store)."""
    text = snowflake_yaml(server, database)
    engine = text[text.index("engine:\n") : text.index("offline_store:\n")]
    connection = engine.removeprefix("engine:\n").replace("  type: snowflake\n", "")
    store = text[text.index("offline_store:\n") :].replace(
        "offline_store:\n  type: snowflake\n", "offline_store:\n  type: snowflake\n" + connection
    )
    head = text[: text.index("engine:\n")]
    return head + "engine: {type: duckdb, warehouse: .featureplane/warehouse.duckdb}\n" + store


@contextmanager
def mixed_side(repo, engine: str, store: str, duck: Side) -> Iterator[Side]:
    """A side on ``repo`` pairing ``engine`` with the offline ``store``, materialized over the same
    days as the others; its tiles must be DuckDB's."""
    mixed = Side(repo)
    try:
        assert (mixed.runtime.engine.name, type(mixed.runtime.offline_store).__name__) == (engine, store)
        mixed.materialize(D1, D1 + 5 * DAY)
        assert close(mixed.tiles().to_pylist(), duck.tiles().to_pylist())
        yield mixed
    finally:
        mixed.runtime.close()


def test_tiles_from_the_duckdb_engine_roll_up_the_same_in_a_snowflake_store(
    sides, tmp_path, snowflake_server
):
    """Tiles computed elsewhere (their last_n times as timestamps) are stored as Snowflake computes them."""
    duck, snow = sides
    events = random_events(seed=11, count=400, start=D1 - DAY, days=7)
    repo = events_repo(tmp_path, STATS, tables={"raw.events": rows_sql(COLUMNS, events)})
    repo.config_path.write_text(
        duckdb_engine_snowflake_store_yaml(snowflake_server, snowflake_server.database())
    )
    with mixed_side(repo, "duckdb", "SnowflakeOfflineStore", duck) as mixed:
        expected = duck.workspace.get_feature_view("stats").get_historical_features(spine(), "ts")
        actual = mixed.workspace.get_feature_view("stats").get_historical_features(spine(), "ts")
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RTOL)
        assert close(mixed.online(), snow.online())


def test_tiles_from_the_snowflake_engine_roll_up_the_same_in_a_delta_store(sides, tmp_path, snowflake_server):
    """Tiles computed in Snowflake and fetched (their last_n times in microseconds) for a Delta store."""
    duck, snow = sides
    events = random_events(seed=11, count=400, start=D1 - DAY, days=7)
    repo = snowflake_events_repo(tmp_path, snowflake_server, STATS, {"raw.events": rows_sql(COLUMNS, events)})
    text = repo.config_path.read_text()
    store = text[text.index("offline_store:\n") : text.index("online_store:")]
    repo.config_path.write_text(
        text.replace(store, "offline_store: {type: delta, path: .featureplane/offline}\n")
    )
    with mixed_side(repo, "snowflake", "DeltaOfflineStore", duck) as mixed:
        assert close(mixed.online(), snow.online())


def test_the_sql_sent_is_snowflake_sql(sides):
    """The stand-in would also run DuckDB's spellings and ignores the case of names: every aggregate
    statement the Snowflake side sent must be Snowflake's (see ``not_snowflake_sql``)."""
    import sqlglot

    _, snow = sides
    sent = [*snow.runtime.engine.client.history, *snow.runtime.offline_store.client.history]
    aggregate = list(dict.fromkeys(sql for sql in sent if "__fp_idx" in sql))
    assert len(aggregate) >= 5
    for sql in aggregate:
        assert not_snowflake_sql(sql) == [], sql
        sqlglot.parse_one(sql, read="snowflake")

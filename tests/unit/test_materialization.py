"""Materialization on every backend: exact window replacement, idempotent reruns, out-of-order
backfills, corrected source data (including keys that disappear), a crash between the offline and the
online write, and output that does not match its declaration. Each scenario runs on DuckDB + Delta and
on Snowflake (fakesnow behind the real connector), so the backends cannot drift apart."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from materialization_scenarios import (
    D1,
    DAY,
    EVENTS,
    NULL_KEY_EVENTS,
    Backend,
    assert_online_equals_offline,
    duckdb_backend,
    events_sql,
    offline_rows,
    snowflake_backend,
)

from featureplane.compute.base import TransformationError
from featureplane.materialization.materialize import MaterializationError, ValidationFailed, materialize
from featureplane.online_stores.base import encode_key


@pytest.fixture(params=["duckdb", pytest.param("snowflake", marks=pytest.mark.integration)])
def backend(request, tmp_path) -> Backend:
    if request.param == "duckdb":
        built = duckdb_backend(tmp_path)
    else:
        built = snowflake_backend(tmp_path, request.getfixturevalue("snowflake_server"))
    yield built
    built.runtime.close()


def test_rows_land_in_their_window_only(backend: Backend) -> None:
    result = backend.materialize(D1, D1 + DAY)
    assert result.rows == 2 and result.partitions == 1
    assert result.offline_version == backend.runtime.offline_store.version(backend.state.table_id("amounts"))
    assert offline_rows(backend.runtime, backend.state) == [
        ("u1", datetime(2024, 1, 1, 10), 1.0, 1),
        ("u2", datetime(2024, 1, 1, 12), 7.0, 1),
    ]
    assert_online_equals_offline(backend.runtime, backend.state)


def test_rerun_is_idempotent(backend: Backend) -> None:
    first_version = backend.materialize(D1, D1 + 3 * DAY).offline_version
    first = offline_rows(backend.runtime, backend.state)
    backend.materialize(D1 + DAY, D1 + 2 * DAY)
    result = backend.materialize(D1, D1 + 3 * DAY)
    assert offline_rows(backend.runtime, backend.state) == first
    assert result.offline_version == first_version + 2  # one version per write
    assert_online_equals_offline(backend.runtime, backend.state)


def test_out_of_order_backfill_never_overwrites_newer_online_values(backend: Backend) -> None:
    backend.materialize(D1 + DAY, D1 + 2 * DAY)  # u1 = 2.0 (newest)
    backend.materialize(D1, D1 + DAY)  # older partition afterwards
    assert backend.read_online("u1")[0].values == [2.0, 1]
    assert_online_equals_offline(backend.runtime, backend.state)


def test_corrected_source_data_repairs_online_including_deleted_keys(backend: Backend) -> None:
    backend.materialize(D1, D1 + 3 * DAY)
    # Day 2's data is corrected: u1's event disappears, u4 appears.
    corrected = [e for e in EVENTS if e[1] != "2024-01-02 10:00:00"] + [("u4", "2024-01-02 05:00:00", 4.0)]
    backend.load_tables(events_sql(corrected))
    result = backend.materialize(D1 + DAY, D1 + 2 * DAY)
    assert result.online_full_sync is False
    # Only the keys that window touched are read back: u1 (its day-2 row went) and u4 (new).
    assert result.online_written == 2
    u1, u4 = backend.read_online("u1", "u4")
    assert u1.values == [1.0, 1]  # back to the older value
    assert u4.values == [4.0, 1]
    assert_online_equals_offline(backend.runtime, backend.state)
    # A key whose only rows vanish is deleted online.
    backend.load_tables(events_sql([e for e in corrected if e[0] != "u3"]))
    assert backend.materialize(D1 + 2 * DAY, D1 + 3 * DAY).online_deleted == 1
    assert_online_equals_offline(backend.runtime, backend.state)


def test_crash_between_offline_and_online_is_repaired_by_a_rerun(backend: Backend, monkeypatch) -> None:
    backend.materialize(D1, D1 + DAY)

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(backend.runtime.online_store, "write_encoded", crash)
    with pytest.raises(OSError):
        backend.materialize(D1 + DAY, D1 + 2 * DAY)
    monkeypatch.undo()
    # Offline has day 2, online does not; the sync marker shows the online store is behind.
    assert backend.materialize(D1 + DAY, D1 + 2 * DAY).online_full_sync is True
    assert_online_equals_offline(backend.runtime, backend.state)


def test_output_not_matching_the_declaration_writes_nothing(backend: Backend) -> None:
    from featureplane.registry.plan import build_plan
    from featureplane.repo.loader import load_repository
    from featureplane.repo.validation import compile_repository

    views = backend.repo.root / "views.py"
    views.write_text(views.read_text().replace("1 AS n", "'one' AS n"))
    # Skip the plan-time schema check to reach the run-time one.
    definitions = compile_repository(load_repository(backend.repo.root))
    backend.runtime.registry.apply(
        build_plan("prod", True, backend.state.version, backend.state.definitions, definitions)
    )
    backend.state = backend.runtime.registry.load("prod")
    with pytest.raises(
        TransformationError, match=rf"column 'n' is {backend.text_type} but is declared Int64"
    ):
        backend.materialize(D1, D1 + DAY)
    assert backend.runtime.offline_store.version(backend.state.table_id("amounts")) is None


def test_null_join_keys_block_the_write(backend: Backend) -> None:
    backend.load_tables(NULL_KEY_EVENTS)
    with pytest.raises(ValidationFailed, match="null join key"):
        backend.materialize(D1, D1 + DAY)
    assert backend.runtime.offline_store.version(backend.state.table_id("amounts")) is None


def test_partial_partitions_and_development_workspaces_are_refused(backend):
    runtime, state = backend.runtime, backend.state
    with pytest.raises(MaterializationError, match="whole number"):
        materialize(runtime, state, "amounts", D1, D1 + timedelta(hours=5))
    runtime.registry.create_workspace("dev", live=False)
    from featureplane.registry.plan import build_plan

    runtime.registry.apply(
        build_plan("dev", False, 0, runtime.registry.load("dev").definitions, state.definitions)
    )
    with pytest.raises(MaterializationError, match="development workspace"):
        materialize(runtime, runtime.registry.load("dev"), "amounts", D1, D1 + DAY)


def test_online_keys_are_canonical():
    assert encode_key(("u1",)) == '["u1"]'
    assert encode_key((5, "a")) == '[5,"a"]'


def test_first_backfill_updates_online_from_the_rows_written(tmp_path, monkeypatch) -> None:
    """With no offline table and no sync marker, the online rows come from the rows just written: the
    offline store is not read back, and online still equals the offline store's latest rows."""
    backend = duckdb_backend(tmp_path)
    store = backend.runtime.offline_store

    def no_read_back(*args, **kwargs):
        raise AssertionError("the first backfill read the offline store back")

    monkeypatch.setattr(store, "online_changes", no_read_back)
    result = backend.materialize(D1, D1 + 3 * DAY)
    assert result.online_full_sync is True and result.online_written == 3
    monkeypatch.undo()
    assert_online_equals_offline(backend.runtime, backend.state)
    # Later runs have a marker: they compare versions in the store as before.
    assert backend.materialize(D1 + DAY, D1 + 2 * DAY).online_full_sync is False
    assert_online_equals_offline(backend.runtime, backend.state)
    backend.runtime.close()

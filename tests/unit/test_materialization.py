"""Materialization: exact window replacement, idempotent reruns, and an online store equal to the
as-of-now projection of the offline store after any sequence of runs."""

from __future__ import annotations

from datetime import timedelta

import materialization_scenarios as scenarios
import pytest
from helpers import events_repo, make_warehouse
from materialization_scenarios import D1, DAY, EVENTS, VIEW, Backend, events_sql

from featureplane.materialization import MaterializationError, materialize
from featureplane.online_stores.base import encode_key
from featureplane.repo.planning import apply_plan, plan_repository


@pytest.fixture
def setup(tmp_path) -> Backend:
    """DuckDB engine, Delta offline store, SQLite online store."""
    repo = events_repo(tmp_path, VIEW, tables=events_sql(EVENTS))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))

    def load_tables(tables: dict[str, str]) -> None:
        runtime.close()  # the warehouse file is rewritten; the runtime reopens it
        make_warehouse(repo, tables)

    return Backend(repo, runtime, runtime.registry.load("prod"), load_tables, text_type="VARCHAR")


def test_rows_land_in_their_window_only(setup):
    scenarios.rows_land_in_their_window_only(setup)


def test_rerun_is_idempotent(setup):
    scenarios.rerun_is_idempotent(setup)


def test_out_of_order_backfill_never_overwrites_newer_online_values(setup):
    scenarios.out_of_order_backfill_never_overwrites_newer_online_values(setup)


def test_rerun_with_changed_source_data_repairs_online_including_deleted_keys(setup):
    scenarios.corrected_source_data_repairs_online_including_deleted_keys(setup)


def test_a_crash_between_offline_and_online_is_repaired_by_a_rerun(setup, monkeypatch):
    scenarios.crash_between_offline_and_online_is_repaired_by_a_rerun(setup, monkeypatch)


def test_output_not_matching_the_declaration_writes_nothing(setup):
    scenarios.output_not_matching_the_declaration_writes_nothing(setup)


def test_null_join_keys_block_the_write(setup):
    scenarios.null_join_keys_block_the_write(setup)


def test_partial_partitions_and_development_workspaces_are_refused(setup):
    runtime, state = setup.runtime, setup.state
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

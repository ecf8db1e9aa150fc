"""Loading a repository and validating it: every problem named with its object and file:line."""

from __future__ import annotations

import pytest
from helpers import events_repo

from featureplane.repo.errors import RepositoryError
from featureplane.repo.planning import load_definitions

GOOD_VIEW = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1))
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""


def problems_of(repo) -> list[str]:
    with pytest.raises(RepositoryError) as info:
        load_definitions(repo.runtime())
    return [str(p) for p in info.value.problems]


def test_a_valid_repository_loads_into_specs(tmp_path):
    repo = events_repo(tmp_path, GOOD_VIEW)
    defs = load_definitions(repo.runtime())
    view = defs.feature_views["amounts"]
    assert view.join_key_names == ["user_id"]
    assert view.feature_names == ["amount"]
    assert view.transformation.mode == "snowflake_sql"
    assert "__fp_source_events" in view.transformation.sql
    assert view.location.endswith("views.py:6")


def test_importing_a_repository_runs_no_query(tmp_path):
    # No warehouse at all: loading and compiling the definitions must still work.
    from featureplane.repo.loader import load_repository
    from featureplane.repo.validation import compile_repository

    repo = events_repo(tmp_path, GOOD_VIEW)
    repo.config().warehouse_path.unlink()
    defs = compile_repository(load_repository(repo.root))
    assert set(defs.feature_views) == {"amounts"}


def test_duplicate_names_are_reported_with_both_locations(tmp_path):
    repo = events_repo(tmp_path, GOOD_VIEW, extra_files={"more.py": GOOD_VIEW})
    problems = problems_of(repo)
    assert len(problems) == 1
    assert "duplicate name" in problems[0] and "amounts" in problems[0]
    assert "more.py:6" in problems[0] and "views.py:6" in problems[0]


def test_unknown_entity_join_key_missing_and_type_mismatch_are_all_reported(tmp_path):
    views = """
        from datetime import datetime, timedelta
        from base import events
        from featureplane import Attribute, Float64, Int64, String, batch_feature_view

        @batch_feature_view(sources=[events], entities=["merchant"], mode="snowflake_sql",
                            features=[Attribute("amount", Float64)], timestamp_field="ts",
                            feature_start_time=datetime(2024, 1, 1))
        def by_merchant(events):
            return f"SELECT user_id, ts, amount FROM {events}"

        @batch_feature_view(sources=[events], entities=["user"], mode="snowflake_sql",
                            features=[Attribute("amount", Float64)], timestamp_field="ts",
                            feature_start_time=datetime(2024, 1, 1))
        def no_key(events):
            return f"SELECT ts, amount FROM {events}"

        @batch_feature_view(sources=[events], entities=["user"], mode="snowflake_sql",
                            features=[Attribute("amount", String), Attribute("n", Int64)], timestamp_field="ts",
                            feature_start_time=datetime(2024, 1, 1))
        def wrong_types(events):
            return f"SELECT user_id, ts, amount, 'x' AS n FROM {events}"
    """
    repo = events_repo(tmp_path, views)
    with pytest.raises(RepositoryError) as info:
        load_definitions(repo.runtime())
    text = str(info.value)
    assert "views.py:6: feature view 'by_merchant': unknown entity 'merchant'" in text
    # Static problems are reported first; fix the entity to reach the schema checks.
    repo.root.joinpath("views.py").write_text(
        repo.root.joinpath("views.py").read_text().replace('["merchant"]', '["user"]')
    )
    problems = problems_of(repo)
    assert any(
        "no_key" in p and "join key 'user_id' is missing from the output schema" in p for p in problems
    )
    assert any(
        "wrong_types" in p and "feature type mismatch: 'amount' is declared String" in p for p in problems
    )
    assert any("wrong_types" in p and "'n' is declared Int64 but the output is String" in p for p in problems)
    assert all("views.py:" in p for p in problems)


@pytest.mark.parametrize(
    ("schedule", "start", "message"),
    [
        ("timedelta(minutes=30)", "datetime(2024, 1, 1)", "batch_schedule 0:30:00 is not supported"),
        ("timedelta(days=1)", "datetime(2024, 1, 1, 5)", "is not aligned to batch_schedule"),
        ("timedelta(hours=5)", "datetime(2024, 1, 1)", "batch_schedule 5:00:00 is not supported"),
    ],
)
def test_bad_schedules_are_rejected(tmp_path, schedule, start, message):
    views = GOOD_VIEW.replace("batch_schedule=timedelta(days=1)", f"batch_schedule={schedule}").replace(
        "feature_start_time=datetime(2024, 1, 1)", f"feature_start_time={start}"
    )
    problems = problems_of(events_repo(tmp_path, views))
    assert len(problems) == 1 and message in problems[0] and "views.py:6" in problems[0]


def test_hourly_schedules_are_accepted(tmp_path):
    views = GOOD_VIEW.replace("batch_schedule=timedelta(days=1)", 'batch_schedule="1h"')
    defs = load_definitions(events_repo(tmp_path, views).runtime())
    assert defs.feature_views["amounts"].batch_schedule_seconds == 3600


def test_feature_service_problems(tmp_path):
    services = """
        from views import amounts
        from featureplane import FeatureService

        svc = FeatureService(name="svc", features=[amounts[["amount", "nope"]]])
    """
    problems = problems_of(events_repo(tmp_path, GOOD_VIEW, extra_files={"services.py": services}))
    assert len(problems) == 1
    assert "services.py:5: feature service 'svc': feature view 'amounts' has no feature 'nope'" in problems[0]


def test_import_errors_name_the_file_and_line(tmp_path):
    bad = "x = 1\nraise RuntimeError('boom')\n"
    problems = problems_of(events_repo(tmp_path, GOOD_VIEW, extra_files={"broken.py": bad}))
    assert len(problems) == 1
    assert "broken.py:2" in problems[0] and "RuntimeError: boom" in problems[0]


def test_python_transformations_must_not_use_module_level_names(tmp_path):
    views = """
        from datetime import datetime
        from base import events, user
        from featureplane import Attribute, Float64, batch_feature_view

        FACTOR = 2.0

        @batch_feature_view(sources=[events], entities=[user], mode="pandas",
                            features=[Attribute("amount", Float64)], timestamp_field="ts",
                            feature_start_time=datetime(2024, 1, 1))
        def doubled(events):
            events["amount"] = events["amount"] * FACTOR
            return events
    """
    problems = problems_of(events_repo(tmp_path, views))
    assert len(problems) == 1
    assert "views.py:8" in problems[0] and "FACTOR" in problems[0] and "inside the function" in problems[0]


def test_source_with_missing_table_is_reported(tmp_path):
    repo = events_repo(tmp_path, GOOD_VIEW, tables={"raw.other": "SELECT 1 AS x"})
    problems = problems_of(repo)
    assert len(problems) == 1 and "data source 'events'" in problems[0] and "raw.events" in problems[0]

"""Expectations in the SDK: typed wrappers, suite files, defaults, and the problems plan reports."""

from __future__ import annotations

import json

import pytest
from helpers import events_repo

from featureplane.definitions.base import DefinitionError
from featureplane.definitions.expectations import (
    Between,
    Expectation,
    InSet,
    MatchesRegex,
    MeanBetween,
    NotNull,
    RowCountBetween,
    Unique,
)
from featureplane.monitoring.expectations import resolve_expectations
from featureplane.repo.errors import RepositoryError
from featureplane.repo.planning import apply_plan, plan_repository

VIEW = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, Float64, batch_feature_view
    from featureplane import Between, Expectation, ExpectationSuiteFile, NotNull

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True,
                        expectations=[EXPECTATIONS])
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""


def view_repo(tmp_path, expectations: str, extra_files: dict[str, str] | None = None):
    return events_repo(tmp_path, VIEW.replace("EXPECTATIONS", expectations), extra_files=extra_files)


def test_wrappers_compile_to_gx_types_with_severity_and_names():
    specs = [
        NotNull("a").spec(),
        Between("a", 0, 10, severity="warn").spec(),
        InSet("c", ["x", "y"]).spec(),
        Unique("a").spec(),
        Unique("a", "b").spec(),
        RowCountBetween(1).spec(),
        MeanBetween("a", max_value=5).spec(),
        MatchesRegex("c", r"^u_\d+$").spec(),
        Expectation("expect_column_stdev_to_be_between", column="a", max_value=3).spec(),
    ]
    assert [(s["name"], s["type"], s["severity"]) for s in specs] == [
        ("a_not_null", "expect_column_values_to_not_be_null", "error"),
        ("a_between", "expect_column_values_to_be_between", "warn"),
        ("c_in_set", "expect_column_values_to_be_in_set", "error"),
        ("a_unique", "expect_column_values_to_be_unique", "error"),
        ("a_b_unique", "expect_compound_columns_to_be_unique", "error"),
        ("row_count_between", "expect_table_row_count_to_be_between", "error"),
        ("a_mean_between", "expect_column_mean_to_be_between", "error"),
        ("c_matches_regex", "expect_column_values_to_match_regex", "error"),
        ("a_stdev_to_be_between", "expect_column_stdev_to_be_between", "error"),
    ]
    assert specs[1]["kwargs"] == {"column": "a", "min_value": 0, "max_value": 10}
    assert json.loads(json.dumps(specs)) == specs  # the registry stores them as JSON


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: NotNull("a", severity="fatal"), "severity must be 'error' or 'warn'"),
        (lambda: Between("a"), "needs min_value, max_value or both"),
        (lambda: InSet("a", "xy"), "non-empty list"),
        (lambda: MatchesRegex("a", "("), "not a valid regex"),
        (lambda: Expectation("column_not_null"), "Great Expectations type"),
        (lambda: Between("a", 0, object()), "not JSON-serialisable"),
    ],
)
def test_bad_arguments_fail_where_they_are_written(build, message):
    with pytest.raises(DefinitionError, match=message) as info:
        build()
    assert "test_expectations.py:" in str(info.value)


def test_defaults_come_first_for_every_view(tmp_path):
    repo = view_repo(tmp_path, 'Between("amount", 0, 100, severity="warn")')
    runtime = repo.runtime()
    view = plan_repository(runtime, _live(runtime)).desired.feature_views["amounts"]
    resolved = resolve_expectations(view)
    assert [(e.name, e.severity, e.scope) for e in resolved] == [
        ("user_id_not_null", "error", "window"),
        ("timestamp_in_window", "error", "window"),
        ("unique_key_timestamp", "error", "window"),
        ("schema_matches_declaration", "error", "schema"),
        ("amount_between", "warn", "window"),
    ]


def _live(runtime) -> str:
    runtime.registry.create_workspace("prod", live=True)
    return "prod"


@pytest.mark.parametrize(
    "expectations, message",
    [
        ('NotNull("amout")', "refers to column 'amout', which the view does not output"),
        (
            'Expectation("expect_column_values_to_be_positive", column="amount")',
            "Great Expectations has no expectation 'expect_column_values_to_be_positive'",
        ),
        (
            'Between("amount", 0, 1), Between("amount", 5, 9)',
            "expectation name(s) used twice: amount_between",
        ),
    ],
)
def test_plan_reports_expectation_problems_with_file_and_line(tmp_path, expectations, message):
    repo = view_repo(tmp_path, expectations)
    runtime = repo.runtime()
    with pytest.raises(RepositoryError) as info:
        plan_repository(runtime, _live(runtime))
    assert message in str(info.value)
    assert "views.py:" in str(info.value)


def test_suite_file_is_read_when_the_repository_loads(tmp_path):
    suite = {
        "name": "amount_rules",
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}},
            {
                "type": "expect_column_max_to_be_between",
                "kwargs": {"column": "amount", "max_value": 1000},
                "severity": "warning",
            },
        ],
    }
    repo = view_repo(
        tmp_path,
        'ExpectationSuiteFile("suites/amounts.json")',
        extra_files={"suites/amounts.json": json.dumps(suite)},
    )
    runtime = repo.runtime()
    view = plan_repository(runtime, _live(runtime)).desired.feature_views["amounts"]
    declared = [e for e in resolve_expectations(view) if not e.builtin]
    assert [(e.name, e.severity, e.scope) for e in declared] == [
        ("amount_rules_amount_be_between", "error", "window"),
        ("amount_rules_amount_max_to_be_between", "warn", "partition"),
    ]


def test_missing_suite_file_is_a_clear_error(tmp_path):
    repo = view_repo(tmp_path, 'ExpectationSuiteFile("nope.json")')
    runtime = repo.runtime()
    with pytest.raises(RepositoryError, match=r"ExpectationSuiteFile\('nope.json'\): cannot read"):
        plan_repository(runtime, _live(runtime))


def test_changing_expectations_or_freshness_updates_in_place(tmp_path):
    repo = view_repo(tmp_path, 'NotNull("amount")')
    runtime = repo.runtime()
    apply_plan(runtime, plan_repository(runtime, _live(runtime)))
    views = tmp_path / "views.py"
    views.write_text(
        views.read_text()
        .replace('NotNull("amount")', 'NotNull("amount", severity="warn")')
        .replace("online=True,", "online=True, expected_feature_freshness='36h',")
    )
    plan = plan_repository(runtime, "prod")
    [change] = plan.changes
    assert (change.action, sorted(change.fields)) == (
        "update",
        ["expectations", "expected_freshness_seconds"],
    )
    assert change.new.expected_freshness_seconds == 36 * 3600


def test_great_expectations_is_imported_only_where_validation_runs(tmp_path):
    import subprocess
    import sys

    repo = view_repo(
        tmp_path,
        'Between("amount", 0, 100), ExpectationSuiteFile("s.json")',
        {"s.json": '{"expectations": []}'},
    )
    code = (
        "import sys\n"
        "from featureplane.config import load_config\n"
        "from featureplane.runtime import Runtime\n"
        "from featureplane.repo.planning import apply_plan, plan_repository\n"
        f"runtime = Runtime(load_config({str(repo.config_path)!r}))\n"
        "runtime.registry.create_workspace('prod', live=True)\n"
        "apply_plan(runtime, plan_repository(runtime, 'prod'))\n"
        "import dagster_project.definitions as d\n"
        "d.build_definitions(runtime.config)\n"
        "print('great_expectations' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=repo.env
    )
    assert out.stdout.strip().splitlines()[-1] == "False"

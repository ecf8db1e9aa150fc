"""Stream sources and stream feature views: specs, validation with file:line, plan and apply."""

from __future__ import annotations

import pytest
from helpers import events_repo
from test_repo_validation import problems_of

from featureplane.definitions.specs import from_dict, to_dict
from featureplane.registry.plan import CREATE, RECREATE
from featureplane.repo.planning import apply_plan, load_definitions, plan_repository

STREAM_VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, Field, Float64, KinesisConfig, StreamFeatureView,
                              StreamSource, String, Timestamp, stream_feature_view)

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Float64), Field("merchant", String)])
    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config="events",
                          kinesis=KinesisConfig(stream_name="clicks", region="us-east-1"))

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate("amount", "count", timedelta(minutes=5)),
                                   Aggregate("amount", "sum", timedelta(hours=1)),
                                   Aggregate(Field("merchant", String), "count_distinct", timedelta(hours=1))],
                         online=True, allowed_lateness=timedelta(minutes=2), owner="fraud")
    def payment_counts(record):
        if record["amount"] <= 0:
            return None
        return {**record, "amount": round(record["amount"], 2)}

    last_payment = StreamFeatureView(name="last_payment", source=payments, entities=[user],
                                     features=[Attribute("amount", Float64)], online=True,
                                     ttl=timedelta(days=1))
"""


def test_stream_views_compile_to_serialisable_specs(tmp_path):
    defs = load_definitions(events_repo(tmp_path, STREAM_VIEWS).runtime())
    payments = defs.sources["payments"]
    assert payments.kind == "stream" and payments.batch_source == "events"
    assert payments.stream == {"type": "push"}
    assert defs.sources["clicks"].stream["stream_name"] == "clicks"
    view = defs.feature_views["payment_counts"]
    assert view.kind == "stream" and view.is_stream and view.is_aggregate
    assert view.stream_processing_mode == "continuous"
    assert view.allowed_lateness_seconds == 120 and view.aggregation_interval_seconds == 60
    assert view.timestamp_field == "ts" and view.join_key_names == ["user_id"]
    assert view.feature_names == ["amount_count_5m", "amount_sum_1h", "merchant_count_distinct_1h"]
    assert view.transformation.mode == "python" and "return None" in view.transformation.python
    assert view.location.endswith("views.py:13")
    assert from_dict("feature_view", to_dict(view)) == view
    assert from_dict("data_source", to_dict(payments)) == payments
    plain = defs.feature_views["last_payment"]
    assert plain.transformation is None and plain.ttl_seconds == 86400 and not plain.is_aggregate


def test_the_transformation_runs_from_its_stored_source(tmp_path):
    from featureplane.repo.loader import load_repository

    repo = load_repository(events_repo(tmp_path, STREAM_VIEWS).root)
    view = next(d for d in repo.definitions if d.name == "payment_counts")
    assert view({"user_id": "u1", "amount": 0.0}) is None
    assert view({"user_id": "u1", "amount": 2.345})["amount"] == 2.35


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ('"sum", timedelta(hours=1)', "problem"),
        ("aggregation_interval=timedelta(minutes=1)", "aggregation_interval=timedelta(minutes=7)"),
        ('Aggregate("amount", "count", timedelta(minutes=5))', 'Aggregate("amount", "count", "lifetime")'),
    ],
)
def test_bad_windows_are_reported_with_file_and_line(tmp_path, change, expected):
    if expected == "problem":
        views = STREAM_VIEWS.replace('"sum", timedelta(hours=1)', '"sum", timedelta(seconds=90)')
    else:
        views = STREAM_VIEWS.replace(change, expected)
    problems = problems_of(events_repo(tmp_path, views))
    assert problems and all("views.py:13" in p and "payment_counts" in p for p in problems), problems
    text = " ".join(problems)
    assert "multiple of aggregation_interval" in text or "lifetime windows" in text


def test_a_view_without_transformation_must_find_its_columns_in_the_push_schema(tmp_path):
    views = STREAM_VIEWS.replace('Attribute("amount", Float64)', 'Attribute("amount_usd", Float64)')
    (problem,) = problems_of(events_repo(tmp_path, views))
    assert "views.py:23" in problem and "has no field 'amount_usd'" in problem


def test_a_stream_source_needs_a_batch_config_that_is_a_batch_source(tmp_path):
    views = STREAM_VIEWS.replace('batch_config="events"', 'batch_config="payments"')
    (problem,) = problems_of(events_repo(tmp_path, views))
    assert "clicks" in problem and "views.py:10" in problem and "must be a batch source" in problem


def test_definition_errors_name_the_line(tmp_path):
    views = STREAM_VIEWS.replace('stream_processing_mode="continuous", ', "").replace(
        "online=True, allowed_lateness", 'stream_processing_mode="sometimes", online=True, allowed_lateness'
    )
    (problem,) = problems_of(events_repo(tmp_path, views))
    assert (
        "views.py:13" in problem
        and "stream_processing_mode must be one of continuous, time_interval" in problem
    )
    views = STREAM_VIEWS.replace(
        "batch_config=events,", "batch_config=events, kinesis=KinesisConfig('s', 'r'),"
    )
    (problem,) = problems_of(events_repo(tmp_path, views))
    assert "views.py:7" in problem and "exactly one of push_schema" in problem


def test_plan_and_apply_show_stream_views_and_a_logic_change_recreates(tmp_path):
    repo = events_repo(tmp_path, STREAM_VIEWS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    plan = plan_repository(runtime, "prod")
    created = {c.name: c.action for c in plan.changes}
    assert created["payment_counts"] == CREATE and created["payments"] == CREATE
    apply_plan(runtime, plan)
    assert plan_repository(runtime, "prod").empty
    views = (repo.root / "views.py").read_text().replace("round(record", "abs(record").replace(", 2)}", ")}")
    (repo.root / "views.py").write_text(views)
    again = {c.name: c.action for c in plan_repository(repo.runtime(), "prod").changes}
    assert again == {"payment_counts": RECREATE}
    out = repo.cli("plan", "-w", "prod").stdout
    assert "payment_counts" in out


def test_a_push_stream_source_and_a_feature_table_cannot_share_a_name(tmp_path):
    views = STREAM_VIEWS + (
        "\n    from featureplane import FeatureTable\n"
        '    clash = FeatureTable(name="payments", entities=[user], timestamp_field="ts",\n'
        '                         features=[Attribute("amount", Float64)])\n'
    )
    (problem,) = problems_of(events_repo(tmp_path, views))
    assert "views.py:7" in problem and "a FeatureTable is also named 'payments'" in problem

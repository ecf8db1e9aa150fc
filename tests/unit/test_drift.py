"""Training/serving drift: PSI of served values against the offline values of the same day."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from helpers import events_repo

from featureplane.config import MonitoringSettings
from featureplane.materialization.materialize import materialize
from featureplane.monitoring.drift import (
    categorical_psi,
    compute_drift,
    numeric_psi,
    population_stability_index,
)
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving.monitor import JsonlSink
from featureplane.streams.backfill import backfill_stream_view

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import (Attribute, FeatureService, Field, Float64, StreamFeatureView, StreamSource, String,
                              Timestamp, batch_feature_view, realtime_feature_view)

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64), Attribute("tier", String)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True, ttl=timedelta(days=2))
    def spend(events):
        return f"SELECT user_id, ts, amount, IFF(amount > 25, 'gold', 'basic') AS tier FROM {events}"

    @realtime_feature_view(sources=[spend], mode="python", features=[Attribute("doubled", Float64)])
    def doubled(spend):
        return {"doubled": None if spend["amount"] is None else spend["amount"] * 2}

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp), Field("amount", Float64)])
    last_amount = StreamFeatureView(name="last_amount", source=payments, entities=[user],
                                    features=[Attribute("amount", Float64)], online=True, offline=True,
                                    feature_start_time=datetime(2024, 1, 1))
    live_amount = StreamFeatureView(name="live_amount", source=payments, entities=[user],
                                    features=[Attribute("amount", Float64)], online=True, offline=False)

    svc = FeatureService(name="svc", features=[spend])
    scored = FeatureService(name="scored", features=[spend, doubled])
    streamed = FeatureService(name="streamed", features=[last_amount, live_amount])
"""
USERS = 300
EVENTS = {
    "raw.events": f"SELECT 'u' || i AS user_id, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) MINUTE AS ts, "
    f"CAST(i % 50 AS DOUBLE) AS amount FROM range({USERS}) t(i)"
}
DAY = datetime(2024, 1, 2)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = random.Random(1)
    offline = [rng.gauss(50, 10) for _ in range(5000)]
    same = [rng.gauss(50, 10) for _ in range(2000)]
    shifted = [rng.gauss(65, 10) for _ in range(2000)]
    assert numeric_psi(offline, same, 10)[0] < 0.02
    assert numeric_psi(offline, shifted, 10)[0] > 0.5
    assert categorical_psi(["a"] * 80 + ["b"] * 20, ["a"] * 78 + ["b"] * 22)[0] < 0.01
    assert categorical_psi(["a"] * 80 + ["b"] * 20, ["a"] * 20 + ["b"] * 60 + ["c"] * 20)[0] > 1
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0


@pytest.fixture
def served(tmp_path):
    repo = events_repo(tmp_path, VIEWS, tables=EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    materialize(runtime, state, "spend", datetime(2024, 1, 1), DAY)
    settings = replace(MonitoringSettings.from_config(runtime.config), drift_min_samples=50)
    sink = JsonlSink(settings.serving_log_path)

    def serve(transform, users=USERS, day=DAY, service="svc"):
        records = []
        for i in range(users):
            amount = transform(float(i % 50))
            if service == "streamed":
                features = {"last_amount.amount": amount, "live_amount.amount": amount}
            else:
                features = {"spend.amount": amount, "spend.tier": "gold" if amount > 25 else "basic"}
            records.append(
                {
                    "served_at": (day + timedelta(minutes=i)).isoformat() + "Z",
                    "workspace": "prod",
                    "service": service,
                    "join_keys": {"user_id": f"u{i}"},
                    "features": features,
                }
            )
        sink.write(records)

    return runtime, state, settings, serve


def test_served_values_equal_to_offline_ones_do_not_drift(served):
    runtime, state, settings, serve = served
    serve(lambda amount: amount)
    serve(lambda amount: amount * 100, day=DAY + timedelta(days=1))  # another day: not compared
    report = compute_drift(runtime, state, "svc", DAY, DAY + timedelta(days=1), settings)
    assert report.served_vectors == USERS and report.passed
    assert [(f.feature, f.served, f.offline) for f in report.features] == [
        ("spend.amount", USERS, USERS),
        ("spend.tier", USERS, USERS),
    ]
    assert report.max_psi == pytest.approx(0, abs=1e-9)
    assert "| spend.amount | float64 | 300 | 300 | 0.0% | 0.0000 | ok |" in report.markdown()


def test_a_drifted_sample_fails_with_the_drifted_features(served):
    runtime, state, settings, serve = served
    serve(lambda amount: amount * 3 + 20)
    report = compute_drift(runtime, state, "svc", DAY, DAY + timedelta(days=1), settings)
    assert not report.passed
    assert [f.feature for f in report.drifted] == ["spend.amount", "spend.tier"]
    assert report.metadata()["drifted_features"] == "spend.amount, spend.tier"
    assert report.metadata()["psi/spend.amount"] > settings.psi_threshold
    assert "training/serving drift above PSI 0.2" in report.summary()


def test_too_few_samples_or_none_are_not_drift(served):
    runtime, state, settings, serve = served
    report = compute_drift(runtime, state, "svc", DAY, DAY + timedelta(days=1), settings)
    assert report.passed and report.served_vectors == 0 and "no served feature vectors" in report.summary()
    serve(lambda amount: amount * 10, users=20)
    report = compute_drift(runtime, state, "svc", DAY, DAY + timedelta(days=1), settings)
    assert report.passed and report.features[0].note == "fewer than 50 values"


def test_a_realtime_view_has_no_offline_values_and_is_reported_not_compared(served):
    runtime, state, settings, serve = served
    serve(lambda amount: amount)
    report = compute_drift(runtime, state, "scored", DAY, DAY + timedelta(days=1), settings)
    by_name = {f.feature: f for f in report.features}
    assert by_name["doubled.doubled"].note == "computed at request time: no stored offline values"
    assert by_name["doubled.doubled"].psi is None and report.passed
    assert by_name["spend.amount"].offline == USERS  # the batch view beside it is still compared


def test_a_stream_view_is_compared_with_the_values_rolled_up_from_its_event_log(served):
    runtime, state, settings, serve = served
    backfill_stream_view(runtime, state, "last_amount", datetime(2024, 1, 1), DAY)
    serve(lambda amount: amount, service="streamed")
    report = compute_drift(runtime, state, "streamed", DAY, DAY + timedelta(days=1), settings)
    by_name = {f.feature: f for f in report.features}
    assert (by_name["last_amount.amount"].offline, by_name["last_amount.amount"].note) == (USERS, "")
    assert by_name["last_amount.amount"].psi == pytest.approx(0, abs=1e-9) and report.passed
    assert (
        by_name["live_amount.amount"].note == "stream view with offline=False: no event log to compare with"
    )
    serve(lambda amount: amount * 3 + 20, service="streamed")
    drifted = compute_drift(runtime, state, "streamed", DAY, DAY + timedelta(days=1), settings)
    assert [f.feature for f in drifted.drifted] == ["last_amount.amount"]

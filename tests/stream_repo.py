"""A repository with push stream views, applied to live workspace ``prod``, for the stream tests."""

from __future__ import annotations

from helpers import events_repo

STREAM_REPO_VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, FeatureService, Field, Float64, Int64, StreamFeatureView,
                              StreamSource, String, Timestamp, stream_feature_view)

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Int64), Field("merchant", String)])

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(hours=1)),
                                   Aggregate(Field("merchant", String), "count_distinct", timedelta(hours=1))],
                         online=True, offline=True, allowed_lateness=timedelta(hours=2))
    def payment_counts(record):
        if record["merchant"] == "test":
            return None
        return record

    last_payment = StreamFeatureView(name="last_payment", source=payments, entities=[user],
                                     features=[Attribute("amount", Int64), Attribute("merchant", String)],
                                     online=True, offline=True)

    fraud = FeatureService(name="fraud", features=[payment_counts, last_payment])
"""


def stream_repo(root):
    from featureplane.repo.planning import apply_plan, plan_repository

    repo = events_repo(root, STREAM_REPO_VIEWS)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo


def payment(user: str, ts: str, amount: int, merchant: str = "m1") -> dict:
    return {"record": {"user_id": user, "ts": ts, "amount": amount, "merchant": merchant}}

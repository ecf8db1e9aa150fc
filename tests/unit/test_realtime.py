"""Realtime feature views: computed per request in the lookup service, row by row in training sets,
with the same inputs and checks in both, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest
from helpers import events_repo
from test_repo_validation import problems_of

from featureplane.definitions.base import DefinitionError
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import RetrievalError, Workspace
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, Bool, Field, Float64, FeatureService, Int64, RequestSource,
                              String, Timestamp, batch_feature_view, realtime_feature_view)

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        features=[Attribute("last_amount", Float64), Attribute("last_seen", Timestamp)],
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def latest(events):
        return f"SELECT user_id, ts, amount AS last_amount, ts AS last_seen FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        aggregation_interval=timedelta(hours=1), feature_start_time=datetime(2024, 1, 1), online=True,
                        features=[Aggregate("amount", "count", "1d"), Aggregate("amount", "mean", "lifetime")])
    def spend(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    payment = RequestSource(schema=[Field("amount", Float64), Field("currency", String)])

    @realtime_feature_view(sources=[payment, spend, latest], mode="python",
                           features=[Attribute("ratio", Float64), Attribute("is_large", Bool),
                                     Attribute("seconds_since_last", Float64), Attribute("label", String)])
    def scored(request, spend, latest, context):
        mean = spend["amount_mean_lifetime"]
        seen = latest["last_seen"]
        return {
            "ratio": request["amount"] / mean if mean else None,
            "is_large": mean is not None and request["amount"] > 2 * mean,
            "seconds_since_last": (context.request_timestamp - seen).total_seconds() if seen else None,
            "label": request["currency"] + ":" + str(spend["amount_count_1d"]),
        }

    @realtime_feature_view(sources=[RequestSource(schema=[Field("amount", Float64)])],
                           features=[Attribute("inverse", Float64)])
    def fragile(request):
        return {"inverse": 1 / request["amount"]}

    @realtime_feature_view(sources=[RequestSource(schema=[Field("amount", Float64)])],
                           features=[Attribute("n", Int64)])
    def wrong_type(request):
        return {"n": "seven"}

    svc = FeatureService(name="svc", features=[latest, spend[["amount_count_1d"]], scored])
    fragile_svc = FeatureService(name="fragile_svc", features=[fragile])
    wrong_svc = FeatureService(name="wrong_svc", features=[wrong_type])
"""
# raw.events from helpers: u1 pays 5.0 (Jan 1 10:00) and 7.0 (Jan 2 11:00); u2 pays 1.5 (Jan 1 12:00).
END = datetime(2024, 1, 3)
GET = "/api/v1/feature-service/get-features"


@pytest.fixture
def setup(tmp_path):
    repo = events_repo(tmp_path, VIEWS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    for view in ("latest", "spend"):
        materialize(runtime, state, view, datetime(2024, 1, 1), END)
    return repo, runtime, state


@pytest.fixture
def service(setup) -> LookupService:
    _, runtime, _ = setup
    # Requests are made at the end of the materialized range, so the windows cover what was materialized.
    clock = int((END - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    return LookupService(SnapshotCache(runtime.registry, 0), runtime.online_store, clock=lambda: clock)


def call(service: LookupService, params: dict, path: str = GET) -> tuple[int, dict]:
    response = service.handle(Request("POST", path, {}, json.dumps({"params": params}).encode()))
    return response.status, response.json()


def params(service_name: str = "svc", user: str | None = "u1", **extra) -> dict:
    keys = {"user_id": user} if user else {}
    return {"workspaceName": "prod", "featureServiceName": service_name, "joinKeyMap": keys, **extra}


def test_a_realtime_view_runs_per_request_on_the_context_and_current_values(service):
    status, body = call(
        service,
        params(
            requestContextMap={"amount": 24, "currency": "EUR"},
            metadataOptions={"includeNames": True, "includeSloInfo": True, "includeServingStatus": True},
        ),
    )
    assert status == 200, body
    values = body["result"]["features"]
    names = [m["name"] for m in body["metadata"]["features"]]
    assert names == [
        "latest.last_amount",
        "latest.last_seen",
        "spend.amount_count_1d",
        "scored.ratio",
        "scored.is_large",
        "scored.seconds_since_last",
        "scored.label",
    ]
    # u1's lifetime mean is 6.0 and its 1-day count (as of the end of Jan 2) is 1.
    assert values[:3] == [7.0, "2024-01-02T11:00:00Z", "1"]
    assert values[3:5] == [4.0, True] and values[6] == "EUR:1"
    assert values[5] == (END - datetime(2024, 1, 2, 11)).total_seconds()  # the request time
    assert {m["status"] for m in body["metadata"]["features"]} == {"PRESENT"}
    slo = body["metadata"]["sloInfo"]
    assert 0 <= slo["realtimeComputeSeconds"] <= slo["serverTimeSeconds"]


def test_an_entity_without_data_still_gets_realtime_values(service):
    status, body = call(service, params(user="nobody", requestContextMap={"amount": 3.0, "currency": "USD"}))
    assert status == 200
    # No rows: the plain view is missing, the aggregate's empty count is 0 and the function sees None.
    assert body["result"]["features"] == [None, None, "0", None, False, None, "USD:0"]


def test_the_metadata_endpoint_lists_the_request_context_keys(service):
    status, body = call(
        service, {"workspaceName": "prod", "featureServiceName": "svc"}, "/api/v1/feature-service/metadata"
    )
    assert status == 200
    assert body["inputRequestContextKeys"] == [
        {"name": "amount", "dataType": {"type": "float64"}},
        {"name": "currency", "dataType": {"type": "string"}},
    ]
    assert [f["name"] for f in body["featureValues"]][-4:] == [
        "scored.ratio",
        "scored.is_large",
        "scored.seconds_since_last",
        "scored.label",
    ]


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        (None, "missing request context key(s) amount, currency in params.requestContextMap"),
        ({"amount": 1.0}, "missing request context key(s) currency"),
        ({"amount": "much", "currency": "EUR"}, "requestContextMap.amount must be a float64"),
        ({"amount": True, "currency": "EUR"}, "requestContextMap.amount must be a float64"),
        ({"amount": 1.0, "currency": 5}, "requestContextMap.currency must be a string"),
        ([1, 2], "params.requestContextMap must be an object"),
    ],
)
def test_bad_request_context_is_a_400(service, context, fragment):
    extra = {} if context is None else {"requestContextMap": context}
    status, body = call(service, params(**extra))
    assert status == 400
    assert fragment in body["message"]


def test_errors_inside_the_function_are_500s_naming_the_view(service):
    status, body = call(service, params("fragile_svc", None, requestContextMap={"amount": 0}))
    assert status == 500
    assert (
        body["message"] == "realtime feature view 'fragile' failed: ZeroDivisionError: float division by zero"
    )
    status, body = call(service, params("wrong_svc", None, requestContextMap={"amount": 1}))
    assert status == 500
    assert (
        "realtime feature view 'wrong_type' returned n='seven' (str), which is not int64" in body["message"]
    )
    # The service goes on serving.
    assert call(service, params("fragile_svc", None, requestContextMap={"amount": 4}))[1]["result"][
        "features"
    ] == [0.25]


def test_training_sets_run_the_function_row_by_row_over_the_spine(setup):
    _, runtime, state = setup
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "nobody"],
            "ts": [datetime(2024, 1, 1, 9), datetime(2024, 1, 2, 12, 30), END, END],
            "amount": [10.0, 24.0, 3.0, 1.0],
            "currency": ["EUR", "EUR", "GBP", "USD"],
        },
        index=[7, 5, 3, 1],
    )
    out = Workspace(runtime, state).get_feature_service("svc").get_historical_features(spine, "ts")
    assert list(out.index) == [7, 5, 3, 1]
    assert list(out.columns) == [
        "user_id",
        "ts",
        "amount",
        "currency",
        "latest__last_amount",
        "latest__last_seen",
        "spend__amount_count_1d",
        "scored__ratio",
        "scored__is_large",
        "scored__seconds_since_last",
        "scored__label",
    ]
    # At 12:30 on Jan 2 the daily partition of Jan 2 has not ended, so its tiles count nowhere yet
    # (docs/aggregations.md): u1's lifetime mean is 5.0 and its 1-day count 0.
    assert out["scored__ratio"].tolist()[1:3] == [4.8, 2.0] and pd.isna(out["scored__ratio"].iloc[0])
    assert out["scored__is_large"].tolist() == [False, True, False, False]
    # context.request_timestamp is the spine's timestamp: 1.5 hours after u1's latest event.
    assert out["scored__seconds_since_last"].iloc[1] == 5400.0
    assert out["scored__label"].tolist() == ["EUR:0", "EUR:0", "GBP:0", "USD:0"]


def test_online_answers_equal_the_training_row_at_the_same_time(setup, service):
    _, runtime, state = setup
    request = {"amount": 9.0, "currency": "EUR"}
    _, body = call(service, params(user="u2", requestContextMap=request))
    spine = pd.DataFrame({"user_id": ["u2"], "ts": [END], **{k: [v] for k, v in request.items()}})
    row = Workspace(runtime, state).get_feature_service("svc").get_historical_features(spine, "ts").iloc[0]
    online = body["result"]["features"]
    assert [online[0], int(online[2]), online[3], online[4], online[6]] == [
        row["latest__last_amount"],
        row["spend__amount_count_1d"],
        row["scored__ratio"],
        row["scored__is_large"],
        row["scored__label"],
    ]


def test_training_set_errors_name_the_view_and_the_row(setup):
    _, runtime, state = setup
    ws = Workspace(runtime, state)
    spine = pd.DataFrame({"user_id": ["u1"], "ts": [END]})
    with pytest.raises(RetrievalError, match=r"missing request column\(s\) amount, currency"):
        ws.get_feature_service("svc").get_historical_features(spine, "ts")
    spine = pd.DataFrame({"ts": [END, END], "amount": [1.0, 0.0]})
    with pytest.raises(
        RetrievalError, match=r"realtime feature view 'fragile' failed on spine row 1: ZeroDivisionError"
    ):
        ws.get_feature_view("fragile").get_historical_features(spine, "ts")
    with pytest.raises(RetrievalError, match="computed per request and stores no values"):
        ws.get_feature_view("fragile").get_features_in_range(END, END)


def test_the_sdk_reads_online_features_with_a_request_context(setup):
    _, runtime, state = setup
    ws = Workspace(runtime, state)
    values = ws.get_feature_view("fragile").get_online_features({}, request_context={"amount": 8})
    assert values == {"fragile.inverse": 0.125}
    with pytest.raises(RetrievalError, match="missing request context key"):
        ws.get_feature_service("svc").get_online_features({"user_id": "u1"})


def test_the_lookup_path_runs_realtime_views_without_pandas(setup):
    repo, _, _ = setup
    code = (
        "import sys, json\n"
        "from featureplane.config import load_config\n"
        "from featureplane.serving.app import create_lookup_service\n"
        "from featureplane.serving.protocol import Request\n"
        f"service = create_lookup_service(load_config({str(repo.config_path)!r}))\n"
        "body = {'params': {'workspaceName': 'prod', 'featureServiceName': 'svc', 'joinKeyMap': {'user_id': 'u1'},\n"
        "        'requestContextMap': {'amount': 12, 'currency': 'EUR'}}}\n"
        "response = service.handle(Request('POST', '/api/v1/feature-service/get-features', {}, json.dumps(body).encode()))\n"
        "heavy = ['pandas', 'numpy', 'pyarrow', 'duckdb', 'deltalake', 'dagster', 'sqlglot']\n"
        "print(response.status, sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "200 []"


# -- declarations and validation -----------------------------------------------------------------


def realtime_view(
    body: str, sources: str = "[RequestSource(schema=[Field('x', Float64)])]", **options: str
) -> str:
    extra = "".join(f", {k}={v}" for k, v in options.items())
    return f"""
        from datetime import datetime, timedelta
        from base import events, user
        from featureplane import (Aggregate, Attribute, Field, Float64, FeatureService, Int64, RequestSource,
                                  batch_feature_view, realtime_feature_view)

        @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                            features=[Attribute("amount", Float64)], feature_start_time=datetime(2024, 1, 1),
                            online=False)
        def offline_only(events):
            return f"SELECT user_id, ts, amount FROM {{events}}"

        @realtime_feature_view(sources={sources}, features=[Attribute("y", Float64)]{extra})
        def rt(source):
            {body}
    """


@pytest.mark.parametrize(
    ("view", "fragment"),
    [
        (realtime_view("return {}", mode="'pandas'"), "mode must be 'python'"),
        (
            realtime_view("return {}", sources="[RequestSource(schema=['a']), RequestSource(schema=['b'])]"),
            "takes at most one RequestSource",
        ),
        (realtime_view("return {'y': pd.Series([1])}"), "uses module-level name(s) pd"),
        (realtime_view("return {}", sources="['events']"), "reads data source 'events'"),
        (realtime_view("return {}", sources="[events]"), "sources must be a RequestSource and feature views"),
        (
            realtime_view("return {}", sources="[offline_only]"),
            "reads feature view 'offline_only', which is not online",
        ),
        (realtime_view("return {}", sources="['nothing']"), "unknown source 'nothing'"),
    ],
)
def test_bad_realtime_views_are_reported_with_their_location(tmp_path, view, fragment):
    problems = problems_of(events_repo(tmp_path, view))
    assert any(fragment in p and "views.py:13" in p for p in problems), problems


def test_realtime_features_must_be_attributes():
    from featureplane import Aggregate, RequestSource, realtime_feature_view

    with pytest.raises(DefinitionError, match=r"features must be Attribute\(\.\.\.\)"):

        @realtime_feature_view(sources=[RequestSource(schema=["x"])], features=[Aggregate("x", "sum", "1d")])
        def rt(request):
            return {}


def test_a_service_cannot_declare_one_request_field_with_two_types(tmp_path):
    views = """
        from featureplane import Attribute, Field, Float64, FeatureService, Int64, RequestSource, realtime_feature_view

        @realtime_feature_view(sources=[RequestSource(schema=[Field("x", Float64)])], features=[Attribute("a", Float64)])
        def one(request):
            return {"a": request["x"]}

        @realtime_feature_view(sources=[RequestSource(schema=[Field("x", Int64)])], features=[Attribute("b", Int64)])
        def two(request):
            return {"b": request["x"]}

        both = FeatureService(name="both", features=[one, two])
    """
    problems = problems_of(events_repo(tmp_path, views))
    assert any("request field 'x' is int64 in 'two' but float64 in 'one'" in p for p in problems), problems


def test_realtime_views_are_keyed_by_the_views_they_read(setup):
    _, _, state = setup
    scored = state.feature_view("scored")
    assert scored.kind == "realtime" and scored.entities == ["user"] and scored.join_key_names == ["user_id"]
    assert scored.sources == ["spend", "latest"]
    assert [f.name for f in scored.request_schema] == ["amount", "currency"]
    assert state.feature_view("fragile").join_key_names == []

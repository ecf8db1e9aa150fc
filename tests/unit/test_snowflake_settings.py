"""Snowflake settings from featureplane.yaml: secrets come from the environment and never show up in a
repr, a message or an error; bad settings are named; table names are safe and deterministic."""

from __future__ import annotations

import textwrap

import pytest

from featureplane.compute import create_engine
from featureplane.compute.snowflake.client import SnowflakeClient, SnowflakeError, SnowflakeSettings
from featureplane.config import load_config
from featureplane.offline_stores import create_offline_store
from featureplane.offline_stores.snowflake_sql import table_name

SECRET = "Zq8-secret-p@ss-Word-12"
ENGINE = textwrap.dedent(
    """
    engine:
      type: snowflake
      account: acme-prod
      user: FEATUREPLANE_SVC
      password: ${SF_TEST_PASSWORD}
      role: FEATUREPLANE
      warehouse: TRANSFORMING
      database: ANALYTICS
      schema: RAW
    """
)


def config(tmp_path, text: str):
    path = tmp_path / "featureplane.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


@pytest.fixture(autouse=True)
def password(monkeypatch):
    monkeypatch.setenv("SF_TEST_PASSWORD", SECRET)


def test_the_password_comes_from_the_environment_and_is_never_shown(tmp_path):
    cfg = config(tmp_path, ENGINE + "offline_store: {type: snowflake, schema: FEATURES}\n")
    engine, store = create_engine(cfg), create_offline_store(cfg)
    assert engine.settings.connect_kwargs()["password"] == SECRET
    shown = [repr(cfg), str(cfg), repr(engine), repr(store), str(engine.settings), str(store.describe())]
    for text in shown:
        assert SECRET not in text
    assert "password='***'" in repr(engine.settings)
    assert "password='***'" in repr(cfg)
    assert store.describe() == {
        "type": "snowflake",
        "location": "ANALYTICS.FEATURES",
        "account": "acme-prod",
        "user": "FEATUREPLANE_SVC",
        "role": "FEATUREPLANE",
        "warehouse": "TRANSFORMING",
        "database": "ANALYTICS",
        "schema": "RAW",
        "credentials": "password",
    }
    # The store shares the engine's connection settings, so both use one session.
    assert store.settings == engine.settings


def test_session_parameters_pin_utc_and_tag_queries(tmp_path):
    cfg = config(
        tmp_path, ENGINE + "  query_tag: fraud-features\n  session_parameters: {QUERY_TIMEOUT: 60}\n"
    )
    parameters = create_engine(cfg).settings.connect_kwargs()["session_parameters"]
    assert parameters == {
        "TIMEZONE": "UTC",
        "TIMESTAMP_TYPE_MAPPING": "TIMESTAMP_NTZ",
        "QUERY_TAG": "fraud-features",
        "QUERY_TIMEOUT": 60,
    }


def test_errors_are_scrubbed_of_secrets():
    settings = SnowflakeSettings.from_section({"account": "a", "user": "u", "password": SECRET}, "here")
    error = SnowflakeClient(settings)._error(ValueError(f"login failed for password {SECRET}"), "connecting")
    assert SECRET not in str(error) and "***" in str(error)


def test_a_key_pair_from_the_environment(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"phrase-42"),
    ).decode()
    monkeypatch.setenv("SF_TEST_KEY", pem)
    monkeypatch.setenv("SF_TEST_PHRASE", "phrase-42")
    cfg = config(
        tmp_path,
        """
        engine:
          type: snowflake
          account: acme-prod
          user: FEATUREPLANE_SVC
          private_key: ${SF_TEST_KEY}
          private_key_passphrase: ${SF_TEST_PHRASE}
        """,
    )
    engine = create_engine(cfg)
    kwargs = engine.settings.connect_kwargs()
    assert kwargs["private_key"].key_size == 2048 and "private_key_passphrase" not in kwargs
    assert (
        "phrase-42" not in repr(engine) and "PRIVATE KEY" not in repr(engine) and "PRIVATE" not in repr(cfg)
    )
    monkeypatch.setenv("SF_TEST_PHRASE", "wrong")
    with pytest.raises(SnowflakeError, match="not a readable PEM key") as failure:
        create_engine(config(tmp_path, cfg.path.read_text())).settings.connect_kwargs()
    assert "PRIVATE KEY" not in str(failure.value) and "wrong" not in str(failure.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "engine: {type: snowflake, user: me}\n",
            r"featureplane.yaml: engine: a Snowflake connection needs an account",
        ),
        ("engine: {type: snowflake, account: a}\n", r"engine: a Snowflake connection needs a user"),
        ("engine: {type: snowflake, account: a, user: u, session_parameters: [1]}\n", "must be a mapping"),
        (
            "engine: {type: oracle}\n",
            r"engine.type: 'oracle' is not supported \(choose duckdb or snowflake\)",
        ),
    ],
)
def test_bad_engine_settings_are_named(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        create_engine(config(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "offline_store: {type: snowflake}\n",
            "a Snowflake offline store needs connection settings .* unless the engine is Snowflake too",
        ),
        (
            ENGINE + "offline_store: {type: snowflake, point_in_time_join: merge}\n",
            "must be one of 'asof', 'window'",
        ),
    ],
)
def test_bad_offline_store_settings_are_named(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        create_offline_store(config(tmp_path, text))


def test_table_names_are_safe_deterministic_and_distinct():
    name = table_name("prod/user_daily_spend/g3")
    assert name == table_name("prod/user_daily_spend/g3")
    assert name.startswith("FP_PROD__USER_DAILY_SPEND__G3_") and name.replace("_", "").isalnum()
    # Names that upper-case or join to the same text still get different tables.
    assert table_name("a__b/c/g1") != table_name("a/b__c/g1")
    assert table_name("Prod/v/g1") != table_name("prod/v/g1")


def test_aggregate_sql_for_snowflake_is_snowflake_sql():
    """The stand-in runs Snowflake SQL on DuckDB, so it would also run DuckDB's own spellings (and ignore
    the case of names): make sure the aggregate SQL for Snowflake has none of them and parses as
    Snowflake SQL."""
    from datetime import datetime

    import sqlglot
    from snowflake_helpers import not_snowflake_sql

    from featureplane.compute.aggregation.dialects import SNOWFLAKE
    from featureplane.compute.aggregation.rollup import features_in_range_sql, online_rows_sql, rollup_sql
    from featureplane.compute.aggregation.tiles import latest_materialized_sql, tile_sql
    from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec, FieldSpec

    def agg(name: str, dtype: str, column: str, function: str, window: int | None, **params) -> FeatureSpec:
        return FeatureSpec(name, dtype, "aggregate", column, function, window, params)

    day = 86400
    features = [
        agg("n", "int64", "amount", "count", day),
        agg("s", "float64", "amount", "sum", None),
        agg("m", "float64", "amount", "mean", 7 * day),
        agg("sd", "float64", "amount", "stddev_samp", 7 * day),
        agg("sp", "float64", "amount", "stddev_pop", None),
        agg("lo", "float64", "amount", "min", day),
        agg("hi", "float64", "amount", "max", None),
        agg("f", "float64", "amount", "first", day),
        agg("l", "float64", "amount", "last", None),
        agg("l3", "array<float64>", "amount", "last_n", day, n=3),
        agg("d", "int64", "merchant", "count_distinct", 2 * day, input_type="string"),
        agg("dl", "int64", "merchant", "count_distinct", None, input_type="string"),
    ]
    view = FeatureViewSpec(
        name="spend",
        kind="batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=["transactions"],
        features=features,
        aggregation_interval_seconds=3600,
        batch_schedule_seconds=day,
    )
    dialect = SNOWFLAKE
    points = '(SELECT "user_id", 480000 AS __fp_idx FROM SPINE)'
    statements = {
        "tiles": tile_sql(view, "SELECT * FROM ROWS", dialect),
        "rollup": rollup_sql(view, "TILES", points, dialect=dialect),
        "online": online_rows_sql(view, "TILES", "CANDIDATES", 480000, dialect),
        "range": features_in_range_sql(view, "TILES", datetime(2024, 1, 1), datetime(2024, 1, 5), dialect),
        "latest": latest_materialized_sql(view, "TILES", dialect),
    }
    for what, sql in statements.items():
        assert not_snowflake_sql(sql) == [], what
        sqlglot.parse_one(sql, read="snowflake")
    assert "DATE_PART(EPOCH_MICROSECOND, " in statements["tiles"]
    assert "LAST_VALUE(" in statements["rollup"] and "IGNORE NULLS" in statements["rollup"]
    assert "LATERAL FLATTEN(input => " in statements["rollup"]
    assert "RANGE BETWEEN 24 PRECEDING AND 1 PRECEDING" in statements["rollup"]

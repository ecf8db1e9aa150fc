"""Snowflake settings from featureplane.yaml: secrets come from the environment and never show up in a
repr, a message or an error; bad settings are named; table names are safe and deterministic."""

from __future__ import annotations

import textwrap

import pytest

from featureplane.config import load_config
from featureplane.engines import create_engine
from featureplane.offline_stores import create_offline_store
from featureplane.offline_stores.snowflake import table_name
from featureplane.snowflake_client import SnowflakeClient, SnowflakeError, SnowflakeSettings

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
    assert "'password': '***'" in repr(cfg)
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
            r"engine type 'oracle' is not supported \(expected duckdb or snowflake\)",
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
            "must be one of asof, window",
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


def test_aggregate_views_are_refused_rather_than_stored_as_rows(tmp_path):
    """Tiles and roll-ups of Aggregate features exist on DuckDB/Delta only so far."""
    from datetime import datetime

    from featureplane.engines.base import TransformationError
    from featureplane.specs import FeatureSpec, FeatureViewSpec, FieldSpec

    cfg = config(tmp_path, ENGINE + "offline_store: {type: snowflake}\n")
    view = FeatureViewSpec(
        name="spend_7d",
        kind="batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=["transactions"],
        features=[FeatureSpec("amount_sum_7d", "float64", "aggregate", "amount", "sum", 7 * 86400)],
    )
    with pytest.raises(TransformationError, match="'spend_7d' has Aggregate features"):
        create_engine(cfg).run_transformation(view, {}, datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(SnowflakeError, match="'spend_7d' has Aggregate features"):
        create_offline_store(cfg).read("prod/spend_7d/g1", view)

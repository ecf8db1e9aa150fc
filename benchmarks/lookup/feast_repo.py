"""The fraud-detection example as a Feast repository, for the lookup benchmark's Feast arm.

Run with the Feast virtualenv's Python (never the project's): ``python feast_repo.py REPO_DIR DATA_DIR``
writes the repository, applies it and writes the same latest rows that featureplane serves into Feast's
SQLite online store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

FEATURE_STORE_YAML = """\
project: fraud_benchmark
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

user_daily_spend = FeatureView(
    name="user_daily_spend",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[
        Field(name="spend", dtype=Float64),
        Field(name="transaction_count", dtype=Int64),
        Field(name="max_amount", dtype=Float64),
        Field(name="distinct_merchants", dtype=Int64),
        Field(name="night_share", dtype=Float64),
    ],
    source=FileSource(path="{data}/user_daily_spend.parquet", timestamp_field="ts"),
    online=True,
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="age", dtype=Int64),
        Field(name="country", dtype=String),
        Field(name="credit_limit", dtype=Float64),
        Field(name="signup_ts", dtype=UnixTimestamp),
    ],
    source=FileSource(path="{data}/user_profile.parquet", timestamp_field="updated_at"),
    online=True,
)

fraud_detection = FeatureService(
    name="fraud_detection",
    features=[user_daily_spend, user_profile[["age", "country", "credit_limit"]]],
)
"""


def main(repo: Path, data: Path) -> None:
    import pandas as pd
    from feast import FeatureStore

    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "definitions.py").write_text(textwrap.dedent(DEFINITIONS).replace("{data}", str(data)))
    feast = Path(sys.executable).parent / "feast"
    subprocess.run([str(feast), "apply"], cwd=repo, check=True, capture_output=True)
    store = FeatureStore(repo_path=str(repo))
    for view in ("user_daily_spend", "user_profile"):
        store.write_to_online_store(view, pd.read_parquet(data / f"{view}.parquet"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

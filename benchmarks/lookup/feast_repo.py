"""The fraud-detection example as a Feast repository, for the lookup benchmark's Feast arm.

Run with the Feast virtualenv's Python (never the project's): ``python feast_repo.py REPO_DIR DATA_DIR``
writes the repository, applies the definitions (``benchmarks/feast_definitions.py``) and writes the
same latest rows that featureplane serves into Feast's SQLite online store.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feast_definitions import feature_store_yaml, fraud_definitions


def main(repo: Path, data: Path) -> None:
    import pandas as pd
    from feast import FeatureStore

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(feature_store_yaml(repo, "file"))
    store = FeatureStore(repo_path=str(repo))
    store.apply(fraud_definitions(data).objects)
    for view in ("user_daily_spend", "user_profile"):
        store.write_to_online_store(view, pd.read_parquet(data / f"{view}.parquet"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

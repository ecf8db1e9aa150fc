"""Feast's online publish (`feast materialize`) of the same N entities x 10 features into SQLite.
Runs with Feast's own interpreter (its virtualenv); prints what to time.

usage: publish_feast.py PARQUET REPO_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def main() -> None:
    parquet, repo = sys.argv[1:3]
    repo_dir = Path(repo)
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "feature_store.yaml").write_text(
        textwrap.dedent(
            f"""\
            project: bench
            registry: {repo_dir}/registry.db
            provider: local
            online_store:
              type: sqlite
              path: {repo_dir}/online.db
            entity_key_serialization_version: 3
            """
        )
    )
    (repo_dir / "features.py").write_text(
        textwrap.dedent(
            f"""\
            from datetime import timedelta
            from feast import Entity, FeatureView, Field, FileSource
            from feast.types import Float64, String

            user = Entity(name="user", join_keys=["user_id"])
            source = FileSource(path="{parquet}", timestamp_field="ts")
            bench = FeatureView(
                name="bench", entities=[user], ttl=timedelta(days=3650), online=True, source=source,
                schema=[Field(name="user_id", dtype=String)] + [Field(name=f"f{{i}}", dtype=Float64) for i in range(10)],
            )
            """
        )
    )
    feast = str(Path(sys.executable).parent / "feast")
    subprocess.run([feast, "-c", str(repo_dir), "apply"], check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(
        [feast, "-c", str(repo_dir), "materialize", "2000-01-01T00:00:00", "2100-01-01T00:00:00"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    import sqlite3

    rows = (
        sqlite3.connect(repo_dir / "online.db")
        .execute("SELECT count(DISTINCT entity_key) FROM bench_bench")
        .fetchone()[0]
    )
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()

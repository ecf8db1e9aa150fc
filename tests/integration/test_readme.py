"""The README's "Writing features" code is a repository that applies, materializes and serves training
rows as the README says: a newcomer's first copy-paste must work."""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd
import pytest
from conftest import ROOT, Repo, generate_small_data, write_repo

import featureplane

pytestmark = pytest.mark.integration


def readme_section_code(title: str) -> list[str]:
    """The ```python blocks of one README section."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_writing_features_code_applies_materializes_and_trains(tmp_path):
    blocks = readme_section_code("Writing features")
    assert len(blocks) == 2, "the section's SDK examples changed: update this test"
    service = (
        "\ntraining = FeatureService(\n"
        '    name="training", features=[user_daily_spend, user_transaction_metrics, amount_vs_history]\n)\n'
    )
    config = write_repo(tmp_path / "repo", {"features.py": "\n".join(blocks) + service})
    repo = Repo(config.parent, config)
    generate_small_data(repo)

    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    for view in ("user_daily_spend", "user_transaction_metrics"):
        repo.cli("materialize", view, "-w", "prod", "--start", "2026-10-22", "--end", "2026-11-01")

    spine = pd.DataFrame(
        {
            "user_id": ["user_1", "user_2", "user_unknown"],
            "ts": [datetime(2026, 10, 31, 12), datetime(2026, 10, 30), datetime(2026, 10, 31)],
            "amount": [42.0, 1250.0, 5.0],
        }
    )
    ws = featureplane.get_workspace("prod", config=repo.root)
    training = ws.get_feature_service("training").get_historical_features(spine, timestamp_key="ts")
    assert list(training["user_id"]) == list(spine["user_id"])
    counts = training["user_transaction_metrics__amount_count_7d"]
    means = training["user_transaction_metrics__amount_mean_30d"]
    ratios = training["amount_vs_history__amount_vs_30d_mean"]
    assert counts.iloc[0] > 0 and counts.iloc[2] == 0
    assert ratios.iloc[0] == pytest.approx(42.0 / means.iloc[0])
    assert pd.isna(ratios.iloc[2])

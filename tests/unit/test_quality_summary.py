"""Per-partition aggregate expectations decided by one GX validation of a per-partition summary give the
same results as one GX validation per partition."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from test_quality import D1, DAY, make_view

from featureplane.definitions.expectations import Expectation, MeanBetween, RowCountBetween
from featureplane.monitoring.quality import GXValidator

DAYS = 12


def window_rows() -> pa.Table:
    """Twelve days of rows: day 3 has high amounts, day 5 none at all, day 7 only null amounts, day 9
    exactly 40 rows (a strict bound's edge); a few nulls everywhere."""
    rng = np.random.default_rng(7)
    users, stamps, amounts, ns, countries = [], [], [], [], []
    for day in range(DAYS):
        count = 0 if day == 5 else 40 if day == 9 else int(rng.integers(30, 60))
        for i in range(count):
            users.append(f"u{i}")
            stamps.append(D1 + day * DAY + timedelta(minutes=i))
            amount = float(rng.normal(50, 15)) + (100 if day == 3 else 0)
            amounts.append(None if day == 7 or rng.random() < 0.05 else amount)
            ns.append(None if rng.random() < 0.1 else int(rng.integers(1, 12)))
            countries.append(["US", "FR", "DE", "IT"][int(rng.integers(0, 2 if day == 4 else 4))])
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "ts": pa.array(stamps, pa.timestamp("us")),
            "amount": pa.array(amounts, pa.float64()),
            "n": pa.array(ns, pa.int64()),
            "country": pa.array(countries, pa.string()),
        }
    )


EXPECTATIONS = [
    MeanBetween("amount", 0, 60),
    RowCountBetween(1, 40, name="rows_at_most_40"),
    Expectation("expect_table_row_count_to_be_between", max_value=40, strict_max=True, name="rows_below_40"),
    Expectation("expect_column_min_to_be_between", column="amount", min_value=5, strict_min=True),
    Expectation("expect_column_max_to_be_between", column="n", max_value=10, severity="warn"),
    Expectation("expect_column_sum_to_be_between", column="n", min_value=200),
    Expectation("expect_column_median_to_be_between", column="amount", min_value=48),
    Expectation("expect_column_stdev_to_be_between", column="amount", max_value=16),
    Expectation("expect_column_unique_value_count_to_be_between", column="country", min_value=3),
    Expectation("expect_column_proportion_of_unique_values_to_be_between", column="n", min_value=0.25),
    # Not summarized (an argument the summary does not handle): still evaluated per partition.
    Expectation("expect_column_mean_to_be_between", column="n", min_value=1, row_condition="n > 2"),
]


@pytest.mark.parametrize("days", [1, DAYS])
def test_summary_matches_partition_by_partition(days):
    view = make_view(*EXPECTATIONS)
    table = window_rows()
    table = table.filter(pa.compute.less(table["ts"], pa.scalar(D1 + days * DAY, pa.timestamp("us"))))
    batched = GXValidator(sample_size=5)(view, table, D1, D1 + days * DAY)
    one_by_one = GXValidator(sample_size=5, batched=False)(view, table, D1, D1 + days * DAY)
    assert [r.name for r in batched] == [r.name for r in one_by_one]
    for fast, slow in zip(batched, one_by_one, strict=True):
        assert fast == slow, (fast.summary(), slow.summary())
    if days == DAYS:
        results = {r.name: r for r in batched}
        # The data makes the comparison worth something: failures, skipped and null statistics.
        assert results["amount_mean_between"].failing_partitions == ["2024-01-04", "2024-01-08"]
        observed = results["amount_mean_between"].observed_value
        assert "2024-01-08" not in observed and "2024-01-06" not in observed  # all null; empty: skipped
        assert "2024-01-10" in results["rows_below_40"].failing_partitions  # exactly 40, strict bound
        assert "2024-01-10" not in results["rows_at_most_40"].failing_partitions
        assert results["rows_at_most_40"].observed_value["2024-01-06"] == 0
        assert "2024-01-05" in results["country_unique_value_count_to_be_between"].failing_partitions
        assert not all(r.passed for r in batched)


def test_row_local_expectations_over_groups_of_partitions_match_one_validation():
    from featureplane.definitions.expectations import Between, InSet

    view = make_view(
        Between("amount", 0, 90),
        InSet("country", ["US", "FR", "DE"], severity="warn"),
        Between("n", 2, 11, mostly=0.5, name="n_mostly"),
        RowCountBetween(1),
    )
    table = window_rows()
    users = table.column("user_id").to_pylist()
    users[3] = None  # a null key on the first day
    users[200] = users[201]  # with the same timestamp below: a duplicate (key, timestamp)
    stamps = table.column("ts").to_pylist()
    stamps[201] = stamps[200]
    table = table.set_column(0, "user_id", pa.array(users, pa.string()))
    table = table.set_column(1, "ts", pa.array(stamps, pa.timestamp("us")))
    grouped = GXValidator(sample_size=3, chunk_rows=100)(view, table, D1, D1 + DAYS * DAY)
    whole = GXValidator(sample_size=3, chunk_rows=10**9)(view, table, D1, D1 + DAYS * DAY)
    for a, b in zip(grouped, whole, strict=True):
        assert a == b, (a.summary(), b.summary())
    results = {r.name: r for r in grouped}
    assert results["user_id_not_null"].failing_partitions == ["2024-01-01"]
    assert not results["unique_key_timestamp"].passed
    assert "2024-01-04" in results["amount_between"].failing_partitions


def test_integer_ranges_report_the_same_values_with_or_without_nulls():
    from test_quality import GOOD, rows

    from featureplane.definitions.expectations import Between

    view = make_view(Between("n", 0, 2))
    clean = {r.name: r for r in GXValidator(sample_size=5)(view, rows(*GOOD), D1, D1 + 2 * DAY)}
    with_null = [*GOOD, ("u4", D1 + timedelta(hours=9), 1.0, None, "US")]
    nulls = {r.name: r for r in GXValidator(sample_size=5)(view, rows(*with_null), D1, D1 + 2 * DAY)}
    for results in (clean, nulls):
        check = results["n_between"]
        assert (check.passed, check.unexpected_count, check.unexpected_values) == (False, 1, [3])
        assert type(check.unexpected_values[0]) is int
    assert clean["n_between"].bad_keys == nulls["n_between"].bad_keys
    assert clean["n_between"].bad_keys[0]["user_id"] == "u1"

"""A deterministic generator of card transactions and users for the fraud-detection example.

The same seed, sizes and end date always give the same rows. Users are ``user_0`` .. ``user_<N-1>``;
each has a spending rate and typical amount, so per-user features are stable and learnable; a small
share of transactions are fraudulent (larger amounts, unusual hours and merchants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

CATEGORIES = ["grocery", "restaurants", "travel", "electronics", "fuel", "entertainment", "health", "online"]
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "BR", "IN"]


@dataclass(frozen=True)
class DatasetSize:
    users: int = 10_000
    days: int = 90
    mean_transactions_per_user_day: float = 1.25
    merchants: int = 2_000


def default_end() -> date:
    """Today (UTC): the data covers the days before it, so the newest partition is yesterday's."""
    return datetime.now(UTC).date()


def generate(
    warehouse: Path,
    *,
    size: DatasetSize = DatasetSize(),
    end: date | None = None,
    seed: int = 7,
    on_day: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write ``raw.transactions`` and ``raw.users`` into the DuckDB warehouse, replacing them atomically.

    ``on_day(done, total)`` is called after each generated day (for a progress bar)."""
    import numpy as np
    import pyarrow as pa

    from featureplane.compute.duckdb import connect_warehouse

    end = end or default_end()
    first = datetime.combine(end - timedelta(days=size.days), datetime.min.time())
    rng = np.random.default_rng(seed)
    n = size.users
    user_ids = np.array([f"user_{i}" for i in range(n)], dtype=object)
    rates = rng.lognormal(mean=np.log(size.mean_transactions_per_user_day) - 0.32, sigma=0.8, size=n)
    typical_amount = rng.lognormal(mean=3.4, sigma=0.7, size=n)
    home_country = rng.choice(COUNTRIES, size=n, p=_weights(len(COUNTRIES), rng))
    merchant_weights = 1.0 / np.arange(1, size.merchants + 1) ** 1.1
    merchant_weights /= merchant_weights.sum()

    batches = []
    next_id = 0
    for day in range(size.days):
        day_start = first + timedelta(days=day)
        counts = rng.poisson(rates)
        total = int(counts.sum())
        users = np.repeat(np.arange(n), counts)
        fraud = rng.random(total) < 0.004
        seconds = rng.integers(0, 86_400, size=total)
        seconds = np.where(fraud, rng.integers(0, 5 * 3600, size=total), seconds)
        amounts = typical_amount[users] * rng.lognormal(0.0, 0.5, size=total)
        amounts = np.where(fraud, amounts * rng.uniform(3, 12, size=total), amounts)
        merchants = rng.choice(size.merchants, size=total, p=merchant_weights)
        categories = rng.choice(len(CATEGORIES), size=total)
        countries = np.where(rng.random(total) < 0.95, home_country[users], rng.choice(COUNTRIES, size=total))
        stamps = np.datetime64(day_start, "us") + (
            seconds * 1_000_000 + rng.integers(0, 1_000_000, size=total)
        ).astype("timedelta64[us]")
        order = np.argsort(stamps, kind="stable")
        ids = np.arange(next_id, next_id + total)
        next_id += total
        batches.append(
            pa.record_batch(
                {
                    "transaction_id": pa.array([f"txn_{i}" for i in ids]),
                    "user_id": pa.array(user_ids[users][order].tolist(), pa.string()),
                    "merchant_id": pa.array([f"merchant_{m}" for m in merchants[order]], pa.string()),
                    "category": pa.array(np.array(CATEGORIES)[categories][order].tolist(), pa.string()),
                    "country": pa.array(countries[order].tolist(), pa.string()),
                    "amount": pa.array(np.round(amounts[order], 2), pa.float64()),
                    "is_fraud": pa.array(fraud[order], pa.bool_()),
                    "ts": pa.array(stamps[order], pa.timestamp("us")),
                }
            )
        )
        if on_day:
            on_day(day + 1, size.days)
    transactions = pa.Table.from_batches(batches)

    signup_days = rng.integers(-720, size.days, size=n)
    signup = np.datetime64(first, "us") + (
        signup_days * 86_400_000_000 + rng.integers(0, 86_400_000_000, size=n)
    ).astype("timedelta64[us]")
    # The users table is a daily snapshot: everyone who signed up before the window appears on its first
    # day; later sign-ups appear when they sign up, and some profiles are updated during the window.
    updated = np.maximum(
        signup,
        np.datetime64(first, "us") + rng.integers(0, 6 * 3600 * 1_000_000, size=n).astype("timedelta64[us]"),
    )
    changed = rng.random(n) < 0.15
    later = np.datetime64(first, "us") + rng.integers(0, size.days * 86_400_000_000, size=n).astype(
        "timedelta64[us]"
    )
    updated = np.where(changed & (later > updated), later, updated)
    users_table = pa.table(
        {
            "user_id": pa.array(user_ids.tolist(), pa.string()),
            "signup_ts": pa.array(signup, pa.timestamp("us")),
            "country": pa.array(home_country.tolist(), pa.string()),
            "age": pa.array(rng.integers(18, 90, size=n), pa.int64()),
            "credit_limit": pa.array(
                np.round(rng.choice([1000, 2500, 5000, 10000, 25000], size=n) * 1.0, 2), pa.float64()
            ),
            "updated_at": pa.array(updated, pa.timestamp("us")),
        }
    )

    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(warehouse, read_only=False)
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        con.execute("CREATE SCHEMA IF NOT EXISTS raw").fetchall()
        con.register("transactions_in", transactions)
        con.register("users_in", users_table)
        con.execute(
            "CREATE OR REPLACE TABLE raw.transactions AS SELECT * FROM transactions_in ORDER BY ts"
        ).fetchall()
        con.execute("CREATE OR REPLACE TABLE raw.users AS SELECT * FROM users_in ORDER BY user_id").fetchall()
        con.execute("COMMIT").fetchall()
    finally:
        con.close()
    return {"transactions": transactions.num_rows, "users": users_table.num_rows}


def _weights(k: int, rng) -> list[float]:
    raw = rng.dirichlet([2.0] * k)
    return list(raw / raw.sum())


def data_window(end: date | None, days: int) -> tuple[datetime, datetime]:
    end = end or default_end()
    last = datetime.combine(end, datetime.min.time())
    return last - timedelta(days=days), last

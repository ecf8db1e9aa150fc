"""Engines run feature view transformations: DuckDB locally, Snowflake in production."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featureplane.compute.base import Engine
    from featureplane.config import Config


def create_engine(config: Config) -> Engine:
    kind = config.engine.get("type", "duckdb")
    if kind == "duckdb":
        from featureplane.compute.duckdb import DuckDBEngine

        return DuckDBEngine(config)
    if kind == "snowflake":
        from featureplane.compute.snowflake.engine import SnowflakeEngine

        return SnowflakeEngine(config)
    raise ValueError(f"{config.path}: engine type {kind!r} is not supported (expected duckdb or snowflake)")

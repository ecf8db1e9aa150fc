"""``featureplane example generate``: data for the example repository."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import ConfigOption, config_from, console, err, fail, parse_time_option

example_app = typer.Typer(help="Data for the example repository.", no_args_is_help=True)


@example_app.command("generate")
def example_generate(
    users: Annotated[int, typer.Option(help="Number of users.")] = 10_000,
    days: Annotated[int, typer.Option(help="Days of transactions.")] = 90,
    end: Annotated[
        str | None, typer.Option(help="First day after the data, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same inputs give the same data.")] = 7,
    rate: Annotated[float, typer.Option(help="Mean transactions per user per day.")] = 1.25,
    config: ConfigOption = None,
) -> None:
    """Generate the fraud-detection example's transactions and users into the warehouse."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from featureplane.examples.fraud_data import DatasetSize, generate

    cfg = config_from(config)
    end_date = parse_time_option(end).date() if end else None
    # On Snowflake the data is generated locally, then loaded into the engine's database.
    to_snowflake = cfg.engine.get("type") == "snowflake"
    staging = Path(tempfile.mkdtemp(prefix="featureplane-example-")) if to_snowflake else None
    warehouse = staging / "warehouse.duckdb" if staging else cfg.warehouse_path
    with Progress(
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("days", total=days)
        counts = generate(
            warehouse,
            size=DatasetSize(users=users, days=days, mean_transactions_per_user_day=rate),
            end=end_date,
            seed=seed,
            on_day=lambda done, total: progress.update(task, completed=done),
        )
    destination = str(cfg.warehouse_path)
    if staging:
        import shutil

        from featureplane.compute.snowflake.client import SnowflakeError
        from featureplane.compute.snowflake.engine import copy_from_duckdb

        try:
            copy_from_duckdb(cfg, warehouse, ["raw.transactions", "raw.users"])
        except (SnowflakeError, ValueError) as exc:
            raise fail(str(exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        destination = f"Snowflake ({cfg.engine.get('database')}.RAW)"
    console.print(
        f"Wrote {counts['transactions']:,} transactions and {counts['users']:,} users to {destination}."
    )

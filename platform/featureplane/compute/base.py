"""The engine interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec, SourceSpec
from featureplane.definitions.transformation import (
    CONTEXT_PARAMETER,
    END_PLACEHOLDER,
    START_PLACEHOLDER,
    MaterializationContext,
    load_python_function,
    source_placeholder,
)
from featureplane.types import DataType, Timestamp, compatible

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


class TransformationError(RuntimeError):
    """A transformation failed or produced output that does not match its declaration."""


def lookback(view: FeatureViewSpec) -> timedelta:
    """How far before the window a view's sources are read (aggregations' look-back)."""
    return timedelta(seconds=int(view.options.get("lookback_seconds", 0) or 0))


def with_sources(
    view: FeatureViewSpec, body: str, start: datetime, end: datetime, source_sql: Callable[..., str]
) -> str:
    """A SQL view's ``body`` with the window filled in and each source placeholder defined as a CTE over
    ``source_sql(name, since, end)``: the source's rows from the look-back to the window's end."""
    assert view.transformation is not None
    body = body.replace(START_PLACEHOLDER, start.isoformat(sep=" ")).replace(
        END_PLACEHOLDER, end.isoformat(sep=" ")
    )
    since = start - lookback(view)
    names = dict.fromkeys(p for p in view.transformation.parameters if p != CONTEXT_PARAMETER)
    ctes = [f"{source_placeholder(name)} AS ({source_sql(name, since, end)})" for name in names]
    return f"WITH {', '.join(ctes)} SELECT * FROM ({body}) AS __fp_body"


def call_transformation(
    view: FeatureViewSpec, start: datetime, end: datetime, source_input: Callable[[str], Any]
) -> Any:
    """Call a Python-mode view's stored function with ``source_input(name)`` for each source parameter
    and the window for ``context``."""
    transformation = view.transformation
    if transformation is None:
        raise TransformationError(f"feature view {view.name!r} has no transformation to run")
    function = load_python_function(transformation)
    inputs = [
        MaterializationContext(start, end) if p == CONTEXT_PARAMETER else source_input(p)
        for p in transformation.parameters
    ]
    try:
        return function(*inputs)
    except Exception as exc:
        raise TransformationError(
            f"feature view {view.name!r}: {transformation.function_name}() raised {exc!r}"
        ) from exc


def pandas_output(view: FeatureViewSpec, output: Any) -> pa.Table:
    """A pandas transformation's DataFrame as Arrow (anything else is an error naming the view)."""
    import pandas as pd
    import pyarrow as pa

    if not isinstance(output, pd.DataFrame):
        raise TransformationError(
            f"feature view {view.name!r}: a pandas transformation must return a DataFrame, got {type(output).__name__}"
        )
    return pa.Table.from_pandas(output, preserve_index=False)


def output_fields(view: FeatureViewSpec) -> list[tuple[str, DataType | None]]:
    """The columns a transformation's output must have, in order: join keys, timestamp, attributes."""
    fields = [(k.name, k.type) for k in view.join_keys]
    fields.append((view.timestamp_field, Timestamp))
    return fields + [(f.column or f.name, f.type) for f in view.features if f.kind == "attribute"]


@dataclass(frozen=True)
class OutputColumn:
    """A column of a transformation's output as the engine describes it."""

    name: str
    label: str
    """The engine's own name of its type, for error messages."""
    type_of: Callable[[DataType], DataType | None]
    """The featureplane type it holds, given the declared one (None when unknown)."""


def select_declared(
    view: FeatureViewSpec,
    wanted: list[tuple[str, DataType | None]],
    actual: dict[str, OutputColumn],
    quote: Callable[[str], str],
    cast: Callable[[OutputColumn, DataType], str],
) -> list[str]:
    """The select list that renames and casts an output (``actual``, by lower-case name) to the
    ``wanted`` columns (a declared type of None: any type, kept as it is); TransformationError naming
    every missing or mistyped column."""
    problems, columns = [], []
    for name, declared in wanted:
        found = actual.get(name.lower())
        if found is None:
            problems.append(f"column {name!r} is missing from the output")
        elif declared is None:
            columns.append(f"{quote(found.name)} AS {quote(name)}")
        elif (dtype := found.type_of(declared)) is None or not compatible(declared, dtype):
            problems.append(f"column {name!r} is {found.label} but is declared {declared!r}")
        else:
            columns.append(f"{cast(found, declared)} AS {quote(name)}")
    if problems:
        raise TransformationError(
            f"feature view {view.name!r}: output does not match its declaration: "
            + "; ".join(problems)
            + f" (output columns: {', '.join(c.name for c in actual.values())})"
        )
    return columns


def one_row_per_key_and_time(view: FeatureViewSpec, sql: str, quote: Callable[[str], str]) -> str:
    """Keep one row of ``sql`` per entity and timestamp: a feature view has one value per entity at a
    moment. Of rows that tie, the one the online store would keep wins (the largest feature values,
    nulls last, as the online sync's "latest row" order), so the offline point-in-time join, which
    would otherwise pick any of them, answers what a lookup answers."""
    keys = ", ".join(quote(k) for k in [*view.join_key_names, view.timestamp_field])
    order = ", ".join(
        f"{quote(f.column or f.name)} DESC NULLS LAST"
        for f in view.features
        if f.kind == "attribute" and not f.type.is_array
    )
    ranked = f"ORDER BY {order}" if order else ""
    return f"SELECT * FROM ({sql}) AS __fp_rows QUALIFY row_number() OVER (PARTITION BY {keys} {ranked}) = 1"


class StagedResult(ABC):
    """A transformation's output left where the engine computed it: a Snowflake temporary table, so an
    offline store on the same backend writes it with ``INSERT ... SELECT`` instead of a round trip of
    every row through Python; or a DuckDB table on local disk (``Engine.stages_locally``), which
    validation reads a group of partitions at a time and a store writes as a stream of batches.
    Materialization needs only its row count and null counts."""

    @property
    @abstractmethod
    def num_rows(self) -> int: ...

    @abstractmethod
    def null_count(self, column: str) -> int: ...

    @abstractmethod
    def to_arrow(self) -> pa.Table:
        """The rows, fetched (for validators and for a store on another backend)."""

    def with_markers(
        self, view: FeatureViewSpec, partitions: list[tuple[datetime, datetime]]
    ) -> StagedResult:
        """The staged tiles of an aggregate view plus its partition markers (``aggregation.with_markers``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot stage aggregate tiles")

    def reader(self, batch_rows: int) -> pa.RecordBatchReader:
        """The rows as a stream of record batches (for a store that writes a stream)."""
        return self.to_arrow().to_reader(max_chunksize=batch_rows)

    def chunks(
        self, view: FeatureViewSpec, partitions: list[tuple[datetime, datetime]], max_rows: int
    ) -> Iterator[tuple[datetime, datetime, pa.Table]]:
        """The rows as consecutive groups of whole partitions, ``(start, end, rows)``, each of about
        ``max_rows`` rows at most (a bigger partition alone), so validation holds one group at a time."""
        yield partitions[0][0], partitions[-1][1], self.to_arrow()

    def local_duckdb(self) -> tuple[duckdb.DuckDBPyConnection, str] | None:
        """A DuckDB connection and the relation holding the rows, when they are staged in DuckDB."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Drop the staged rows."""


def null_count(data: pa.Table | StagedResult, column: str) -> int:
    return data.null_count(column) if isinstance(data, StagedResult) else data.column(column).null_count


def as_arrow(data: pa.Table | StagedResult) -> pa.Table:
    return data.to_arrow() if isinstance(data, StagedResult) else data


class Engine(ABC):
    """Runs a feature view's transformation over its sources for a time window."""

    name: str = "engine"

    @abstractmethod
    def check_source(self, source: SourceSpec) -> str | None:
        """A message if the source cannot be read (missing table, missing timestamp column), else None."""

    def not_built_yet(self, source: SourceSpec) -> str | None:
        """A note when the source is built by another tool (a dbt model) that has not built it yet: plans
        then skip its schema checks, which happen when its views first materialize."""
        return None

    @abstractmethod
    def describe(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec]
    ) -> list[tuple[str, DataType | None]] | None:
        """The transformation's output columns and types without running it, or None when that is
        only knowable by running it (Python modes)."""

    @abstractmethod
    def run_transformation(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
    ) -> pa.Table:
        """Rows of the view for events in ``[start, end)``: join keys, timestamp, then features, cast to
        the declared types, sorted by join keys and timestamp."""

    def materialization_rows(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
    ) -> pa.Table:
        """``run_transformation``'s rows for materialization, in whatever order the engine produces most
        cheaply; an engine that can sort by the timestamp alone should (per-partition validation and
        profiles then slice the rows instead of sorting a copy, and the store gets time-clustered files)."""
        return self.run_transformation(view, sources, start, end)

    def stage_transformation(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
    ) -> StagedResult:
        """``run_transformation``'s rows left where the engine computed them, for an offline store on the
        same backend (one whose ``accepts_staged_from(engine)`` is true)."""
        raise NotImplementedError(f"{type(self).__name__} cannot stage results")

    def source_rows(self, source: SourceSpec, start: datetime | None, end: datetime | None) -> Any:
        """The source's rows in ``[start, end)`` as a pandas DataFrame (for notebooks and tests)."""
        raise NotImplementedError

    def stages_locally(self, view: FeatureViewSpec) -> bool:
        """Whether ``stage_transformation`` keeps ``view``'s rows in a local table that spills to disk
        and that any offline store can stream from; materialization then stages them (memory bounded
        by the engine's limit rather than by the window's size)."""
        return False

    def release_memory(self) -> None:  # noqa: B027 - optional hook
        """Give back memory the engine holds after a query whose result was fetched (an embedded
        engine's buffers); never drops staged results."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

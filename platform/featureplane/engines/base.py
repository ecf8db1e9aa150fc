"""The engine interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.specs import FeatureViewSpec, SourceSpec
from featureplane.types import DataType

if TYPE_CHECKING:
    import pyarrow as pa


class TransformationError(RuntimeError):
    """A transformation failed or produced output that does not match its declaration."""


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

    def source_rows(self, source: SourceSpec, start: datetime | None, end: datetime | None) -> Any:
        """The source's rows in ``[start, end)`` as a pandas DataFrame (for notebooks and tests)."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

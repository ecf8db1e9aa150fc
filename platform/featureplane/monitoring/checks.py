"""Check results: what one expectation found on a materialized window, as Dagster asset checks show it,
and the schema check every view gets (on the Arrow schema that is written)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa

QUALITY = "quality"
MAX_LISTED = 20


@dataclass
class CheckResult:
    """One expectation's outcome for a materialization window (one or more partitions)."""

    name: str
    expectation: str
    severity: str
    passed: bool
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    column: str | None = None
    partitions: list[str] = field(default_factory=list)
    failing_partitions: list[str] = field(default_factory=list)
    observed_value: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    bad_keys: list[dict[str, Any]] = field(default_factory=list)
    unexpected_values: list[Any] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    @property
    def blocking(self) -> bool:
        return self.severity == "error"

    @property
    def unexpected_percent(self) -> float | None:
        if self.unexpected_count is None or not self.element_count:
            return None
        return round(100.0 * self.unexpected_count / self.element_count, 4)

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: could not be evaluated: {self.error}"
        verdict = "passed" if self.passed else f"FAILED ({self.severity})"
        parts = [f"{self.name} {verdict}"]
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} unexpected of {self.element_count} rows")
        if self.observed_value is not None and not self.passed:
            parts.append(f"observed {self.observed_value}")
        if self.failing_partitions:
            parts.append("partitions " + ", ".join(self.failing_partitions[:5]))
        if self.bad_keys and not self.passed:
            parts.append(f"e.g. {self.bad_keys[0]}")
        return "; ".join(parts)

    def metadata(self) -> dict[str, Any]:
        """Plain, JSON-safe details (the Dagster code location turns them into check metadata)."""
        data: dict[str, Any] = {
            "featureplane/kind": QUALITY,
            "expectation": self.expectation,
            "arguments": self.kwargs,
            "severity": self.severity,
            "partitions": span(self.partitions),
        }
        if self.column:
            data["column"] = self.column
        if self.observed_value is not None:
            data["observed_value"] = self.observed_value
        if self.element_count is not None:
            data["rows"] = self.element_count
        if self.unexpected_count is not None:
            data["unexpected_count"] = self.unexpected_count
        if self.unexpected_percent is not None:
            data["unexpected_percent"] = self.unexpected_percent
        if self.failing_partitions:
            data["failing_partitions"] = ", ".join(self.failing_partitions[:MAX_LISTED]) + (
                f" (+{len(self.failing_partitions) - MAX_LISTED} more)"
                if len(self.failing_partitions) > MAX_LISTED
                else ""
            )
        if self.bad_keys:
            data["bad_keys_sample"] = self.bad_keys
        if self.unexpected_values:
            data["unexpected_values_sample"] = self.unexpected_values
        if self.error:
            data["error"] = self.error
        return data


def span(keys: Sequence[str]) -> str:
    if not keys:
        return ""
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]} ({len(keys)})"


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy and pandas scalars to Python, NaN/NA to None, times to ISO strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return value if type(value) in (bool, int) else int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    if hasattr(value, "item"):  # numpy scalar
        try:
            return plain(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return str(value)


@dataclass
class Outcome:
    """One GX evaluation of one expectation on one slice of rows."""

    passed: bool
    observed: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    bad_keys: list[dict[str, Any]] = field(default_factory=list)
    unexpected_values: list[Any] = field(default_factory=list)
    failing_partitions: list[str] = field(default_factory=list)
    error: str | None = None


def check_schema(view: FeatureViewSpec, table: pa.Table) -> Outcome:
    """The output's columns, order and Arrow types against the declaration."""
    from featureplane.types import Timestamp, to_arrow

    declared = [(k.name, k.type) for k in view.join_keys]
    declared.append((view.timestamp_field, Timestamp))
    declared += [(f.name, f.type) for f in view.features]
    actual = {f.name: f.type for f in table.schema}
    problems = []
    if table.column_names != [name for name, _ in declared]:
        problems.append(
            f"columns are {', '.join(table.column_names)}; declared {', '.join(n for n, _ in declared)}"
        )
    for name, dtype in declared:
        if name in actual and actual[name] != to_arrow(dtype):
            problems.append(f"{name} is {actual[name]}, declared {dtype!r}")
    observed = ", ".join(f"{f.name} {f.type}" for f in table.schema)
    return Outcome(
        passed=not problems,
        observed="; ".join(problems) if problems else observed,
        element_count=table.num_rows,
    )


def combine_results(chunks: list[list[CheckResult]], sample_size: int) -> list[CheckResult]:
    """One result per expectation for a window validated a group of whole partitions at a time: what
    validating it at once reports (counts summed, failing partitions joined, samples up to
    ``sample_size``), for expectations whose outcome on a group does not depend on the other groups."""
    if len(chunks) == 1:
        return chunks[0]
    combined: list[CheckResult] = []
    for results in zip(*chunks, strict=True):
        first = results[0]
        result = CheckResult(
            name=first.name,
            expectation=first.expectation,
            severity=first.severity,
            passed=all(r.passed for r in results),
            description=first.description,
            kwargs=first.kwargs,
            column=first.column,
            partitions=[k for r in results for k in r.partitions],
            builtin=first.builtin,
        )
        observed: dict[str, Any] = {}
        for r in results:
            if r.element_count is not None:
                result.element_count = (result.element_count or 0) + r.element_count
            if r.unexpected_count is not None:
                result.unexpected_count = (result.unexpected_count or 0) + r.unexpected_count
            result.bad_keys += r.bad_keys[: max(sample_size - len(result.bad_keys), 0)]
            room = max(sample_size - len(result.unexpected_values), 0)
            result.unexpected_values += r.unexpected_values[:room]
            result.failing_partitions += r.failing_partitions
            result.error = result.error or r.error
            if isinstance(r.observed_value, dict) and len(r.partitions) > 1:
                observed.update(r.observed_value)
            elif r.observed_value is not None:
                observed[r.partitions[0] if len(r.partitions) == 1 else span(r.partitions)] = r.observed_value
        values = list(observed.values())
        if values and all(v == values[0] for v in values) and not isinstance(values[0], dict):
            result.observed_value = values[0]  # the same everywhere (a schema): as one validation says it
        elif observed:
            failing = [k for k in observed if k in result.failing_partitions] or list(observed)
            result.observed_value = {k: observed[k] for k in failing[:MAX_LISTED]}
        result.failing_partitions.sort()
        combined.append(result)
    return combined

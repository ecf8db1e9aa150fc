"""Expectations on a feature view's output: thin, typed wrappers over Great Expectations.

>>> @batch_feature_view(..., expectations=[NotNull("country"), Between("spend", 0, 1e5, severity="warn")])

Each expectation has a ``severity``: ``error`` blocks the partition (nothing is written), ``warn`` only
records the failure. Every batch view also gets default expectations: its join keys are not null, its
timestamps fall inside the materialized window, (join keys, timestamp) is unique, and its output schema
matches the declared types. ``ExpectationSuiteFile`` reads a GX suite (JSON) when the repository loads,
so the registry holds its content and a changed file shows up in ``featureplane plan``.

This module is standard library only: Great Expectations is imported where validation runs
(``featureplane.monitoring.quality``).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from featureplane.definitions.base import DefinitionError, caller_location
from featureplane.specs import FeatureViewSpec

ERROR, WARN = "error", "warn"
SEVERITIES = (ERROR, WARN)
GX_SEVERITY = {"critical": ERROR, "warning": WARN, "info": WARN, ERROR: ERROR, WARN: WARN}

# Expectations whose outcome depends on each row alone: one validation over a run's whole window gives
# the same answer as one per partition. Every other expectation (uniqueness, aggregates, row counts)
# is evaluated partition by partition.
ROW_LOCAL_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_match_like_pattern",
        "expect_column_values_to_not_match_like_pattern",
        "expect_column_values_to_match_like_pattern_list",
        "expect_column_values_to_not_match_like_pattern_list",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_match_strftime_format",
        "expect_column_values_to_be_dateutil_parseable",
        "expect_column_values_to_be_json_parseable",
        "expect_column_values_to_match_json_schema",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_to_be_in_set",
        "expect_multicolumn_sum_to_equal",
        "expect_select_column_values_to_be_unique_within_record",
    }
)
# Expectations on one column's aggregate: not evaluated on an empty partition (there is nothing to
# aggregate); require rows with RowCountBetween.
COLUMN_AGGREGATE_PREFIXES = ("expect_column_", "expect_column_pair_cramers")
COLUMN_ARGUMENTS = ("column", "column_A", "column_B")
SCHEMA_TYPE = "featureplane_schema_matches_declaration"
_NAME = re.compile(r"[^A-Za-z0-9_]+")


def _json_value(value: Any, where: str) -> Any:
    """Argument values travel through the registry as JSON: datetimes become ISO strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_json_value(v, where) for v in items]
    if isinstance(value, dict):
        return {str(k): _json_value(v, where) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise DefinitionError(f"{where}: argument value {value!r} is not JSON-serialisable")


def _check_severity(severity: Any, where: str) -> str:
    if severity not in SEVERITIES:
        raise DefinitionError(f"{where}: severity must be 'error' or 'warn', got {severity!r}")
    return severity


def check_name(name: str) -> str:
    """A Dagster-safe check name: letters, digits and underscores."""
    return _NAME.sub("_", name).strip("_")[:100] or "expectation"


def default_name(kind: str, kwargs: dict[str, Any]) -> str:
    """``spend_be_between`` for ``expect_column_values_to_be_between(column="spend")``."""
    column = kwargs.get("column")
    short = kind.removeprefix("expect_").removeprefix("column_values_to_").removeprefix("column_")
    return check_name(f"{column}_{short}" if column else short)


class Expectation:
    """Any Great Expectations expectation, by its snake_case type and keyword arguments.

    >>> Expectation("expect_column_stdev_to_be_between", column="spend", max_value=500, severity="warn")
    """

    def __init__(
        self,
        type: str,
        *,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
        **kwargs: Any,
    ) -> None:
        self.location = caller_location()
        where = f"{self.location}: expectation {type!r}"
        if not isinstance(type, str) or not type.startswith("expect_"):
            raise DefinitionError(
                f"{self.location}: expectation type must be a Great Expectations type such as "
                f"'expect_column_values_to_not_be_null', got {type!r}"
            )
        self.type = type
        self.severity = _check_severity(severity, where)
        self.kwargs = {k: _json_value(v, where) for k, v in kwargs.items() if v is not None}
        self.name = check_name(name) if name else default_name(type, self.kwargs)
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "kwargs": dict(self.kwargs),
            "severity": self.severity,
            "description": self.description,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({args}, severity={self.severity!r})"


class NotNull(Expectation):
    """No value of ``column`` is null (or at least the ``mostly`` fraction of them)."""

    def __init__(
        self,
        column: str,
        *,
        mostly: float | None = None,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        super().__init__(
            "expect_column_values_to_not_be_null",
            column=column,
            mostly=mostly,
            severity=severity,
            name=name or f"{column}_not_null",
            description=description,
        )


class Between(Expectation):
    """Every non-null value of ``column`` lies in ``[min_value, max_value]`` (either bound optional)."""

    def __init__(
        self,
        column: str,
        min_value: float | datetime | None = None,
        max_value: float | datetime | None = None,
        *,
        strict_min: bool = False,
        strict_max: bool = False,
        mostly: float | None = None,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        if min_value is None and max_value is None:
            raise DefinitionError(
                f"{caller_location()}: Between({column!r}) needs min_value, max_value or both"
            )
        super().__init__(
            "expect_column_values_to_be_between",
            column=column,
            min_value=min_value,
            max_value=max_value,
            strict_min=strict_min or None,
            strict_max=strict_max or None,
            mostly=mostly,
            severity=severity,
            name=name or f"{column}_between",
            description=description,
        )


class InSet(Expectation):
    """Every non-null value of ``column`` is one of ``values``."""

    def __init__(
        self,
        column: str,
        values: Sequence[Any],
        *,
        mostly: float | None = None,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        if isinstance(values, str) or not values:
            raise DefinitionError(
                f"{caller_location()}: InSet({column!r}) needs a non-empty list of values, got {values!r}"
            )
        super().__init__(
            "expect_column_values_to_be_in_set",
            column=column,
            value_set=list(values),
            mostly=mostly,
            severity=severity,
            name=name or f"{column}_in_set",
            description=description,
        )


class Unique(Expectation):
    """Within each partition, values of ``column`` (or combinations of ``columns``) are unique."""

    def __init__(
        self,
        *columns: str,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        if not columns:
            raise DefinitionError(f"{caller_location()}: Unique() needs at least one column")
        joined = "_".join(columns)
        if len(columns) == 1:
            super().__init__(
                "expect_column_values_to_be_unique",
                column=columns[0],
                severity=severity,
                name=name or f"{joined}_unique",
                description=description,
            )
        else:
            super().__init__(
                "expect_compound_columns_to_be_unique",
                column_list=list(columns),
                severity=severity,
                name=name or f"{joined}_unique",
                description=description,
            )


class RowCountBetween(Expectation):
    """Each partition has between ``min_value`` and ``max_value`` rows (either bound optional)."""

    def __init__(
        self,
        min_value: int | None = None,
        max_value: int | None = None,
        *,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        if min_value is None and max_value is None:
            raise DefinitionError(
                f"{caller_location()}: RowCountBetween() needs min_value, max_value or both"
            )
        super().__init__(
            "expect_table_row_count_to_be_between",
            min_value=min_value,
            max_value=max_value,
            severity=severity,
            name=name or "row_count_between",
            description=description,
        )


class MeanBetween(Expectation):
    """Each partition's mean of ``column`` lies in ``[min_value, max_value]`` (skipped when empty)."""

    def __init__(
        self,
        column: str,
        min_value: float | None = None,
        max_value: float | None = None,
        *,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        if min_value is None and max_value is None:
            raise DefinitionError(
                f"{caller_location()}: MeanBetween({column!r}) needs min_value, max_value or both"
            )
        super().__init__(
            "expect_column_mean_to_be_between",
            column=column,
            min_value=min_value,
            max_value=max_value,
            severity=severity,
            name=name or f"{column}_mean_between",
            description=description,
        )


class MatchesRegex(Expectation):
    """Every non-null value of ``column`` matches ``regex``."""

    def __init__(
        self,
        column: str,
        regex: str,
        *,
        mostly: float | None = None,
        severity: str = ERROR,
        name: str | None = None,
        description: str = "",
    ) -> None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise DefinitionError(
                f"{caller_location()}: MatchesRegex({column!r}): {regex!r} is not a valid regex: {exc}"
            ) from None
        super().__init__(
            "expect_column_values_to_match_regex",
            column=column,
            regex=regex,
            mostly=mostly,
            severity=severity,
            name=name or f"{column}_matches_regex",
            description=description,
        )


class ExpectationSuiteFile:
    """The expectations of a Great Expectations suite file (JSON), read when the repository loads.

    A relative ``path`` is relative to the file that declares it. Each expectation's ``severity``
    (GX's ``critical``/``warning``/``info``, or ``error``/``warn``) wins over the default ``severity``.
    """

    def __init__(self, path: str | Path, *, severity: str = ERROR) -> None:
        self.location = caller_location()
        where = f"{self.location}: ExpectationSuiteFile({str(path)!r})"
        self.severity = _check_severity(severity, where)
        base = Path(self.location.rsplit(":", 1)[0]).parent
        resolved = Path(path) if Path(path).is_absolute() else base / path
        try:
            data = json.loads(resolved.read_text())
        except OSError as exc:
            raise DefinitionError(f"{where}: cannot read {resolved}: {exc.strerror}") from None
        except ValueError as exc:
            raise DefinitionError(f"{where}: {resolved} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
            raise DefinitionError(f"{where}: {resolved} is not a GX suite (no 'expectations' list)")
        self.path = str(path)
        self.suite = str(data.get("name") or data.get("expectation_suite_name") or resolved.stem)
        self.expectations: list[dict[str, Any]] = []
        for i, item in enumerate(data["expectations"]):
            kind = item.get("type") or item.get("expectation_type") if isinstance(item, dict) else None
            if not isinstance(kind, str) or not kind.startswith("expect_"):
                raise DefinitionError(f"{where}: expectation #{i + 1} has no 'type' such as 'expect_...'")
            kwargs = item.get("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise DefinitionError(f"{where}: expectation #{i + 1} ({kind}): 'kwargs' must be an object")
            meta = item.get("meta") or {}
            level = item.get("severity") or meta.get("severity") or self.severity
            if str(level).lower() not in GX_SEVERITY:
                raise DefinitionError(f"{where}: expectation #{i + 1} ({kind}): unknown severity {level!r}")
            self.expectations.append(
                {
                    "name": check_name(str(meta.get("name") or f"{self.suite}_{default_name(kind, kwargs)}")),
                    "type": kind,
                    "kwargs": _json_value(kwargs, where),
                    "severity": GX_SEVERITY[str(level).lower()],
                    "description": str(item.get("description") or meta.get("notes") or ""),
                }
            )

    def spec(self) -> dict[str, Any]:
        return {"suite": self.suite, "path": self.path, "expectations": list(self.expectations)}


def expectation_specs(items: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """The registry form of a view's ``expectations=[...]``."""
    specs = []
    for item in items:
        if not isinstance(item, Expectation | ExpectationSuiteFile):
            raise DefinitionError(
                f"{where}: expectations must be featureplane expectations such as NotNull('col'), "
                f"Between('col', 0, 1) or ExpectationSuiteFile('suite.json'), got {item!r}"
            )
        specs.append(item.spec())
    return specs


@dataclass(frozen=True)
class ResolvedExpectation:
    """One expectation as validation runs it."""

    name: str
    type: str
    kwargs: dict[str, Any]
    severity: str
    description: str = ""
    builtin: bool = False
    window_scoped: bool = False
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR

    @property
    def column(self) -> str | None:
        value = self.kwargs.get("column") or self.kwargs.get("column_list")
        if isinstance(value, list):
            return ", ".join(value)
        return value

    @property
    def scope(self) -> str:
        """``schema`` (checked on the Arrow schema), ``window`` (one validation for a run's window) or
        ``partition`` (one validation per partition)."""
        if self.type == SCHEMA_TYPE:
            return "schema"
        if self.window_scoped or self.type in ROW_LOCAL_TYPES:
            return "window"
        return "partition"

    @property
    def needs_rows(self) -> bool:
        """Column aggregates (mean, max, ...) are not evaluated on empty partitions."""
        return self.scope == "partition" and self.type.startswith(COLUMN_AGGREGATE_PREFIXES)

    def describe(self) -> str:
        if self.description:
            return self.description
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.type}({args})"


def default_expectations(view: FeatureViewSpec) -> list[ResolvedExpectation]:
    """What every batch view is checked for, whatever it declares."""
    ts = view.timestamp_field
    keys = view.join_key_names
    defaults = [
        ResolvedExpectation(
            name=f"{key}_not_null",
            type="expect_column_values_to_not_be_null",
            kwargs={"column": key},
            severity=ERROR,
            description=f"join key {key} is never null",
            builtin=True,
        )
        for key in keys
    ]
    defaults += [
        ResolvedExpectation(
            name="timestamp_in_window",
            type="expect_column_values_to_be_between",
            kwargs={"column": ts},
            severity=ERROR,
            description=f"{ts} lies inside the materialized window [start, end)",
            builtin=True,
            tags={"window_bounds": True},
        ),
        ResolvedExpectation(
            name="unique_key_timestamp",
            type="expect_compound_columns_to_be_unique",
            kwargs={"column_list": [*keys, ts]},
            severity=ERROR,
            description=f"no two rows share ({', '.join([*keys, ts])})",
            builtin=True,
            window_scoped=True,  # rows of different partitions never share a timestamp
        ),
        ResolvedExpectation(
            name="schema_matches_declaration",
            type=SCHEMA_TYPE,
            kwargs={},
            severity=ERROR,
            description="the output has the declared columns, in order, with the declared types",
            builtin=True,
        ),
    ]
    return defaults


def declared_expectations(view: FeatureViewSpec) -> list[dict[str, Any]]:
    """The view's own expectations with suites flattened, in declaration order."""
    flat: list[dict[str, Any]] = []
    for item in view.expectations:
        if "expectations" in item:
            flat += item["expectations"]
        else:
            flat.append(item)
    return flat


def resolve_expectations(view: FeatureViewSpec) -> list[ResolvedExpectation]:
    """Default then declared expectations, with unique names (a clash gets a numeric suffix)."""
    resolved = default_expectations(view)
    taken = {e.name for e in resolved}
    for item in declared_expectations(view):
        name = check_name(item.get("name") or item["type"])
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}_{n}", n + 1
        taken.add(unique)
        resolved.append(
            ResolvedExpectation(
                name=unique,
                type=item["type"],
                kwargs=dict(item.get("kwargs") or {}),
                severity=item.get("severity", ERROR),
                description=item.get("description", ""),
            )
        )
    return resolved


@cache
def known_gx_types() -> frozenset[str] | None:
    """The expectation types the installed Great Expectations ships, found without importing it."""
    try:
        spec = importlib.util.find_spec("great_expectations")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    core = Path(spec.origin).parent / "expectations" / "core"
    names = frozenset(p.stem for p in core.glob("expect_*.py"))
    return names or None


def expectation_problems(view: FeatureViewSpec) -> list[str]:
    """What is wrong with a view's expectations: unknown types, unknown columns, bad severities."""
    if view.is_aggregate:  # what is validated (and written) for an aggregate view is its tiles
        from featureplane.aggregation import storage_view

        view = storage_view(view)
    if not view.expectations:
        return []
    columns = {*view.join_key_names, *view.feature_names}
    if view.timestamp_field:
        columns.add(view.timestamp_field)
    known = known_gx_types()
    problems = []
    for item in declared_expectations(view):
        name = item.get("name") or item.get("type")
        kind = item.get("type")
        if not isinstance(kind, str):
            problems.append(f"expectation {name!r} has no type")
            continue
        if known is not None and kind not in known:
            close = sorted(t for t in known if kind.removeprefix("expect_")[:12] in t)[:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"expectation {name!r}: Great Expectations has no expectation {kind!r}{hint}")
        if item.get("severity") not in SEVERITIES:
            problems.append(f"expectation {name!r}: severity must be 'error' or 'warn'")
        kwargs = item.get("kwargs") or {}
        referenced = [kwargs[a] for a in COLUMN_ARGUMENTS if isinstance(kwargs.get(a), str)]
        if isinstance(kwargs.get("column_list"), list):
            referenced += kwargs["column_list"]
        for column in referenced:
            if column not in columns:
                problems.append(
                    f"expectation {name!r} refers to column {column!r}, which the view does not output "
                    f"(columns: {', '.join(sorted(columns))})"
                )
    names = [check_name(item.get("name") or item.get("type") or "") for item in declared_expectations(view)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(
            f"expectation name(s) used twice: {', '.join(twice)} (pass name=... to tell them apart)"
        )
    return problems

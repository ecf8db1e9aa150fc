"""Expectations on a feature view's output: thin, typed wrappers over Great Expectations.

>>> @batch_feature_view(..., expectations=[NotNull("country"), Between("spend", 0, 1e5, severity="warn")])

Each expectation has a ``severity``: ``error`` blocks the partition (nothing is written), ``warn`` only
records the failure. Every batch view also gets default expectations: its join keys are not null, its
timestamps fall inside the materialized window, (join keys, timestamp) is unique, and its output schema
matches the declared types. ``ExpectationSuiteFile`` reads a GX suite (JSON) when the repository loads,
so the registry holds its content and a changed file shows up in ``featureplane plan``.

This module is standard library only: ``featureplane.monitoring.expectations`` resolves these for
validation, and Great Expectations is imported only where validation runs (``monitoring.quality``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from featureplane.definitions.base import DefinitionError, caller_location

ERROR, WARN = "error", "warn"
SEVERITIES = (ERROR, WARN)
GX_SEVERITY = {"critical": ERROR, "warning": WARN, "info": WARN, ERROR: ERROR, WARN: WARN}

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

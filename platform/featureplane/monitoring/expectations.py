"""Expectations as validation runs them: each view's defaults plus its declared ones, resolved.

The SDK's expectation classes are in ``featureplane.definitions.expectations``; this module turns a
view's registry form into ``ResolvedExpectation``s and checks them when a repository loads. Standard
library only: Great Expectations is imported where validation runs (``monitoring.quality``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from featureplane.definitions.expectations import ERROR, SEVERITIES, check_name
from featureplane.definitions.specs import FeatureViewSpec

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
        from featureplane.compute.aggregation.tiles import storage_view

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

"""Turning a decorated Python function into a serialisable transformation.

Feature views are materialized from the registry, not from the repository's working tree, so each
transformation is stored as text: a ``snowflake_sql`` function is called once at definition time with
placeholders for its sources and context and its SQL is stored; a ``pandas`` (or ``snowpark``/``python``)
function's source is stored without decorators and run by name. Such a function must import what it uses
inside its body (pandas is available as ``pd``), because module-level names are not serialised.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import symtable
import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import Any

from featureplane.definitions.base import DefinitionError
from featureplane.definitions.specs import TransformationSpec

START_PLACEHOLDER = "__FP_START_TIME__"
END_PLACEHOLDER = "__FP_END_TIME__"
CONTEXT_PARAMETER = "context"
# How a realtime view's RequestSource appears among its transformation's parameters.
REQUEST_PARAMETER = "__fp_request"
PROVIDED_GLOBALS = frozenset({"pd", "np", "datetime", "timedelta", "math"})
PANDAS_GLOBALS = frozenset({"pd", "np"})


def source_placeholder(source_name: str) -> str:
    """The identifier that stands for a source inside a stored SQL transformation."""
    return f"__fp_source_{source_name}"


class _SourcePlaceholder:
    def __init__(self, name: str) -> None:
        self._text = source_placeholder(name)

    def __str__(self) -> str:
        return self._text

    __format__ = lambda self, spec: self._text  # noqa: E731


class _ContextPlaceholder:
    start_time = START_PLACEHOLDER
    end_time = END_PLACEHOLDER


class MaterializationContext:
    """What a transformation knows about the run: the window ``[start_time, end_time)``."""

    def __init__(self, start_time: datetime, end_time: datetime) -> None:
        self.start_time = start_time
        self.end_time = end_time

    def __repr__(self) -> str:
        return f"MaterializationContext(start_time={self.start_time}, end_time={self.end_time})"


class RealtimeContext:
    """What a realtime transformation knows about the request: ``request_timestamp`` (naive UTC), the
    time of the lookup online and the spine's timestamp in a training set."""

    def __init__(self, request_timestamp: datetime) -> None:
        self.request_timestamp = request_timestamp

    def __repr__(self) -> str:
        return f"RealtimeContext(request_timestamp={self.request_timestamp})"


def parameters_of(fn: Callable, source_names: list[str], where: str) -> list[str]:
    """Map the function's positional parameters to sources (in order) and ``context``."""
    params = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    data_params = [p for p in params if p != CONTEXT_PARAMETER]
    if len(data_params) != len(source_names):
        raise DefinitionError(
            f"{where}: function {fn.__name__}() takes {len(data_params)} source parameter(s) "
            f"({', '.join(data_params) or 'none'}) but the view has {len(source_names)} source(s) "
            f"({', '.join(source_names) or 'none'})"
        )
    mapping = iter(source_names)
    return [CONTEXT_PARAMETER if p == CONTEXT_PARAMETER else next(mapping) for p in params]


def sql_transformation(fn: Callable, source_names: list[str], where: str) -> TransformationSpec:
    parameters = parameters_of(fn, source_names, where)
    args = [_ContextPlaceholder() if p == CONTEXT_PARAMETER else _SourcePlaceholder(p) for p in parameters]
    try:
        sql = fn(*args)
    except Exception as exc:
        raise DefinitionError(f"{where}: calling {fn.__name__}() to render its SQL failed: {exc!r}") from exc
    if not isinstance(sql, str) or not sql.strip():
        raise DefinitionError(
            f"{where}: a snowflake_sql function must return a SQL string, got {type(sql).__name__}"
        )
    return TransformationSpec(
        mode="snowflake_sql",
        function_name=fn.__name__,
        parameters=parameters,
        sql=textwrap.dedent(sql).strip(),
    )


def python_transformation(fn: Callable, mode: str, source_names: list[str], where: str) -> TransformationSpec:
    parameters = parameters_of(fn, source_names, where)
    return TransformationSpec(
        mode=mode, function_name=fn.__name__, parameters=parameters, python=function_source(fn, where, mode)
    )


def function_source(fn: Callable, where: str, mode: str = "pandas") -> str:
    """The function's source, decorators removed and normalised (comments and formatting do not count)."""
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise DefinitionError(f"{where}: cannot read the source of {fn.__name__}(): {exc}") from exc
    module = ast.parse(text)
    node = next(
        (
            n
            for n in module.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == fn.__name__
        ),
        None,
    )
    if node is None:
        raise DefinitionError(f"{where}: cannot find the definition of {fn.__name__}() in its source")
    node.decorator_list = []
    source = ast.unparse(node)
    _check_free_names(
        fn, source, where, PROVIDED_GLOBALS - PANDAS_GLOBALS if mode == "python" else PROVIDED_GLOBALS
    )
    return source


def _check_free_names(fn: Callable, source: str, where: str, provided: frozenset[str]) -> None:
    table = symtable.symtable(source, "<transformation>", "exec")
    function_table = next(t for t in table.get_children() if t.get_name() == fn.__name__)
    unknown: set[str] = set()

    def visit(t: symtable.SymbolTable) -> None:
        for symbol in t.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                name = symbol.get_name()
                if not hasattr(builtins, name) and name not in provided:
                    unknown.add(name)
        for child in t.get_children():
            visit(child)

    visit(function_table)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise DefinitionError(
            f"{where}: {fn.__name__}() uses module-level name(s) {names}; transformations are stored as source "
            "and run on their own, so import or define them inside the function"
            + (" (pandas is available as pd)" if "pd" in provided else "")
        )


def load_python_function(spec: TransformationSpec) -> Callable[..., Any]:
    """Rebuild a stored Python transformation."""
    import datetime as _datetime
    import math

    namespace: dict[str, Any] = {
        "datetime": _datetime.datetime,
        "timedelta": _datetime.timedelta,
        "math": math,
    }
    if spec.mode == "pandas":
        import numpy as np
        import pandas as pd

        namespace.update(pd=pd, np=np)
    exec(compile(spec.python or "", f"<transformation {spec.function_name}>", "exec"), namespace)
    return namespace[spec.function_name]

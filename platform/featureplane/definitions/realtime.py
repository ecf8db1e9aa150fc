"""Realtime feature views: features computed per request from request data and other views' values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from featureplane.definitions.base import DefinitionError, check_name
from featureplane.definitions.entity import Field, as_fields
from featureplane.definitions.feature_view import FeatureView
from featureplane.definitions.features import Attribute
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.definitions.transformation import (
    CONTEXT_PARAMETER,
    REQUEST_PARAMETER,
    RealtimeContext,
    load_python_function,
    python_transformation,
)

REALTIME_MODES = ("python",)


class RequestSource:
    """The fields a client sends with each lookup (``requestContextMap``); a training spine carries
    them as columns. ``RequestSource(schema=[Field("amount", Float64)])``."""

    def __init__(self, schema: Sequence[Field | str], name: str = "request") -> None:
        self.name = name
        self.schema = as_fields(list(schema), f"RequestSource {name!r} schema")
        if not self.schema:
            raise DefinitionError(f"RequestSource {name!r} needs at least one field in its schema")

    def __repr__(self) -> str:
        return f"RequestSource({[f.name for f in self.schema]!r})"


class RealtimeFeatureView(FeatureView):
    """A feature view computed inside the lookup service for each request (see ``realtime_feature_view``)."""

    view_kind = "realtime"

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None,
        sources: Sequence[RequestSource | FeatureView | str],
        mode: str,
        features: Sequence[Attribute],
        owner: str,
        description: str,
        tags: dict[str, str] | None,
        location: str,
    ) -> None:
        self.function = function
        self._register(location)
        self.name = check_name("feature view", name or function.__name__, self.location)
        where = f"{self.location}: realtime feature view {self.name!r}"
        if mode not in REALTIME_MODES:
            raise DefinitionError(
                f"{where}: mode must be 'python' (the lookup service runs realtime views as plain Python); got {mode!r}"
            )
        if not sources:
            raise DefinitionError(f"{where}: needs sources=[RequestSource(...), <feature views>]")
        if not features:
            raise DefinitionError(f"{where}: needs features=[Attribute(...), ...]")
        requests = [s for s in sources if isinstance(s, RequestSource)]
        if len(requests) > 1:
            raise DefinitionError(f"{where}: takes at most one RequestSource")
        for source in sources:
            if not isinstance(source, RequestSource | FeatureView | str):
                raise DefinitionError(
                    f"{where}: sources must be a RequestSource and feature views, got {source!r}"
                )
        for feature in features:
            if not isinstance(feature, Attribute):
                raise DefinitionError(f"{where}: features must be Attribute(...), got {feature!r}")
        self.mode = mode
        self.request = requests[0] if requests else None
        self.sources = [s for s in sources if not isinstance(s, RequestSource)]
        self.entities = []
        self.features = list(features)
        self.owner = owner
        self.description = description or (function.__doc__ or "").strip()
        self.tags = dict(tags or {})
        parameters = [REQUEST_PARAMETER if isinstance(s, RequestSource) else _name(s) for s in sources]
        self._transformation = python_transformation(function, mode, parameters, where)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def spec(self) -> FeatureViewSpec:
        return FeatureViewSpec(
            name=self.name,
            kind=self.view_kind,
            entities=[],
            join_keys=[],
            sources=self.source_names,
            features=self.feature_specs(),
            timestamp_field="",
            transformation=self._transformation,
            online=False,
            offline=False,
            owner=self.owner,
            description=self.description,
            tags=dict(self.tags),
            request_schema=[f.spec() for f in self.request.schema] if self.request else [],
            location=self.location,
        )

    def run_function(self, *inputs: Any, request_timestamp: Any = None) -> Any:
        """Run the stored transformation as the lookup service would, on inputs given in source order."""
        fn = load_python_function(self._transformation)
        it = iter(inputs)
        context = RealtimeContext(request_timestamp)
        return fn(*[context if p == CONTEXT_PARAMETER else next(it) for p in self._transformation.parameters])


def _name(source: FeatureView | str) -> str:
    return source if isinstance(source, str) else source.name


def realtime_feature_view(
    *,
    sources: Sequence[RequestSource | FeatureView | str],
    mode: str = "python",
    features: Sequence[Attribute],
    owner: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], RealtimeFeatureView]:
    """Declare a feature view computed per request by a Python function.

    The function takes one argument per source, in order: a dict of the request's fields for the
    ``RequestSource`` and, for each feature view, a dict of that view's current values (``None`` where
    there is none). A parameter named ``context`` receives ``request_timestamp``. It returns a dict with
    one value per declared feature. Online it runs inside the lookup service; in a training set it runs
    once per spine row, whose columns carry the request fields. Like other Python transformations it is
    stored as source: import what it uses inside its body (``math``, ``datetime`` and ``timedelta`` are
    available).
    """
    from featureplane.definitions.base import caller_location

    location = caller_location()

    def decorate(function: Callable[..., Any]) -> RealtimeFeatureView:
        return RealtimeFeatureView(
            function,
            name=name,
            sources=sources,
            mode=mode,
            features=features,
            owner=owner,
            description=description,
            tags=tags,
            location=location,
        )

    return decorate

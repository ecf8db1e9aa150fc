"""Feature services: the ordered set of features a model reads, online and offline."""

from __future__ import annotations

from collections.abc import Sequence

from featureplane.definitions.base import Definition, DefinitionError, check_name
from featureplane.definitions.feature_view import FeatureSelection, FeatureView, FeatureViewReference
from featureplane.definitions.specs import FeatureServiceSpec, ServiceFeatures


class FeatureService(Definition):
    """A named, ordered list of features: whole views or selections like ``view[["a", "b"]]``.

    A view declared in dbt is listed by name (``"user_spend_7d"``) or as ``dbt_feature_view(name)``."""

    kind = "feature_service"

    def __init__(
        self,
        *,
        name: str,
        features: Sequence[FeatureView | FeatureSelection],
        online_serving_enabled: bool = True,
        owner: str = "",
        description: str = "",
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
    ) -> None:
        self._register()
        self.name = check_name("feature service", name, self.location)
        if not features:
            raise DefinitionError(
                f"{self.location}: feature service {name!r} needs at least one feature view"
            )
        self.features = []
        for item in features:
            if isinstance(item, str):
                item = FeatureViewReference(item)
            if isinstance(item, FeatureView):
                item = FeatureSelection(item, [])
            if not isinstance(item, FeatureSelection):
                raise DefinitionError(
                    f"{self.location}: feature service {name!r}: features must be feature views, "
                    f"view[[...]] selections or names of views declared in dbt, got {item!r}"
                )
            self.features.append(item)
        self.online_serving_enabled = online_serving_enabled
        self.owner = owner
        self.description = description
        self.tags = dict(tags or {})
        self.prevent_destroy = bool(prevent_destroy)

    def spec(self) -> FeatureServiceSpec:
        parts = []
        for selection in self.features:
            names = selection.features or [f.name for f in selection.view.feature_specs()]
            parts.append(ServiceFeatures(view=selection.view.name, features=list(names)))
        return FeatureServiceSpec(
            name=self.name,
            features=parts,
            online_serving_enabled=self.online_serving_enabled,
            owner=self.owner,
            description=self.description,
            tags=dict(self.tags),
            prevent_destroy=self.prevent_destroy,
            location=self.location,
        )

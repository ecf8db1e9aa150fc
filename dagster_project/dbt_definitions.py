"""What the dbt project contributes to the code location (none without a ``dbt:`` section).

Apart from ``dbt_assets`` so that a code location without dbt never imports dagster-dbt (over a second
and about 90 MB in every process that loads it, run workers included)."""

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from featureplane.dbt import Manifest


@dataclass
class DbtDefinitions:
    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    source_specs: list[dg.AssetSpec] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    # Partitioned model keys with their partitions, so a view's job can build the models it reads.
    partitions: dict[tuple[str, ...], dg.PartitionsDefinition] = field(default_factory=dict)
    manifest: Manifest | None = None

    @property
    def keys(self) -> set[tuple[str, ...]]:
        return {tuple(key.path) for a in self.assets for key in a.keys}

    def upstream_models(self, model: str) -> list[str]:
        """The model and every model it is built from."""
        if self.manifest is None or self.manifest.model(model) is None:
            return []
        node = self.manifest.models[model]
        names = [self.manifest.nodes[uid]["name"] for uid in self.manifest.upstream(node["unique_id"])]
        return [model, *names]

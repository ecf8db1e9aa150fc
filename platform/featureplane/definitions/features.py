"""Feature declarations: what columns a feature view outputs."""

from __future__ import annotations

from dataclasses import dataclass

from featureplane.definitions.base import DefinitionError
from featureplane.specs import FeatureSpec
from featureplane.types import DataType


@dataclass(frozen=True)
class Attribute:
    """A row-level feature: a column of the transformation's output, stored as it is."""

    name: str
    dtype: DataType
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DataType):
            raise DefinitionError(
                f"Attribute {self.name!r}: type must be a featureplane type such as Int64, got {self.dtype!r}"
            )

    def spec(self) -> FeatureSpec:
        return FeatureSpec(name=self.name, dtype=str(self.dtype), kind="attribute", column=self.name)

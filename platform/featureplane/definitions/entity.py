"""Entities and typed fields."""

from __future__ import annotations

from dataclasses import dataclass

from featureplane.definitions.base import Definition, DefinitionError, check_name
from featureplane.definitions.specs import EntitySpec, FieldSpec
from featureplane.types import DataType, String


@dataclass(frozen=True)
class Field:
    """A named, typed column: a join key, a schema column or a request-context field."""

    name: str
    dtype: DataType = String

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DataType):
            raise DefinitionError(
                f"Field {self.name!r}: type must be a featureplane type such as String, got {self.dtype!r}"
            )

    def spec(self) -> FieldSpec:
        return FieldSpec(self.name, str(self.dtype))


def as_fields(values: list, what: str) -> list[Field]:
    """Fields from ``Field`` objects or bare names (which default to String)."""
    out = []
    for value in values:
        if isinstance(value, Field):
            out.append(value)
        elif isinstance(value, str):
            out.append(Field(value, String))
        else:
            raise DefinitionError(f"{what}: expected Field(...) or a column name, got {value!r}")
    return out


class Entity(Definition):
    """A business object that features describe, identified by typed join keys.

    >>> user = Entity(name="user", join_keys=[Field("user_id", String)])
    """

    kind = "entity"

    def __init__(
        self,
        *,
        name: str,
        join_keys: list[Field | str],
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        self._register()
        self.name = check_name("entity", name, self.location)
        if not join_keys:
            raise DefinitionError(f"{self.location}: entity {name!r} needs at least one join key")
        self.join_keys = as_fields(list(join_keys), f"{self.location}: entity {name!r} join_keys")
        self.description = description
        self.owner = owner
        self.tags = dict(tags or {})

    @property
    def join_key_names(self) -> list[str]:
        return [k.name for k in self.join_keys]

    def spec(self) -> EntitySpec:
        return EntitySpec(
            name=self.name,
            join_keys=[k.spec() for k in self.join_keys],
            description=self.description,
            owner=self.owner,
            tags=dict(self.tags),
            location=self.location,
        )

"""Data sources: where feature views read their input."""

from __future__ import annotations

from featureplane.definitions.base import Definition, DefinitionError, check_name
from featureplane.definitions.entity import Field, as_fields
from featureplane.definitions.specs import SourceSpec
from featureplane.types import Timestamp


class DataSource(Definition):
    kind = "data_source"
    source_kind = "batch"

    def __init__(
        self,
        *,
        name: str,
        timestamp_field: str | None = None,
        schema: list[Field] | None = None,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        self._register()
        self.name = check_name("data source", name, self.location)
        self.timestamp_field = timestamp_field
        self.schema = as_fields(list(schema or []), f"{self.location}: source {name!r} schema")
        self.description = description
        self.owner = owner
        self.tags = dict(tags or {})

    def _spec_fields(self) -> dict:
        return {}

    def spec(self) -> SourceSpec:
        return SourceSpec(
            name=self.name,
            kind=self.source_kind,
            timestamp_field=self.timestamp_field,
            schema=[f.spec() for f in self.schema],
            description=self.description,
            owner=self.owner,
            tags=dict(self.tags),
            location=self.location,
            **self._spec_fields(),
        )


class BatchSource(DataSource):
    """A table in the warehouse (``table="raw.transactions"``) or Parquet files (``path="data/*.parquet"``).

    ``timestamp_field`` is the event time used to select each materialization window.
    """

    def __init__(
        self,
        *,
        name: str,
        timestamp_field: str,
        table: str | None = None,
        path: str | None = None,
        schema: list[Field] | None = None,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            timestamp_field=timestamp_field,
            schema=schema,
            description=description,
            owner=owner,
            tags=tags,
        )
        if (table is None) == (path is None):
            raise DefinitionError(
                f"{self.location}: BatchSource {name!r} needs exactly one of table= or path="
            )
        if not timestamp_field:
            raise DefinitionError(f"{self.location}: BatchSource {name!r} needs a timestamp_field")
        self.table = table
        self.path = path

    def _spec_fields(self) -> dict:
        return {"table": self.table, "path": self.path}


class DbtModel(DataSource):
    """A model of the dbt project named in featureplane.yaml (``dbt: {project_dir: ../dbt}``), read where
    dbt builds it: ``DbtModel("int_user_daily_activity", timestamp_field="ts")``.

    The source's name defaults to the model's. ``timestamp_field`` defaults to the model's ``event_time``
    config. The feature views built on it depend on the model's Dagster asset, and a change to the
    model's SQL (or to a model upstream of it) recreates them.
    """

    def __init__(
        self,
        model: str,
        *,
        timestamp_field: str | None = None,
        name: str | None = None,
        schema: list[Field] | None = None,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=name or model,
            timestamp_field=timestamp_field,
            schema=schema,
            description=description,
            owner=owner,
            tags=tags,
        )
        self.model = check_name("dbt model", model, self.location)
        # Filled in from the dbt manifest when the repository loads.
        self.sql_hash: str | None = None

    def _spec_fields(self) -> dict:
        return {"dbt_model": self.model, "dbt_sql_hash": self.sql_hash}


class PushSource(DataSource):
    """A schema that records are pushed to through the ingest API (``POST /api/v1/ingest``).

    Every record is checked against ``schema``; the FeatureTables that name this source as their
    ``source`` receive the columns they declare. ``timestamp_field`` is the records' event time.
    """

    source_kind = "push"

    def __init__(
        self,
        *,
        name: str,
        schema: list[Field],
        timestamp_field: str,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            timestamp_field=timestamp_field,
            schema=schema,
            description=description,
            owner=owner,
            tags=tags,
        )
        where = f"{self.location}: PushSource {name!r}"
        if not self.schema:
            raise DefinitionError(f"{where} needs a schema=[Field(...), ...]")
        names = [f.name for f in self.schema]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"{where}: field(s) declared twice: {', '.join(duplicates)}")
        types = {f.name: f.dtype for f in self.schema}
        if not timestamp_field or timestamp_field not in types:
            raise DefinitionError(
                f"{where}: timestamp_field {timestamp_field!r} must be one of the schema's fields "
                f"({', '.join(names)})"
            )
        if types[timestamp_field] != Timestamp:
            raise DefinitionError(
                f"{where}: timestamp_field {timestamp_field!r} is {types[timestamp_field]!r}, not Timestamp"
            )

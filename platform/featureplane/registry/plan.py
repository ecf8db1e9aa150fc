"""Plans: the difference between a repository and a workspace's applied state.

Each object is created, updated in place (metadata only: data stays valid), recreated (its materialized
data is rebuilt because what it computes changed) or deleted. A source's change recreates the views that
read it; an entity's change recreates the views keyed by it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featureplane.definitions.specs import (
    ENTITY,
    FEATURE_VIEW,
    KINDS,
    SOURCE,
    DefinitionSet,
    FeatureViewSpec,
    Spec,
    from_dict,
    kind_of,
    semantic_dict,
    to_dict,
)

CREATE, UPDATE, RECREATE, DELETE = "create", "update", "recreate", "delete"
ACTION_ORDER = {DELETE: 0, RECREATE: 1, UPDATE: 2, CREATE: 3}

# Feature view fields whose change invalidates materialized data.
VIEW_RECREATE_FIELDS = frozenset(
    {
        "kind",
        "entities",
        "join_keys",
        "sources",
        "features",
        "timestamp_field",
        "transformation",
        "feature_start_time",
        "batch_schedule_seconds",
        "aggregation_interval_seconds",
        "offline",
        "options",
    }
)
# A FeatureTable's data is what was ingested: only a change to what it stores invalidates it (a change
# to its push source, or to which one feeds it, does not).
TABLE_RECREATE_FIELDS = frozenset({"kind", "entities", "join_keys", "features", "timestamp_field", "offline"})
# Source and entity fields that change the data of the views built on them.
SOURCE_DATA_FIELDS = frozenset(
    {"kind", "table", "path", "dbt_model", "dbt_sql_hash", "timestamp_field", "schema"}
)
# How a changed field reads in a plan's reasons.
FIELD_LABELS = {"dbt_sql_hash": "its dbt model's SQL or a model upstream of it"}
ENTITY_DATA_FIELDS = frozenset({"join_keys"})


@dataclass
class Change:
    action: str
    kind: str
    name: str
    fields: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    old: Spec | None = None
    new: Spec | None = None
    backfill_partitions: int = 0
    blocked: str = ""

    @property
    def destructive(self) -> bool:
        return self.action in (DELETE, RECREATE)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "fields": self.fields,
            "reasons": self.reasons,
            "backfill_partitions": self.backfill_partitions,
            "blocked": self.blocked,
        }

    def transformation_diff(self) -> list[str]:
        """A unified diff of the SQL or Python, for recreates caused by a logic change."""
        if self.kind != FEATURE_VIEW or self.old is None or self.new is None:
            return []
        old, new = self.old.transformation, self.new.transformation  # type: ignore[union-attr]
        old_text = (old.dbt_sql or old.sql or old.python or "") if old else ""
        new_text = (new.dbt_sql or new.sql or new.python or "") if new else ""
        if old_text == new_text:
            return []
        return list(
            difflib.unified_diff(
                old_text.splitlines(), new_text.splitlines(), "applied", "repository", lineterm="", n=1
            )
        )[2:]


@dataclass
class Plan:
    workspace: str
    live: bool
    base_version: int
    changes: list[Change]
    desired: DefinitionSet

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def blocked(self) -> list[Change]:
        """Changes apply refuses (``prevent_destroy`` in a live workspace)."""
        return [c for c in self.changes if c.blocked]

    def counts(self) -> dict[str, int]:
        out = {CREATE: 0, UPDATE: 0, RECREATE: 0, DELETE: 0}
        for change in self.changes:
            out[change.action] += 1
        return out

    def summary(self) -> str:
        if self.empty:
            return "no changes"
        counts = self.counts()
        return ", ".join(f"{n} to {a}" for a, n in counts.items() if n)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "live": self.live,
            "base_version": self.base_version,
            "summary": self.summary(),
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
            "desired": {kind: [to_dict(s) for s in self.desired.by_kind(kind).values()] for kind in KINDS},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """A plan saved with ``plan --out``; applying it re-checks the base version."""
        desired = DefinitionSet()
        for kind in KINDS:
            for item in data["desired"].get(kind, []):
                desired.add(from_dict(kind, item))
        changes = [
            Change(
                action=c["action"],
                kind=c["kind"],
                name=c["name"],
                fields=c["fields"],
                reasons=c["reasons"],
                new=desired.by_kind(c["kind"]).get(c["name"]),
                backfill_partitions=c.get("backfill_partitions", 0),
            )
            for c in data["changes"]
        ]
        return cls(data["workspace"], data["live"], data["base_version"], changes, desired)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str)


def _changed_fields(old: Spec, new: Spec) -> list[str]:
    a, b = semantic_dict(old), semantic_dict(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def build_plan(
    workspace: str,
    live: bool,
    base_version: int,
    current: DefinitionSet,
    desired: DefinitionSet,
    *,
    suppress_recreates: bool = False,
    count_partitions: Callable[[FeatureViewSpec], int] | None = None,
) -> Plan:
    """Diff ``current`` (applied) against ``desired`` (the repository).

    ``count_partitions`` says how many partitions a created or recreated view's backfill covers (the
    plan shows it); without it the plan leaves ``backfill_partitions`` at 0.

    With ``suppress_recreates`` a recreate becomes an in-place update that keeps the materialized data
    (history is not rebuilt with the new logic). In a live workspace, deleting or recreating an object
    whose applied spec has ``prevent_destroy=True`` is marked blocked."""
    changes: list[Change] = []
    changed_sources: dict[str, list[str]] = {}
    changed_entities: dict[str, list[str]] = {}
    for kind in KINDS:
        old_specs, new_specs = current.by_kind(kind), desired.by_kind(kind)
        for name, new in new_specs.items():
            old = old_specs.get(name)
            if old is None:
                changes.append(Change(CREATE, kind, name, new=new))
                continue
            fields = _changed_fields(old, new)
            if not fields:
                continue
            action, reasons = UPDATE, []
            if kind == FEATURE_VIEW:
                table = new.kind == "table" and old.kind == "table"  # type: ignore[union-attr]
                recreate_fields = TABLE_RECREATE_FIELDS if table else VIEW_RECREATE_FIELDS
                data_fields = [f for f in fields if f in recreate_fields]
                if data_fields:
                    action = RECREATE
                    reasons.append(f"{', '.join(data_fields)} changed")
                    if table:
                        reasons.append("the ingested data is discarded")
                if "online" in fields and new.online and not old.online:  # type: ignore[union-attr]
                    reasons.append("online turned on: the online store is filled at the next materialization")
            elif kind == SOURCE:
                data_fields = [f for f in fields if f in SOURCE_DATA_FIELDS]
                if data_fields:
                    changed_sources[name] = data_fields
            elif kind == ENTITY:
                data_fields = [f for f in fields if f in ENTITY_DATA_FIELDS]
                if data_fields:
                    changed_entities[name] = data_fields
            changes.append(Change(action, kind, name, fields=fields, reasons=reasons, old=old, new=new))
        for name, old in old_specs.items():
            if name not in new_specs:
                changes.append(Change(DELETE, kind, name, old=old))

    # Views built on a changed source or entity are recreated even if their own spec did not change.
    by_key = {(c.kind, c.name): c for c in changes}
    for name, view in desired.feature_views.items():
        causes = [
            f"source {s!r} changed ({', '.join(FIELD_LABELS.get(f, f) for f in changed_sources[s])})"
            for s in view.sources
            if s in changed_sources
        ]
        causes += [
            f"entity {e!r} changed ({', '.join(changed_entities[e])})"
            for e in view.entities
            if e in changed_entities
        ]
        if not causes or name not in current.feature_views or view.kind == "table":
            continue
        change = by_key.get((FEATURE_VIEW, name))
        if change is None:
            change = Change(RECREATE, FEATURE_VIEW, name, old=current.feature_views[name], new=view)
            changes.append(change)
        change.action = RECREATE
        change.reasons += causes

    for change in changes:
        if change.action == RECREATE and suppress_recreates:
            change.action = UPDATE
            change.reasons.append("recreate suppressed: existing materialized data is kept, not rebuilt")
        if live and change.action in (DELETE, RECREATE) and getattr(change.old, "prevent_destroy", False):
            change.blocked = (
                f"{kind_label(change.kind)} {change.name!r} has prevent_destroy=True: apply refuses to "
                f"{change.action} it in live workspace {workspace!r} (first apply prevent_destroy=False on its own)"
            )
        if count_partitions and change.action in (CREATE, RECREATE) and change.kind == FEATURE_VIEW and live:
            view = change.new
            if view is not None and view.is_batch and (view.online or view.offline):  # type: ignore[union-attr]
                change.backfill_partitions = count_partitions(view)  # type: ignore[arg-type]
    changes.sort(key=lambda c: (ACTION_ORDER[c.action], KINDS.index(c.kind), c.name))
    return Plan(workspace=workspace, live=live, base_version=base_version, changes=changes, desired=desired)


def kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def specs_equal(a: Spec, b: Spec) -> bool:
    return kind_of(a) == kind_of(b) and semantic_dict(a) == semantic_dict(b)

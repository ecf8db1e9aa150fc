"""The per-service plan: what a lookup needs that depends on the service alone (which tables to read
with which key positions, the compiled vector assemblers, the metadata), computed once per registry
snapshot by ``featureplane.serving.resolve``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featureplane.online_stores.base import OnlineValue
    from featureplane.serving.snapshot import ServiceRead


@dataclass
class ViewPlan:
    ttl_us: int | None
    width: int  # how many of the view's features the service reads
    extract: Callable[[list[Any]], list[Any]]  # stored values -> the service's values, API-encoded


@dataclass
class ServicePlan:
    """Per-service structures computed once per registry snapshot rather than per request."""

    service: ServiceRead
    metadata: list[dict[str, Any]]
    views: list[ViewPlan]
    key_names: tuple[str, ...]
    key_types: tuple[type, ...]  # the Python type a well-formed join key value has
    reads: list[tuple[str, tuple[int, ...] | None]]  # (table_id, key positions; None: the whole key)
    table_ids: tuple[str, ...] | None  # when every read takes the whole key: read_entities
    assemble: Callable[[list[OnlineValue | None], int], list[dict[str, list[Any]]]]
    # Values only, every view stored and keyed by the whole key: read_encoded rows, and each view's
    # ttl for reading them (None: the service cannot be read this way).
    assemble_json: Callable[[list[tuple]], list[dict[str, list[Any]]]] | None
    ttls: tuple[int | None, ...]

    def fresh_after(self, now: int) -> list[int | None]:
        """Each view's oldest event time still within its ttl at ``now`` (exclusive)."""
        return [None if ttl is None else now - ttl for ttl in self.ttls]

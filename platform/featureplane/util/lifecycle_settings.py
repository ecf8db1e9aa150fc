"""The ``lifecycle`` section of ``featureplane.yaml``: how deleting keys and online syncs treat
entities that must go (docs/data-lifecycle.md). Standard library only, as config is."""

from __future__ import annotations

from dataclasses import dataclass

from featureplane.util.settings import Section, setting


@dataclass(frozen=True, kw_only=True, repr=False)
class LifecycleSettings(Section):
    doc = "Deleting keys and removing vanished keys (docs/data-lifecycle.md)."
    delete_vanished_keys: bool = setting(
        True, doc="a full online sync removes the keys the offline store no longer holds"
    )
    delete_wait_seconds: float = setting(
        60.0, minimum=0, doc="how long delete-keys waits for a materialization of the view to finish"
    )

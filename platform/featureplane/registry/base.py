"""The registry interface and the workspace state it holds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from featureplane.definitions.specs import DefinitionSet, FeatureServiceSpec, FeatureViewSpec

if TYPE_CHECKING:
    from featureplane.registry.plan import Plan


class RegistryError(Exception):
    pass


class WorkspaceNotFound(RegistryError):
    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = (
            f" (workspaces: {', '.join(known)})"
            if known
            else " (create it with `featureplane workspace create`)"
        )
        super().__init__(f"workspace {name!r} does not exist{hint}")
        self.name = name


class WorkspaceExists(RegistryError):
    pass


class ConflictError(RegistryError):
    """The workspace changed between the plan and the apply."""


class PlanRefused(RegistryError):
    """The plan would destroy something protected (``prevent_destroy``) in a live workspace."""


def check_workspace_name(name: str) -> str:
    """``name`` if it is a valid workspace name (what every backend stores), else RegistryError."""
    from featureplane.definitions.base import NAME_PATTERN

    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise RegistryError(f"workspace name {name!r:.140} is not valid: use letters, digits and underscores")
    return name


def stale_plan(workspace: str, planned: int, current: int) -> ConflictError:
    return ConflictError(
        f"workspace {workspace!r} changed since the plan was made (planned against version "
        f"{planned}, it is now at version {current}); run plan again"
    )


def refuse_protected(plan: Plan, applied_spec: Callable[[str, str], dict | None]) -> None:
    """PlanRefused if the plan deletes or recreates an object whose applied spec (``applied_spec(kind,
    name)``, None when not applied) has ``prevent_destroy`` (checked for live workspaces)."""
    from featureplane.registry.plan import DELETE, RECREATE

    protected = []
    for change in plan.changes:
        if change.action not in (DELETE, RECREATE):
            continue
        spec = applied_spec(change.kind, change.name)
        if spec is not None and spec.get("prevent_destroy"):
            protected.append(f"{change.kind.replace('_', ' ')} {change.name!r} ({change.action})")
    if protected:
        raise PlanRefused(
            f"refusing to apply to live workspace {plan.workspace!r}: prevent_destroy=True protects "
            f"{', '.join(protected)}; to proceed, first apply prevent_destroy=False on its own "
            "(or use --suppress-recreates to keep the existing data)"
        )


@dataclass(frozen=True)
class WorkspaceInfo:
    name: str
    live: bool
    version: int
    created_at: str
    updated_at: str

    @property
    def kind(self) -> str:
        return "live" if self.live else "development"


@dataclass(frozen=True)
class VersionInfo:
    workspace: str
    version: int
    applied_at: str
    applied_by: str
    summary: str


@dataclass
class WorkspaceState:
    """What is applied to a workspace at one version. ``generations`` names each feature view's current
    materialized data: it changes when the view is recreated, so old data is never read as new."""

    info: WorkspaceInfo
    definitions: DefinitionSet = field(default_factory=DefinitionSet)
    generations: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def live(self) -> bool:
        return self.info.live

    @property
    def version(self) -> int:
        return self.info.version

    def feature_view(self, name: str) -> FeatureViewSpec:
        try:
            return self.definitions.feature_views[name]
        except KeyError:
            known = ", ".join(sorted(self.definitions.feature_views)) or "none"
            raise KeyError(
                f"workspace {self.name!r} has no feature view {name!r} (feature views: {known})"
            ) from None

    def feature_service(self, name: str) -> FeatureServiceSpec:
        try:
            return self.definitions.feature_services[name]
        except KeyError:
            known = ", ".join(sorted(self.definitions.feature_services)) or "none"
            raise KeyError(
                f"workspace {self.name!r} has no feature service {name!r} (feature services: {known})"
            ) from None

    def table_id(self, view: str) -> str:
        """The storage name of the view's current data: ``<workspace>/<view>/g<generation>``."""
        return f"{self.name}/{view}/g{self.generations.get(view, 0)}"


class Registry(ABC):
    @abstractmethod
    def create_workspace(self, name: str, live: bool) -> WorkspaceInfo: ...

    @abstractmethod
    def list_workspaces(self) -> list[WorkspaceInfo]: ...

    @abstractmethod
    def get_workspace(self, name: str) -> WorkspaceInfo: ...

    @abstractmethod
    def delete_workspace(self, name: str) -> None: ...

    @abstractmethod
    def version(self, name: str) -> int:
        """The workspace's current version (cheap; the lookup service polls it)."""

    @abstractmethod
    def load(self, name: str) -> WorkspaceState: ...

    @abstractmethod
    def apply(self, plan: Plan, applied_by: str = "") -> int:
        """Apply the plan as one new version, atomically; ConflictError if the workspace is no longer at
        ``plan.base_version``. Returns the new version."""

    @abstractmethod
    def history(self, name: str) -> list[VersionInfo]: ...

    def plan(
        self,
        name: str,
        desired: DefinitionSet,
        *,
        suppress_recreates: bool = False,
        count_partitions: Callable[[FeatureViewSpec], int] | None = None,
    ) -> Plan:
        """The plan from the workspace's applied state to ``desired``. A registry behind a server
        (``remote``) sends ``desired`` and lets the server plan against what it holds."""
        from featureplane.registry.plan import build_plan

        state = self.load(name)
        return build_plan(
            state.name,
            state.live,
            state.version,
            state.definitions,
            desired,
            suppress_recreates=suppress_recreates,
            count_partitions=count_partitions,
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

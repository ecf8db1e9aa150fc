"""The platform's parts for one configuration, created on first use and shared.

CLI commands, the Dagster code location and the notebook SDK each hold one Runtime; its registry,
engine and stores are opened lazily, so a command pays only for what it touches.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from featureplane.config import Config, load_config

if TYPE_CHECKING:
    from featureplane.compute.base import Engine
    from featureplane.offline_stores.base import OfflineStore
    from featureplane.online_stores.base import OnlineStore
    from featureplane.registry.base import Registry


class Runtime:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()

    @cached_property
    def registry(self) -> Registry:
        from featureplane.registry import open_registry

        return open_registry(self.config)

    @cached_property
    def engine(self) -> Engine:
        from featureplane.compute import create_engine

        return create_engine(self.config)

    @cached_property
    def offline_store(self) -> OfflineStore:
        from featureplane.offline_stores import create_offline_store

        return create_offline_store(self.config)

    @cached_property
    def online_store(self) -> OnlineStore:
        from featureplane.online_stores import create_online_store

        return create_online_store(self.config.online_store, self.config.resolve)

    def close(self) -> None:
        for name in ("engine", "offline_store", "online_store", "registry"):
            part = self.__dict__.pop(name, None)
            if part is not None:
                part.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

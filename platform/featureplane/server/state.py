"""What the server owns for its lifetime: the registry, the access store, the sign-in limiter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Request

from featureplane.config import Config, ServerSettings
from featureplane.server.ratelimit import LoginLimiter

if TYPE_CHECKING:
    from featureplane.access.base import AccessStore, AuditEvent
    from featureplane.registry.base import Registry
    from featureplane.runtime import Runtime

log = logging.getLogger("featureplane.server")


class ServerState:
    def __init__(self, config: Config, runtime: Runtime, access: AccessStore) -> None:
        self.config = config
        self.runtime = runtime
        self.access = access
        self.settings: ServerSettings = config.server
        self.limiter = LoginLimiter(
            self.settings.login_attempts_per_user,
            self.settings.login_attempts_per_address,
            self.settings.login_window_seconds,
        )

    @property
    def registry(self) -> Registry:
        return self.runtime.registry

    def audit(
        self,
        actor: str,
        request: Request,
        action: str,
        workspace: str = "",
        target: str = "",
        detail: str = "",
    ) -> AuditEvent:
        source = request.client.host if request.client else ""
        return self.access.record_audit(actor, action, workspace, target, detail, source)

    def export_snapshot(self) -> None:
        """Refresh the serving snapshot (``serving.registry_snapshot``) after a change it holds: applies
        to live workspaces, and keys and roles. A failure is logged; the change itself stands."""
        if not (self.config.serving or {}).get("registry_snapshot"):
            return
        from featureplane.repo.planning import export_serving_snapshot

        try:
            export_serving_snapshot(self.runtime)
        except RuntimeError as exc:
            log.error("%s", exc)

    def close(self) -> None:
        self.access.close()
        self.runtime.close()


def server_state(request: Request) -> ServerState:
    return request.app.state.featureplane

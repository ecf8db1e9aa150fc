"""The ASGI application: the JSON API under ``/api/v1``, ``/healthz``, ``/openapi.json``, and the web
UI's pages under ``/ui`` (outside ``/api/``), sharing the same state and checks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from featureplane import __version__
from featureplane.config import Config, ConfigError
from featureplane.server.api import api_router
from featureplane.server.errors import ApiError, install
from featureplane.server.state import ServerState
from featureplane.server.web import install_web

Scope = dict[str, Any]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or as they arrive."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> ApiError:
        return ApiError(413, "too_large", f"the request body is larger than {self.max_bytes} bytes")

    async def _refuse(self, send: Any) -> None:
        error = self._too_large()
        body = json.dumps({"detail": error.detail, "error": error.code}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ApiHeaders:
    """API answers are never cached (they carry tokens and access state) nor sniffed as another type."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(config: Config) -> FastAPI:
    """The server for ``config``'s registry and access store (SQLite or PostgreSQL: the server owns
    them; a ``remote`` registry would be another server)."""
    from featureplane.access import open_access_store
    from featureplane.runtime import Runtime

    if config.registry.type == "remote":
        raise ConfigError(
            f"{config.path}: registry.type is remote: the server needs the registry itself "
            "(sqlite or postgres), not another server"
        )
    state = ServerState(config, Runtime(config), open_access_store(config))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="featureplane server",
        version=__version__,
        description=(
            "The account of a featureplane team: workspaces, plan and apply, applied objects and their "
            "history, users, service accounts, roles, API keys and the audit log. Every route but "
            "/api/v1/login and /healthz needs `Authorization: Bearer <session token or API key>`."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.featureplane = state
    install(app)
    app.add_middleware(ApiHeaders)
    app.add_middleware(BodyLimit, max_bytes=config.server.max_body_bytes)
    app.include_router(api_router())
    install_web(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Whether the server answers (no sign-in needed)."""
        return {"status": "ok"}

    app.head("/healthz", include_in_schema=False)(healthz)

    return app

"""The account server (``featureplane server``): the only way to the registry and the access store of a
team, enforcing roles on every call.

``create_app(config)`` builds the ASGI application: the JSON API under ``/api/v1`` (OpenAPI at
``/openapi.json``) and room for web pages beside it. Imported only by the server and its tests: FastAPI
is not on the CLI's or the lookup service's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from featureplane.config import Config


def create_app(config: Config) -> FastAPI:
    from featureplane.server.app import create_app as create

    return create(config)


__all__ = ["create_app"]

"""The JSON API under ``/api/v1``, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

PREFIX = "/api/v1"


def api_router() -> APIRouter:
    from featureplane.server.api import access, audit, lifecycle, planning, session, users, workspaces

    router = APIRouter(prefix=PREFIX)
    for module in (session, workspaces, planning, lifecycle, users, access, audit):
        router.include_router(module.router)
    return router

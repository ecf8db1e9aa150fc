"""Errors as JSON ``{"detail": one line, "error": code}`` with the status that fits, never a 500 for bad
input. The client turns ``error`` back into the exception the CLI already handles.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from featureplane.access.base import AccessError
from featureplane.errors import FeatureplaneError
from featureplane.registry.base import (
    ConflictError,
    PlanRefused,
    RegistryError,
    WorkspaceExists,
    WorkspaceNotFound,
)

log = logging.getLogger("featureplane.server")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def unauthenticated(detail: str) -> ApiError:
    return ApiError(401, "unauthenticated", detail, {"WWW-Authenticate": "Bearer"})


def workspace_not_found(name: str) -> ApiError:
    """The same answer whether the workspace does not exist or the caller has no role on it."""
    return ApiError(
        404, "workspace_not_found", f"workspace {name!r} does not exist or you have no role on it"
    )


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def as_api_error(exc: RegistryError | AccessError) -> ApiError:
    """The answer to a registry or access store refusal (a 404 for an unknown workspace, 409 for a
    conflict, else 400), for the JSON API and the web pages alike."""
    if isinstance(exc, WorkspaceNotFound):
        return workspace_not_found(exc.name)
    if isinstance(exc, WorkspaceExists):
        return ApiError(409, "workspace_exists", str(exc))
    if isinstance(exc, ConflictError):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, PlanRefused):
        return ApiError(409, "plan_refused", str(exc))
    message = str(exc)
    if isinstance(exc, AccessError) and message.startswith("no "):
        return not_found(message)
    if isinstance(exc, AccessError) and message.endswith("already exists"):
        return ApiError(409, "exists", message)
    return ApiError(400, "invalid", message)


def _json(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": code}, status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what: the input itself may be a password.
        problems = [f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
        return _json(422, "invalid", "; ".join(problems) or "the request is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _json(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RegistryError)
    @app.exception_handler(AccessError)
    async def known(request: Request, exc: Exception) -> JSONResponse:
        error = as_api_error(exc)
        return _json(error.status, error.code, error.detail)

    @app.exception_handler(FeatureplaneError)
    async def unavailable(request: Request, exc: FeatureplaneError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _json(503, "unavailable", "the server cannot use its registry right now; try again later")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _json(500, "internal", "internal server error (the server's log has the details)")

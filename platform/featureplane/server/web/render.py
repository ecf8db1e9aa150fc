"""Rendering pages: the Jinja2 environment (autoescaping everything), the answer to every refusal as a
page, the headers every page carries, and reading forms."""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from featureplane.access.base import AccessError
from featureplane.errors import FeatureplaneError
from featureplane.registry.base import RegistryError
from featureplane.server.errors import ApiError, as_api_error
from featureplane.server.web.session import CSRF_FIELD, SignInNeeded, csrf_token

log = logging.getLogger("featureplane.server")
HERE = Path(__file__).parent
PREFIX = "/ui"
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
# What a valid value of each form field looks like, for the message naming a field that is not.
FIELD_HINTS = {
    "user": "a user name: letters, digits and _ . @ + - (at most 128)",
    "password": "required (at most 1024 characters)",
    "principal": "user:NAME or service_account:NAME",
    "role": "one of the roles offered",
    "name": "letters, digits and _ . @ + -, starting with a letter or digit (at most 128)",
    "description": "at most 500 characters",
    "workspace": "a workspace name",
}

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(prefix=PREFIX, csrf_field=CSRF_FIELD)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    caller = getattr(request.state, "caller", None)
    context.setdefault("message", "")
    context.setdefault("title", "")
    html = env.get_template(template).render(caller=caller, csrf=csrf_token(request), **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, error: ApiError) -> HTMLResponse:
    titles = {400: "Not valid", 403: "Not allowed", 404: "Not found", 409: "Conflict", 429: "Too many"}
    response = render(
        request, "error.html", error.status, title=titles.get(error.status, "Error"), detail=error.detail
    )
    for name, value in (error.headers or {}).items():
        if name.lower() == "retry-after":
            response.headers[name] = value
    return response


def invalid_fields(exc: ValidationError) -> str:
    """Which fields are wrong and what they should look like (never the values: one may be a password)."""
    fields = []
    for problem in exc.errors():
        field = str(problem.get("loc", ("form",))[-1])
        if field not in fields:
            fields.append(field)
    return "; ".join(f"{f}: {FIELD_HINTS.get(f, 'not valid')}" for f in fields) or "the form is not valid"


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path if request.method == "GET" else f"{PREFIX}/workspaces"
    query = urllib.parse.urlencode({"next": target})
    return RedirectResponse(f"{PREFIX}/sign-in?{query}", status_code=303)


F = TypeVar("F", bound=Callable[..., Response])


def page(handler: F) -> F:
    """Answer the handler's refusals as pages: sign-in needed -> redirect, the API's errors with their
    status and message, the stores' refusals as the API maps them; never a 500 for bad input."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        try:
            return handler(*args, **kwargs)
        except SignInNeeded:
            return sign_in_redirect(request)
        except ApiError as exc:
            if exc.status == 401:
                return sign_in_redirect(request)
            return error_page(request, exc)
        except (RegistryError, AccessError) as exc:
            return error_page(request, as_api_error(exc))
        except ValidationError as exc:
            return error_page(request, ApiError(400, "invalid", invalid_fields(exc)))
        except FeatureplaneError as exc:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            unavailable = "the server cannot use its registry right now; try again later"
            return error_page(request, ApiError(503, "unavailable", unavailable))

    return wrapper  # type: ignore[return-value]


async def form_fields(request: Request) -> dict[str, str]:
    """A POSTed form's text fields (files and repeated fields ignored)."""
    try:
        form = await request.form()
    except Exception:  # a malformed body is answered like an empty form: its CSRF check fails
        return {}
    return {key: value for key, value in form.items() if isinstance(value, str)}


class PageHeaders:
    """Everything outside ``/api/`` is a page or its assets: never cached, never framed, and a strict
    Content-Security-Policy (scripts and styles from this server only, no inline script)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)

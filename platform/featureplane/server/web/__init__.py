"""The web UI of ``featureplane server``: server-rendered pages under ``/ui`` (Jinja2, plain CSS, one
small script for the copy button), with the session in an HttpOnly cookie and every form CSRF-checked.
Pages call the JSON API's route functions, so they show and do only what the API allows the caller."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install_web(app: FastAPI) -> None:
    from featureplane.server.web import manage, sign_in, workspaces
    from featureplane.server.web.render import HERE, PageHeaders

    app.state.featureplane_shown_once = manage.ShownOnce()
    for module in (sign_in, manage, workspaces):  # workspaces last: it ends with the catch-all
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(PageHeaders)

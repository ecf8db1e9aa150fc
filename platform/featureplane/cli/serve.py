"""``featureplane serve``: the lookup API over the online store."""

from __future__ import annotations

from typing import Annotated

import typer

from featureplane.cli.common import ConfigOption, config_from, err, fail
from featureplane.config import ConfigError


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: ConfigOption = None,
) -> None:
    """Run the lookup API (Tecton's HTTP API v1) over the online store."""
    import logging

    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.http_server import ServerLimits
    from featureplane.serving.http_server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from(config)
    try:
        service = create_lookup_service(cfg)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if service.verifier is None:
        err.print("API keys are not required (serving.auth is false): use this only locally.")
    else:
        err.print("API keys are required: create one with `featureplane api-key create --workspace NAME`.")
    run_server(service, host, port, ServerLimits.from_settings(cfg.serving))

"""The ``featureplane`` command line (console script ``featureplane = featureplane.cli:main``)."""

from featureplane.cli.app import app, main

__all__ = ["app", "main"]

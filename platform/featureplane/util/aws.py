"""AWS clients for featureplane (DynamoDB, S3), all from one boto3 session per process.

Clients of one session share its parsed endpoint and configuration data, so the second client costs
about a third of the first; on a Lambda cold start that reads the serving snapshot from S3 and then
creates the DynamoDB client, that is most of the second client's cost saved. boto3 is imported on first
use, never at import time. Creation is serialised: boto3 sessions are not thread-safe (clients are).
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None


def client(service: str, **kwargs: Any) -> Any:
    """A new boto3 client for ``service`` (``region_name``, ``endpoint_url``, ``config`` ...)."""
    global _session
    with _lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session.client(service, **kwargs)

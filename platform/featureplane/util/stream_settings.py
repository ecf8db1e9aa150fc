"""The ``streams`` section of ``featureplane.yaml``: where the stream Lambda stages the events it
applied until the platform loads them into the views' offline event logs (docs/streams.md, "On AWS
Lambda"). Standard library only, as config is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featureplane.util.settings import Section, SettingsError, setting


def parse_staging(value: Any, where: str, context: Any = None) -> str | None:
    """``s3://bucket/prefix`` (the prefix may be empty), else SettingsError naming the key."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise SettingsError([f"{where} must be an S3 location s3://bucket/prefix, got {value!r:.80}"])
    bucket = value[len("s3://") :].partition("/")[0]
    if not bucket or bucket != bucket.strip() or any(c in bucket for c in " \\"):
        raise SettingsError([f"{where}: {value!r:.80} names no bucket (s3://bucket/prefix)"])
    return value.rstrip("/")


@dataclass(frozen=True, kw_only=True, repr=False)
class StreamSettings(Section):
    doc = "Stream feature views processed on AWS Lambda (docs/streams.md)."
    staging: str | None = setting(
        None,
        parse=parse_staging,
        doc="s3://bucket/prefix where the stream Lambda stages the events it applies, for their offline "
        "event logs; it also holds the views' hand-over state",
    )
    staging_region: str | None = setting(None, doc="the staging bucket's region (default: the AWS default)")
    staging_endpoint_url: str | None = setting(None, doc="an S3-compatible endpoint instead of AWS's")

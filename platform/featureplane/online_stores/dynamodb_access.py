"""Talking to DynamoDB: the boto3 client, parallel calls, retries with backoff, and table lifecycle.

``DynamoDBOnlineStore`` builds on this; what its items hold is in ``featureplane.online_stores.dynamodb``.
botocore's own retries are turned off: this module owns retrying, so the backoff policy is one place.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("featureplane.online_stores.dynamodb")

# Attributes of every item: the partition key, the event time (µs), the values JSON, the expiry (s).
PK, TS, VALUES, EXPIRES = "pk", "ts", "v", "exp"
THROTTLING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
        "TooManyRequestsException",
    }
)
TRANSIENT_ERRORS = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})


class DynamoDBError(RuntimeError):
    pass


class DynamoDBWriteError(DynamoDBError):
    """Some items could not be written (or deleted) after every retry; nothing is silently dropped."""

    def __init__(self, message: str, table: str, keys: list[str]) -> None:
        super().__init__(message)
        self.table = table
        self.keys = keys


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def retryable(exc: BaseException) -> bool:
    code = error_code(exc)
    if code is not None:
        return code in THROTTLING_ERRORS or code in TRANSIENT_ERRORS
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, BotoConnectionError | HTTPClientError)


def hint(exc: BaseException) -> str:
    if error_code(exc) == "ResourceNotFoundException":
        return " (the table does not exist: `featureplane apply` to the live workspace creates it)"
    return ""


class DynamoDBAccess:
    """A DynamoDB connection with its settings (see ``DynamoDBOnlineStore`` for what they mean)."""

    def __init__(
        self,
        *,
        region: str | None = None,
        table_prefix: str = "featureplane_",
        endpoint_url: str | None = None,
        billing_mode: str = "PAY_PER_REQUEST",
        read_capacity: int = 5,
        write_capacity: int = 5,
        consistent_reads: bool = False,
        max_workers: int = 8,
        max_attempts: int = 12,
        retry_base_seconds: float = 0.025,
        retry_max_seconds: float = 2.0,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.table_prefix = table_prefix
        self.endpoint_url = endpoint_url
        self.billing_mode = billing_mode.upper()
        self.read_capacity = int(read_capacity)
        self.write_capacity = int(write_capacity)
        self.consistent_reads = bool(consistent_reads)
        self.max_workers = max(1, int(max_workers))
        self.max_attempts = max(1, int(max_attempts))
        self.retry_base_seconds = float(retry_base_seconds)
        self.retry_max_seconds = float(retry_max_seconds)
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self._sleep = sleep
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        if self.billing_mode not in ("PAY_PER_REQUEST", "PROVISIONED"):
            raise ValueError(
                f"online_store.billing_mode must be PAY_PER_REQUEST or PROVISIONED, got {billing_mode!r}"
            )

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client, created on first use (never at import)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from botocore.config import Config as BotoConfig

                    from featureplane.util.aws import client

                    config = BotoConfig(
                        retries={"total_max_attempts": 1},
                        max_pool_connections=max(10, self.max_workers * 2),
                        connect_timeout=self.connect_timeout,
                        read_timeout=self.read_timeout,
                        tcp_keepalive=True,
                    )
                    self._client = client(
                        "dynamodb", region_name=self.region, endpoint_url=self.endpoint_url, config=config
                    )
        return self._client

    def connect(self) -> None:
        """Create the client now (Lambda does this at init, so the first request does not pay for it)."""
        _ = self.client

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``fn`` over ``items`` in parallel; results in order, or an exception (every call finishes)."""
        if len(items) <= 1:
            return [self._outcome(fn, item) for item in items]
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="featureplane-ddb")
        return list(self._pool.map(lambda item: self._outcome(fn, item), items))

    @staticmethod
    def _outcome(fn: Callable[[Any], Any], item: Any) -> Any:
        try:
            return fn(item)
        except Exception as exc:
            return exc

    def _gather(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        outcomes = self._map(fn, items)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _backoff(self, attempt: int) -> None:
        ceiling = min(self.retry_max_seconds, self.retry_base_seconds * (2**attempt))
        self._sleep(random.uniform(0, ceiling))

    def _call(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call, retried on throttling and transient errors with backoff and jitter."""
        attempt = 0
        while True:
            try:
                return getattr(self.client, operation)(**kwargs)
            except Exception as exc:
                attempt += 1
                if not retryable(exc):
                    if hint(exc) and operation != "describe_table":
                        raise DynamoDBError(
                            f"DynamoDB {operation} for {what} failed: {exc}{hint(exc)}"
                        ) from exc
                    raise
                if attempt >= self.max_attempts:
                    raise DynamoDBError(
                        f"DynamoDB {operation} for {what} failed after {attempt} attempts: {exc}"
                    ) from exc
                self._backoff(attempt)

    def _table_exists(self, table: str) -> bool:
        try:
            self._call("describe_table", f"table {table}", TableName=table)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def ensure_table(self, table: str, timeout: float = 300.0) -> None:
        try:
            description = self._call("describe_table", f"table {table}", TableName=table)["Table"]
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            description = self._create_table(table)
        schema = [(k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])]
        if schema != [(PK, "HASH")]:
            raise DynamoDBError(
                f"DynamoDB table {table} exists with key schema {schema}, but featureplane needs a single "
                f"string partition key {PK!r}; choose another online_store.table_prefix"
            )
        deadline = time.monotonic() + timeout
        while description.get("TableStatus") != "ACTIVE":
            if time.monotonic() > deadline:
                raise DynamoDBError(
                    f"DynamoDB table {table} is still {description.get('TableStatus')} after {timeout:.0f}s"
                )
            self._sleep(0.2)
            description = self._call("describe_table", f"table {table}", TableName=table)["Table"]
        self._enable_ttl(table)

    def _create_table(self, table: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": table,
            "AttributeDefinitions": [{"AttributeName": PK, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}],
            "BillingMode": self.billing_mode,
            "Tags": [{"Key": "managed-by", "Value": "featureplane"}],
        }
        if self.billing_mode == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = {
                "ReadCapacityUnits": self.read_capacity,
                "WriteCapacityUnits": self.write_capacity,
            }
        try:
            description = self._call("create_table", f"table {table}", **kwargs)["TableDescription"]
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # created concurrently by another apply
                raise
            description = self._call("describe_table", f"table {table}", TableName=table)["Table"]
        log.info("created DynamoDB table %s", table)
        return description

    def _enable_ttl(self, table: str) -> None:
        try:
            current = self._call("describe_time_to_live", f"table {table}", TableName=table)
            status = current.get("TimeToLiveDescription", {})
            if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
                if status.get("AttributeName", EXPIRES) != EXPIRES:
                    log.warning(
                        "DynamoDB table %s expires items by %r, not %r: expired rows are still never served, "
                        "but DynamoDB will not delete them",
                        table,
                        status.get("AttributeName"),
                        EXPIRES,
                    )
                return
            self._call(
                "update_time_to_live",
                f"table {table}",
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES},
            )
        except Exception as exc:
            if error_code(exc) not in ("UnknownOperationException", "ValidationException"):
                raise
            # Some DynamoDB-compatible servers have no TTL; reads enforce ttl regardless.
            log.warning("DynamoDB table %s: could not enable TTL on %r: %s", table, EXPIRES, exc)

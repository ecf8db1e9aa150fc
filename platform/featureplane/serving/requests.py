"""Request parsing and validation: envelopes, snake_case spellings, metadata options, join keys.

Every check raises ``ApiError`` with a 400 and a message naming the field. Messages show a client's
values through ``describe_value`` (bounded, never ``repr`` of the whole value), and bodies nested deeper
than ``MAX_JSON_DEPTH`` are refused before anything walks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from featureplane.errors import MAX_JSON_DEPTH, MAX_KEY_BYTES, describe_value, nesting_exceeds
from featureplane.serving.protocol import INT64_MAX, INT64_MIN, METADATA_OPTIONS, NO_OPTIONS, ApiError
from featureplane.types import DataType

if TYPE_CHECKING:
    from featureplane.serving.plan import ServicePlan

_VERBATIM = frozenset(("joinKeyMap", "requestContextMap", "record", "records"))


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_case_only(value: dict) -> bool:
    """Whether ``normalise_keys`` would leave ``value`` as it is: no key to rename at any depth it
    looks at. One pass without building anything (the common case: clients send camelCase)."""
    for key, item in value.items():
        if type(key) is not str or "_" in key:
            return False
        if key in _VERBATIM:
            continue
        kind = type(item)
        if kind is dict:
            if not _camel_case_only(item):
                return False
        elif kind is list and key == "requestData":
            for row in item:
                if type(row) is dict and ("join_key_map" in row or "request_context_map" in row):
                    return False
        elif kind is not str and isinstance(item, dict):
            return False
    return True


def normalise_keys(value: Any, depth: int = 0) -> Any:
    """Accept snake_case spellings of the API's camelCase keys (not inside key maps or records).
    Returns ``value`` itself when nothing needs renaming (the common case)."""
    if not isinstance(value, dict):
        return value
    if type(value) is dict and _camel_case_only(value):
        return value
    out: dict[Any, Any] | None = None
    for position, (key, item) in enumerate(value.items()):
        name = _camel(key) if isinstance(key, str) else key
        if name in ("joinKeyMap", "requestContextMap", "record", "records"):
            new = item
        elif name == "requestData" and isinstance(item, list):
            rows = [
                normalise_keys(row, depth + 1)
                if isinstance(row, dict) and ("join_key_map" in row or "request_context_map" in row)
                else row
                for row in item
            ]
            new = item if all(a is b for a, b in zip(rows, item, strict=True)) else rows
        elif isinstance(item, dict):
            new = normalise_keys(item, depth + 1)
        else:
            new = item
        if out is None and (name != key or new is not item):
            out = dict(list(value.items())[:position])
        if out is not None:
            out[name] = new
    return value if out is None else out


def parse_params(body: bytes, envelope: bool) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise ApiError(400, _TOO_DEEP) from None
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    # Fewer brackets than the limit cannot nest past it: most bodies need no walk.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:
        where = nesting_exceeds(payload)
        if where is not None:
            raise ApiError(400, f"{_TOO_DEEP} (at {where.lstrip('.')})")
    if not envelope:
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object")
        return normalise_keys(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
        raise ApiError(400, 'request body must be a JSON object of the form {"params": {...}}')
    return normalise_keys(payload["params"])


_TOO_DEEP = f"request body nests objects and lists more than {MAX_JSON_DEPTH} levels deep"


def parse_options(options: Any) -> dict[str, bool]:
    if options is None:
        return NO_OPTIONS
    if not isinstance(options, dict):
        raise ApiError(400, "params.metadataOptions must be an object")
    for name in METADATA_OPTIONS:
        if options.get(name) is not None and not isinstance(options[name], bool):
            raise ApiError(400, f"params.metadataOptions.{name} must be true or false")
    return {name: options.get(name) is True for name in METADATA_OPTIONS}


def check_context(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise ApiError(400, f"{where}.requestContextMap must be an object")


def coerce_key(name: str, value: Any, dtype: DataType) -> Any:
    if dtype.name == "int64":
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                pass
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            raise ApiError(
                400,
                f"join key {name!r} must be an int64 (a number or a numeric string), "
                f"got {describe_value(value)}",
            )
        return number
    if dtype.name == "string":
        if isinstance(value, str):
            if (
                len(value) > MAX_KEY_BYTES // 4
                and len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
            ):
                raise ApiError(
                    400,
                    f"join key {name!r} is {len(value.encode('utf-8', 'surrogatepass'))} bytes long; "
                    f"the limit is {MAX_KEY_BYTES} bytes (UTF-8)",
                )
            return value
        raise ApiError(400, f"join key {name!r} must be a string, got {describe_value(value)}")
    raise ApiError(400, f"join key {name!r} has unsupported type {dtype}")


_SHORT_KEY = MAX_KEY_BYTES // 4  # characters that are within MAX_KEY_BYTES in any UTF-8 spelling


def well_formed_key(plan: ServicePlan, join_key_map: Any) -> tuple | None:
    """The join key in the service's key order when ``join_key_map`` names exactly the service's
    keys, each with a value of its type as is; None otherwise (``join_keys`` then coerces numeric
    strings or says what is wrong)."""
    if type(join_key_map) is not dict or len(join_key_map) != len(plan.key_names):
        return None
    key = []
    for name, kind in zip(plan.key_names, plan.key_types, strict=True):
        value = join_key_map.get(name)
        if type(value) is not kind:
            return None
        if kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                return None
        elif len(value) > _SHORT_KEY:  # may be over MAX_KEY_BYTES: join_keys checks and says so
            return None
        key.append(value)
    return tuple(key)


def join_keys(plan: ServicePlan, join_key_map: Any, where: str = "params") -> tuple:
    """The join-key values in the service's key order (checked and coerced)."""
    key = well_formed_key(plan, join_key_map)
    if key is not None:
        return key
    service = plan.service
    if not isinstance(join_key_map, dict):
        raise ApiError(400, f"{where}.joinKeyMap is required: an object of join key names to values")
    expected = service.join_keys
    if len(join_key_map) != len(expected) or any(k not in join_key_map for k, _ in expected):
        names = {k for k, _ in expected}
        described = ", ".join(f"{k} ({t})" for k, t in expected)
        unknown = [k for k in join_key_map if k not in names]
        if unknown:
            shown = ", ".join(k if len(k) <= 40 else k[:37] + "..." for k in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ApiError(
                400,
                f"{where}: unknown join key(s) {shown}{more} for feature service "
                f"{service.name!r}; expected {described}",
            )
    missing = [k for k, _ in expected if join_key_map.get(k) is None]
    if missing:
        raise ApiError(
            400,
            f"{where}: missing join key(s) {', '.join(missing)} for feature service {service.name!r} "
            f"(expected {', '.join(f'{k} ({t})' for k, t in expected)})",
        )
    try:
        return tuple(coerce_key(k, join_key_map[k], t) for k, t in expected)
    except ApiError as exc:
        raise ApiError(400, f"{where}: {exc.message}") from None


def plain_string_keys(data: list[Any], name: str) -> list[tuple] | None:
    """The keys of batch rows that are all ``{"joinKeyMap": {name: "<string>"}}`` and nothing else
    (the common shape, for a service keyed by one string), checked in a few passes over the rows;
    None when any row differs, for the row-by-row checks to report it."""
    try:
        values = [row["joinKeyMap"][name] for row in data]
    except (TypeError, KeyError, IndexError):
        return None
    if any(len(row) != 1 or len(row["joinKeyMap"]) != 1 for row in data):
        return None
    try:
        "".join(values)  # all strings
    except TypeError:
        return None
    if max(map(len, values), default=0) > _SHORT_KEY:
        return None
    return [(value,) for value in values]


def batch_keys(plan: ServicePlan, data: list[Any]) -> tuple[list[tuple], list[Any]]:
    """Each requestData row's join-key values (checked and coerced) and request context."""
    keys: list[tuple] = []
    contexts: list[Any] = []
    for i, row in enumerate(data):
        where = f"params.requestData[{i}]"
        if type(row) is not dict:
            raise ApiError(400, f"{where} must be an object with a joinKeyMap")
        context = row.get("requestContextMap")
        check_context(context, where)
        contexts.append(context)
        keys.append(join_keys(plan, row.get("joinKeyMap"), where))
    return keys, contexts

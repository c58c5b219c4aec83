"""Metadata ("tags" in the portal): small key/value pairs on an instance.

Shaken Fist keeps any JSON value under a key; its client sends ``tags``
and ``affinity`` as parsed JSON and everything else as strings. Keys are
path segments in the API, so they may not hold a slash.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cloudstate import validation
from portal.cloud import instances
from portal.cloud.errors import NotFound
from portal.cloud.instances import InstanceRecord
from portal.events import log as eventlog

MAX_KEYS = 64
MAX_BYTES = 16 * 1024
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise validation.ValidationError(
            "key", f"{key!r} is not a valid metadata key: use 1-128 letters, digits and "
                   ". _ : @ + -, starting with a letter or digit")
    return key


def validate_value(value: Any) -> Any:
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise validation.ValidationError("value", f"must be JSON ({exc})") from exc
    if len(encoded) > MAX_BYTES:
        raise validation.ValidationError("value", f"is larger than {MAX_BYTES} bytes")
    return value


def _check_size(metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_KEYS:
        raise validation.ValidationError("key", f"an instance may have at most {MAX_KEYS} "
                                                "metadata keys")
    if len(json.dumps(metadata)) > MAX_BYTES:
        raise validation.ValidationError("value", f"an instance's metadata may take at most "
                                                  f"{MAX_BYTES} bytes in all")


async def set_item(record: InstanceRecord, key: object, value: Any,
                   actor: str | None = None) -> InstanceRecord:
    key = validate_key(key)
    value = validate_value(value)

    def change(current: InstanceRecord):  # type: ignore[no-untyped-def]
        metadata = {**current.spec.metadata, key: value}
        _check_size(metadata)
        return current.spec.replace(metadata=metadata)

    updated = await instances.update(record, change)
    await eventlog.record("instance", record.uuid, f"metadata {key} set"
                          + (f" by {actor}" if actor else ""),
                          extra={"key": key, "value": value, "actor": actor})
    return updated


async def delete_item(record: InstanceRecord, key: str, actor: str | None = None
                      ) -> InstanceRecord:
    def change(current: InstanceRecord):  # type: ignore[no-untyped-def]
        if key not in current.spec.metadata:
            raise NotFound(f"instance {current.spec.name} has no metadata key {key!r}")
        return current.spec.replace(
            metadata={k: v for k, v in current.spec.metadata.items() if k != key})

    updated = await instances.update(record, change)
    await eventlog.record("instance", record.uuid, f"metadata {key} deleted"
                          + (f" by {actor}" if actor else ""),
                          extra={"key": key, "actor": actor})
    return updated

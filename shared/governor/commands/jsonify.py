"""Results as JSON values: structs to objects, datetimes to ISO 8601 (UTC, `Z`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_json(value: Any) -> Any:
    """A JSON-serialisable copy of `value` (a result struct and what it holds)."""
    if isinstance(value, msgspec.Struct):
        # Field names in field order (`msgspec.structs.fields` would also resolve the
        # annotations, some of which name types imported for type checking only).
        return {name: to_json(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value

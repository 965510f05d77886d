"""Records as the state store keeps them: typed (pydantic), one hash field per attribute."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Mapping
from typing import Any, Self, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

log = logging.getLogger(__name__)

_CONTAINERS = (dict, list, tuple, set, frozenset)  # kept as JSON text in a hash field


class Record(BaseModel):
    """A typed record kept as a hash in the store: one field per attribute, each as text
    (so one field can be set alone, atomically, by any process). Unknown fields are
    ignored and missing ones take their defaults, so a record written by an older or a
    newer version still reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _decoded(cls, data: Any) -> Any:
        """A hash's field holding a list or an object is JSON text (``field_text``): read
        back as the typed value it was, for every field typed as a container."""
        if not isinstance(data, dict):
            return data
        decoded = dict(data)
        for name in _containers(cls):
            value = decoded.get(name)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):  # else the field's validation says
                    decoded[name] = json.loads(value)
        return decoded

    def fields(self, *names: str) -> dict[str, str]:
        """The record as hash fields (only ``names``, when given); None is left out."""
        dumped = self.model_dump(mode="json", include=set(names) if names else None)
        return {k: field_text(v) for k, v in dumped.items() if v is not None}

    @classmethod
    def of(cls, data: Mapping[str, str]) -> Self | None:
        """The record in ``data`` (a hash read from the store), or None if there is none
        or it does not read as one."""
        if not data:
            return None
        try:
            return cls.model_validate(dict(data))
        except ValidationError:
            log.warning("a stored %s did not read; ignored", cls.__name__)
            return None


@functools.cache
def _containers(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``cls`` typed as containers (kept as JSON text), found once."""
    return tuple(
        name
        for name, field in cls.model_fields.items()
        if get_origin(field.annotation) in _CONTAINERS
    )


def field_text(value: Any) -> str:
    """A value as a record keeps it in a hash field: text, ``true``/``false``, or JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)

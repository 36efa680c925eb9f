"""Event bodies that always encode: bounded texts and plain string maps.

An event line has a size limit (:data:`~openhcs_rules.progress.files.MAX_LINE_BYTES`) and must be plain JSON;
the values events carry (an exception's text, a job's wildcards) come from code that promises neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: an error message is cut to this many characters (its start and its end are kept)
MAX_MESSAGE_CHARS = 4000
#: a wildcard value is cut to this many characters
MAX_VALUE_CHARS = 500


def clip_text(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as a string of at most about ``limit`` characters: its start and end, with what was cut said.

    Both ends are kept: an error's first line says what failed, its last lines (a traceback's) why.
    """
    text = str(text)
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def string_map(value: object, limit: int = MAX_VALUE_CHARS) -> dict[str, str]:
    """A mapping as ``{str: str}`` (values clipped), or ``{}`` for anything that is not a mapping."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): clip_text(item, limit) for key, item in value.items()}


def as_int(value: Any) -> int | None:
    """An integer field's value, or None when it is none (a bool, a group job's uuid, a missing field)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None

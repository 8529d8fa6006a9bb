"""YAML front matter (``---`` blocks at the top of a markdown file) as chunk metadata."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import yaml

__all__ = ["parse_front_matter"]

_FRONT_MATTER_RE = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def _scalar_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a leading YAML front matter block (``---\\n...\\n---\\n``) from ``text``.

    The block is parsed with :func:`yaml.safe_load`.  Scalar values are converted to
    ``str`` (booleans to ``"true"``/``"false"``, dates to ISO format), ``None`` values are
    dropped, lists and mappings are kept as parsed, and the key ``id`` is renamed
    ``doc_id``.  If there is no block, the YAML is invalid, or it is not a mapping, the
    result is ``({}, text)`` unchanged.

    Returns:
        ``(metadata, body)`` where ``body`` is the text after the closing ``---`` line.
    """
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, text
    metadata: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        name = "doc_id" if str(key) == "id" else str(key)
        if isinstance(value, list | dict | tuple | set):
            metadata[name] = value
        else:
            metadata[name] = _scalar_to_str(value)
    return metadata, text[match.end() :]

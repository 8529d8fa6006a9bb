"""The text analyzer behind hybrid collections' BM25 field.

Milvus tokenizes the ``text`` field and every query with the analyzer recorded in
the collection schema. Question words and function words ("what", "how", "the",
"is") occur in nearly every chunk: they add almost nothing to a BM25 score but
make every query walk their long posting lists. Dropping them at analysis time
makes BM25 search several times faster on Milvus Lite, whose BM25 runs in Python,
and measured better on the shipped evaluation set (see README).

The list is given explicitly (not Milvus's ``_english_`` alias) because Milvus Lite
only understands explicit lists; the same parameters work on a Milvus server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ENGLISH_STOP_WORDS", "analyzer_params"]

#: English function words and question words dropped by the ``english`` setting.
_ENGLISH = """
    a about all also am an and any are as at be been being both but by can could
    did do does doing done each either for from had has have having he her hers
    him his how i if in into is it its itself just me might more most must my
    neither no nor not of on only or other our ours own same shall she should so
    some such than that the their theirs them then there these they this those
    to too us very was we were what when where whether which while who whom whose
    why will with would you your yours
"""
ENGLISH_STOP_WORDS: tuple[str, ...] = tuple(_ENGLISH.split())


def analyzer_params(stop_words: str | Sequence[str]) -> dict[str, Any]:
    """Milvus ``analyzer_params`` for the BM25 text field.

    Args:
        stop_words: ``"english"`` for :data:`ENGLISH_STOP_WORDS`, ``"none"`` to keep
            every token, or an explicit list of words.

    Example:
        >>> analyzer_params("none")
        {'tokenizer': 'standard', 'filter': ['lowercase']}
        >>> analyzer_params(["the", "a"])["filter"][1]
        {'type': 'stop', 'stop_words': ['a', 'the']}
    """
    if stop_words == "english":
        words: list[str] = sorted(ENGLISH_STOP_WORDS)
    elif stop_words == "none":
        words = []
    elif isinstance(stop_words, str):
        raise ValueError(f"stop words must be 'english', 'none' or a list, not {stop_words!r}")
    else:
        words = sorted({word.lower() for word in stop_words})
    filters: list[Any] = ["lowercase"]
    if words:
        filters.append({"type": "stop", "stop_words": words})
    return {"tokenizer": "standard", "filter": filters}

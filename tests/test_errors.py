"""`milvus_rag.errors`: the error tree and its documented statuses."""

from __future__ import annotations

import milvus_rag.chains
import milvus_rag.loaders

import milvus_rag
import milvus_rag.errors


def test_every_error_is_a_milvus_rag_error() -> None:
    for name in milvus_rag.errors.__all__:
        if name in ("EXIT_CODES", "HTTP_STATUSES"):
            continue
        error = getattr(milvus_rag.errors, name)
        assert issubclass(error, milvus_rag.errors.MilvusRAGError)
        assert error.exit_code in milvus_rag.errors.EXIT_CODES


def test_error_statuses_are_documented() -> None:
    from milvus_rag.server import STATUS_OF

    assert set(STATUS_OF.values()) <= set(milvus_rag.errors.HTTP_STATUSES)
    assert 500 not in milvus_rag.errors.HTTP_STATUSES

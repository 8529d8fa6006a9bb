"""Retrieval options shared by ``search``, ``ask`` and ``eval``, and the model preload."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from milvus_rag.choices import RetrievalMode
from milvus_rag.errors import ConfigError

if TYPE_CHECKING:
    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import Settings

KOption = Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to retrieve.")]
ModeOption = Annotated[
    RetrievalMode | None,
    typer.Option("--mode", help="Retrieval mode (default: retrieval.mode).", show_default=False),
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", help="Only sources under this path prefix or glob (repeatable)."),
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", help="Metadata KEY=VALUE that must match (repeatable)."),
]
MMROption = Annotated[
    bool, typer.Option("--mmr", help="Diversify results (max marginal relevance).")
]
ThresholdOption = Annotated[
    float | None, typer.Option("--threshold", help="Drop passages scoring worse than this.")
]


def retrieval_overrides(
    k: int | None, mode: RetrievalMode | None, mmr: bool = False, threshold: float | None = None
) -> dict[str, Any]:
    """Flag values as a ``retrieval`` settings override (unset flags left out)."""
    return {
        "retrieval": {
            "top_k": k,
            "mode": mode,
            "search_type": "mmr" if mmr else None,
            "score_threshold": threshold,
        }
    }


def require_question(question: str, what: str = "question") -> str:
    """``question`` when it holds text; an empty or blank one is a one-line error (exit 2).

    Raises:
        ConfigError: the question is empty or blank (the server answers 422).
    """
    if not question.strip():
        raise ConfigError(f"the {what} is empty: give the text to {_VERB[what]}")
    return question


_VERB = {"question": "answer", "query": "search for"}


def filter_expression(sources: list[str] | None, filters: list[str] | None) -> str | None:
    """The Milvus filter for ``--source`` and ``--filter`` flags (values escaped)."""
    from milvus_rag.filters import all_of, any_of, metadata_filter, source_glob

    by_source = any_of(*(source_glob(s) for s in sources or []))
    pairs: dict[str, Any] = {}
    for item in filters or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter takes KEY=VALUE, got {item!r}")
        pairs.setdefault(key.strip(), []).append(value)
    by_metadata = metadata_filter({k: v[0] if len(v) == 1 else v for k, v in pairs.items()})
    return all_of(by_source, by_metadata)


def check_filter_keys(retriever: Any, filters: list[str] | None) -> None:
    """Refuse ``--filter`` keys that no chunk of the retriever's collection has.

    Raises:
        ConfigError: one line naming the unknown keys and the known ones.
    """
    wanted = {item.partition("=")[0].strip() for item in filters or []}
    if not wanted:
        return
    from milvus_rag.cli._common import printable
    from milvus_rag.store import metadata_keys

    store = retriever.store()
    known = metadata_keys(store.client, store.collection_name)
    unknown = sorted(wanted - known)
    if unknown:
        names = ", ".join(printable(key) for key in unknown)
        raise ConfigError(
            f"--filter {names}: no chunk has this key; the chunks have: {', '.join(sorted(known))}"
        )


class ModelPreload:
    """Loads the embedding model in a background thread while the command goes on.

    Loading the model is mostly native work (reading and hashing the weights, building
    the ONNX Runtime session) that runs alongside the imports of LangChain and
    pymilvus in the main thread, so a cold ``search`` or ``ask`` pays for it only
    once those are done. :meth:`ready` waits for it and raises its error, if any.
    """

    def __init__(self, settings: Settings) -> None:
        from milvus_rag.embeddings import embeddings_from_settings

        self.embeddings = embeddings_from_settings(settings)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="milvus-rag-model", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self.embeddings.identity()  # loads the model, fingerprints its weights
        except BaseException as exc:  # re-raised by ready(), in the command's thread
            self._error = exc

    def ready(self) -> MilvusModelEmbeddings:
        """The loaded embeddings (waits for the load; raises its error)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.embeddings

"""LangChain ``Embeddings`` over pymilvus-model embedding functions.

:class:`MilvusModelEmbeddings` wraps any pymilvus-model
``BaseEmbeddingFunction`` (``DefaultEmbeddingFunction`` by default). When the
function is an ONNX model (the default one, or a local ``model_dir``), texts
are encoded by :class:`BatchedOnnxEncoder`: the same tokenizer, ONNX session,
mean pooling and L2 normalisation, but in length-sorted batches padded only to
the longest text of each batch instead of one text at a time padded to the
tokenizer's maximum length.

Nothing is loaded at import or construction: the model loads on first use. A
local ``model_dir`` holding ``tokenizer.json`` loads with ``tokenizers`` and ONNX
Runtime alone (:func:`load_local_onnx_model`: the same token ids as the Hugging
Face tokenizer, without importing ``transformers``), which keeps a command's cold
start short.

Example:
    .. code-block:: python

        from milvus_rag import MilvusModelEmbeddings

        embeddings = MilvusModelEmbeddings(model_dir="../shared/models/all-MiniLM-L6-v2-onnx")
        vector = embeddings.embed_query("How is data stored in milvus?")
        assert len(vector) == 384
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from milvus_rag.errors import EmbeddingError, ModelNotAvailableError
from milvus_rag.settings import EmbeddingSettings
from milvus_rag.telemetry import step

__all__ = [
    "BatchedOnnxEncoder",
    "MilvusModelEmbeddings",
    "TokenCounter",
    "embeddings_from_settings",
    "hub_model_usable",
    "load_local_onnx_function",
    "load_local_onnx_model",
    "model_fingerprint",
]

# Defaults are the settings' (embedding section), declared once in milvus_rag/settings/.
_DEFAULTS = EmbeddingSettings()


class BatchedOnnxEncoder:
    """Encode texts with an ONNX sentence model in length-sorted batches.

    Gives the vectors of pymilvus-model's ``OnnxEmbeddingFunction`` (same
    truncation, mean pooling over the attention mask, L2 normalisation) while
    padding each batch only to its longest member.

    Args:
        tokenizer: a Hugging Face (fast) tokenizer.
        session: an ``onnxruntime.InferenceSession`` with inputs ``input_ids``,
            ``attention_mask``, ``token_type_ids`` and ``last_hidden_state`` first.
        batch_size: texts per forward pass.
    """

    def __init__(
        self, tokenizer: Any, session: Any, batch_size: int = _DEFAULTS.batch_size
    ) -> None:
        self.tokenizer = tokenizer
        self.session = session
        self.batch_size = batch_size
        self._input_names = {i.name for i in session.get_inputs()}
        pad = getattr(tokenizer, "pad_token_id", None)
        self._pad_id = int(pad) if pad is not None else 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(len(texts), dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            padding=False,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        ids: list[list[int]] = encoded["input_ids"]
        types: list[list[int]] = encoded["token_type_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors = self._forward([ids[i] for i in batch], [types[i] for i in batch])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        assert out is not None
        return out

    def _forward(self, ids: list[list[int]], types: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        token_types = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, (tokens, kinds) in enumerate(zip(ids, types, strict=True)):
            input_ids[row, : len(tokens)] = tokens
            token_types[row, : len(kinds)] = kinds
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types}
        feeds = {name: value for name, value in feeds.items() if name in self._input_names}
        hidden = self.session.run(None, feeds)[0].astype(np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: np.ndarray = pooled / np.maximum(norms, 1e-12)
        return normalised


def load_local_onnx_function(model_dir: str | Path, threads: int | None = None) -> Any:
    """pymilvus-model's ``OnnxEmbeddingFunction`` loaded from a local folder.

    The folder holds ``model.onnx`` plus the tokenizer and ``config.json``, as
    the default model's hub repositories do. The returned object is a real
    ``OnnxEmbeddingFunction``: its ``encode_documents`` is pymilvus-model's code.

    Raises:
        ModelNotAvailableError: the folder or one of its files is missing or unreadable.
    """
    folder = _model_folder(model_dir)
    _quiet_transformers()
    try:
        from pymilvus.model.dense.onnx import OnnxEmbeddingFunction
        from transformers import AutoConfig, AutoTokenizer

        class LocalOnnxEmbeddingFunction(OnnxEmbeddingFunction):  # type: ignore[misc]
            def __init__(self) -> None:
                # Same attributes as OnnxEmbeddingFunction.__init__, read from disk
                # instead of the Hugging Face hub.
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
                self.model_name = str(folder)
                self.ort_session = _onnx_session(folder / "model.onnx", threads)
                config = AutoConfig.from_pretrained(str(folder))
                self._OnnxEmbeddingFunction__dimension = config.hidden_size

        return LocalOnnxEmbeddingFunction()
    except ModelNotAvailableError:
        raise
    except Exception as exc:
        raise _unloadable(folder, exc) from exc


def _model_folder(model_dir: str | Path) -> Path:
    folder = Path(model_dir).expanduser()
    if not (folder / "model.onnx").is_file():
        raise ModelNotAvailableError(
            f"embedding.model_dir {folder} holds no model.onnx: point it at a folder "
            "with model.onnx, tokenizer.json and config.json"
        )
    return folder


def _onnx_session(path: Path, threads: int | None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle ONNX threads would otherwise spin right after each run and
    # steal the core Milvus Lite needs for the search that follows.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _unloadable(folder: Path, exc: BaseException) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"embedding model in {folder} cannot be loaded ({type(exc).__name__}: "
        f"{_first_line(exc)}); check embedding.model_dir"
    )


# Hugging Face's "no limit" model_max_length (transformers' VERY_LARGE_INTEGER).
_NO_LIMIT = int(1e20)


class _LocalTokenizer:
    """A ``tokenizer.json`` behaving as a Hugging Face fast tokenizer for :class:`BatchedOnnxEncoder`.

    Gives the ids ``AutoTokenizer(...)(texts, truncation=True, padding=False)``
    gives: special tokens added, truncated to ``model_max_length`` from
    ``tokenizer_config.json`` (on its ``truncation_side``), never padded.
    """

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text("utf-8")) if config_file.is_file() else {}
        self.backend_tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.backend_tokenizer.no_padding()
        limit = config.get("model_max_length")
        if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
            side = config.get("truncation_side", "right")
            self.backend_tokenizer.enable_truncation(limit, direction=side)
        else:
            self.backend_tokenizer.no_truncation()
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self.backend_tokenizer.token_to_id(pad) if pad else None

    def __call__(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        encoded = self.backend_tokenizer.encode_batch(texts)
        return {
            "input_ids": [e.ids for e in encoded],
            "token_type_ids": [e.type_ids for e in encoded],
        }


class LocalOnnxModel:
    """A local ONNX sentence model loaded without ``transformers``.

    Has what :class:`MilvusModelEmbeddings` uses of pymilvus-model's
    ``OnnxEmbeddingFunction`` (``tokenizer``, ``ort_session``, ``dim``,
    ``model_name``, ``encode_documents``, ``encode_queries``) and gives the same
    vectors; build it with :func:`load_local_onnx_model`.
    """

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        config = json.loads((folder / "config.json").read_text("utf-8"))
        self.dim = int(config["hidden_size"])
        self.model_name = str(folder)
        self.tokenizer = _LocalTokenizer(folder)
        self.ort_session = _onnx_session(folder / "model.onnx", threads)
        self._encoder = BatchedOnnxEncoder(self.tokenizer, self.ort_session, batch_size=8)

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return list(self._encoder.encode(documents))

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return list(self._encoder.encode(queries))


def load_local_onnx_model(
    model_dir: str | Path, threads: int | None = None
) -> LocalOnnxModel | None:
    """The model of a local folder, loaded with ``tokenizers`` and ONNX Runtime only.

    Returns ``None`` when the folder lacks ``tokenizer.json`` or a ``config.json``
    with ``hidden_size`` (then :func:`load_local_onnx_function` loads it).

    Raises:
        ModelNotAvailableError: the folder's files cannot be loaded.
    """
    folder = _model_folder(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not (folder / "tokenizer.json").is_file() or "hidden_size" not in config:
        return None
    try:
        return LocalOnnxModel(folder, threads)
    except Exception as exc:
        raise _unloadable(folder, exc) from exc


def _load_default_function(model: str, tokenizer: str) -> Any:
    _quiet_transformers()
    if not hub_model_usable(model):
        raise ModelNotAvailableError(
            f"embedding model {model} is not cached and the Hugging Face hub cannot be "
            "reached; offline, set embedding.model_dir to a local folder holding "
            "model.onnx and its tokenizer"
        )
    try:
        from pymilvus.model.dense.onnx import OnnxEmbeddingFunction

        return OnnxEmbeddingFunction(model_name=model, tokenizer_name=tokenizer)
    except Exception as exc:
        raise ModelNotAvailableError(
            f"embedding model {model} could not be fetched from the Hugging Face hub "
            f"({type(exc).__name__}); offline, set embedding.model_dir to a local folder "
            "holding model.onnx and its tokenizer"
        ) from exc


def hub_model_usable(model: str, timeout: float = 3.0, *, offline: bool = False) -> bool:
    """False when the model is not cached and the hub host does not answer.

    Saves the user the hub client's long retry loop on an offline machine.
    ``offline`` only looks in the cache.
    """
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "model.onnx"), str):
        return True
    if offline or constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_transformers() -> None:
    """transformers warns at import that PyTorch is absent; ONNX needs no PyTorch."""
    import logging

    logger = logging.getLogger("transformers")
    if not any(isinstance(f, _NoTorchNotice) for f in logger.filters):
        logger.addFilter(_NoTorchNotice())


class _NoTorchNotice:
    def filter(self, record: Any) -> bool:
        return "PyTorch was not found" not in record.getMessage()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 of a whole model file (hex), streamed; cached by path, size and mtime.

    Any change to the weights changes it, so a folder keeping its name but holding
    other weights is refused like any other model change.
    """
    file = Path(path)
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _FINGERPRINTS.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        cached = _FINGERPRINTS[key] = digest.hexdigest()
    return cached


# A cache, not configuration: a file's digest never changes while its size and mtime hold.
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


class TokenCounter:
    """Counts a text's tokens under the model's tokenizer: a pure function of the text.

    Holds its own tokenizer instance with truncation and padding switched off, so
    the count never depends on what the encoder did before (a Hugging Face
    tokenizer call reconfigures its backend), and texts past the model's maximum
    length get their true count. Special tokens (``[CLS]``, ``[SEP]``) are counted.

    Args:
        backend: a ``tokenizers.Tokenizer``; it is copied, never modified.
    """

    def __init__(self, backend: Any) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(backend.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        canonical = self._tokenizer.to_str()
        #: Digest of the tokenizer's full definition (vocabulary, normaliser, ...).
        self.identity = "tok-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_folder(cls, folder: str | Path) -> TokenCounter:
        """The counter of a local model folder (``tokenizer.json``, else its tokenizer files).

        Raises:
            ModelNotAvailableError: no tokenizer can be loaded from ``folder``.
        """
        folder = Path(folder).expanduser()
        try:
            if (folder / "tokenizer.json").is_file():
                from tokenizers import Tokenizer

                return cls(Tokenizer.from_file(str(folder / "tokenizer.json")))
            _quiet_transformers()
            from transformers import AutoTokenizer

            return cls(AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer)
        except Exception as exc:
            raise ModelNotAvailableError(
                f"tokenizer in {folder} cannot be loaded ({type(exc).__name__}: "
                f"{_first_line(exc)}); check embedding.model_dir"
            ) from exc

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)


class MilvusModelEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings backed by a pymilvus-model embedding function.

    With no ``function``, uses pymilvus-model's ``DefaultEmbeddingFunction``
    model (paraphrase-albert-small-v2, 768 dims) from the Hugging Face hub, or
    the same kind of model from ``model_dir`` when set (air-gapped machines).
    ONNX models are encoded in batches (``accelerated=True``); any other
    function is called through its own ``encode_documents`` / ``encode_queries``.

    Example:
        .. code-block:: python

            from milvus_rag import MilvusModelEmbeddings

            emb = MilvusModelEmbeddings(model_dir="../shared/models/all-MiniLM-L6-v2-onnx")
            docs = emb.embed_documents(["Milvus stores data in MinIO.", "Hello"])
            query = emb.embed_query("Where is data stored?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str = _DEFAULTS.model
    tokenizer: str = _DEFAULTS.tokenizer
    model_dir: Path | None = _DEFAULTS.model_dir
    batch_size: int = Field(_DEFAULTS.batch_size, ge=1)
    accelerated: bool = _DEFAULTS.accelerated
    threads: int | None = _DEFAULTS.threads
    function: Any = Field(default=None, exclude=True)
    """A ready pymilvus-model ``BaseEmbeddingFunction``; built lazily when ``None``."""

    _encoder: BatchedOnnxEncoder | None = PrivateAttr(default=None)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)
    _identity: dict[str, Any] | None = PrivateAttr(default=None)
    _counter: TokenCounter | Callable[[str], int] | None = PrivateAttr(default=None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (pymilvus-model ``encode_documents`` semantics)."""
        return self._embed(texts, "encode_documents")

    def embed_query(self, text: str) -> list[float]:
        """Embed a question (pymilvus-model ``encode_queries`` semantics)."""
        with step("embed_query"):
            return self._embed([text], "encode_queries")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`, run in a worker thread."""
        vectors: list[list[float]] = await _in_thread(self.embed_documents, texts)
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`, run in a worker thread."""
        vector: list[float] = await _in_thread(self.embed_query, text)
        return vector

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer (special tokens included).

        A pure function of the text: see :meth:`token_counter`.
        """
        return self.token_counter()(text)

    def token_counter(self) -> TokenCounter | Callable[[str], int]:
        """The model's token counter (its own tokenizer instance; cached).

        For a local folder only the tokenizer is read, not the ONNX model. Its
        ``identity`` names the tokenizer, so chunkings can record what counted them.
        """
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    self._counter = self._build_counter()
        return self._counter

    def _build_counter(self) -> TokenCounter | Callable[[str], int]:
        if self.function is None and self.model_dir is not None:
            return TokenCounter.from_folder(self.model_dir)
        tokenizer = getattr(self._function(), "tokenizer", None)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            return TokenCounter(backend)
        if tokenizer is None:
            raise EmbeddingError(
                "the embedding function has no tokenizer to count tokens with; "
                "use a splitter that does not count model tokens"
            )
        slow = tokenizer

        def count(text: str) -> int:  # a slow (Python) tokenizer: no shared backend state
            return len(slow(text, add_special_tokens=True, truncation=False)["input_ids"])

        return count

    @property
    def dimension(self) -> int:
        """Vector length; loads the model."""
        return int(self._function().dim)

    def identity(self) -> dict[str, Any]:
        """What produced the vectors: recorded on the collection and checked later.

        Loads the model (to read its dimension).
        """
        if self._identity is None:
            function = self._function()
            if self.function is not None and self.model_dir is None:
                name = getattr(function, "model_name", type(function).__name__)
                identity: dict[str, Any] = {"model": str(name)}
            elif self.model_dir is not None:
                identity = {
                    "model": Path(self.model_dir).name,
                    "sha256": model_fingerprint(Path(self.model_dir) / "model.onnx"),
                }
            else:
                identity = {"model": self.model}
            identity["dim"] = int(function.dim)
            self._identity = identity
        return dict(self._identity)

    def _function(self) -> Any:
        if self.function is None:
            with self._lock:
                if self.function is None:
                    if self.model_dir is not None and self.accelerated:
                        self.function = load_local_onnx_model(
                            self.model_dir, self.threads
                        ) or load_local_onnx_function(self.model_dir, self.threads)
                    elif self.model_dir is not None:
                        self.function = load_local_onnx_function(self.model_dir, self.threads)
                    else:
                        self.function = _load_default_function(self.model, self.tokenizer)
        return self.function

    def _batched(self) -> BatchedOnnxEncoder | None:
        if not self.accelerated:
            return None
        if self._encoder is None:
            function = self._function()
            session = getattr(function, "ort_session", None)
            tokenizer = getattr(function, "tokenizer", None)
            if session is None or tokenizer is None:
                return None
            self._encoder = BatchedOnnxEncoder(tokenizer, session, self.batch_size)
        return self._encoder

    def _embed(self, texts: list[str], method: str) -> list[list[float]]:
        if not texts:
            return []
        for text in texts:
            try:
                str(text).encode("utf-8")
            except UnicodeEncodeError as exc:  # the tokenizer would fail with a TypeError
                raise EmbeddingError(
                    f"cannot embed text that is not valid Unicode (a lone surrogate at "
                    f"character {exc.start}); pass UTF-8 text"
                ) from None
        function = self._function()
        try:
            encoder = self._batched()
            if encoder is not None:
                encoded: list[list[float]] = encoder.encode(texts).tolist()
                return encoded
            vectors: Iterable[Any] = getattr(function, method)(texts)
            return [np.asarray(v, dtype=np.float32).tolist() for v in vectors]
        except Exception as exc:
            raise EmbeddingError(
                f"embedding failed ({type(exc).__name__}: {_first_line(exc)})"
            ) from exc


async def _in_thread(func: Callable[[Any], Any], arg: Any) -> Any:
    from langchain_core.runnables.config import run_in_executor

    return await run_in_executor(None, func, arg)


def embeddings_from_settings(settings: Any) -> MilvusModelEmbeddings:
    """Build the embeddings from an ``EmbeddingSettings`` section (or ``Settings``)."""
    section = getattr(settings, "embedding", settings)
    return MilvusModelEmbeddings(
        model=section.model,
        tokenizer=section.tokenizer,
        model_dir=section.model_dir,
        batch_size=section.batch_size,
        accelerated=section.accelerated,
        threads=section.threads,
    )

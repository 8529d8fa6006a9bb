"""Fetch an ONNX embedding model into a folder usable as ``embedding.model_dir``.

:func:`download_model` copies a model from the Hugging Face hub (through
``huggingface_hub``: ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and the hub
cache apply) into a folder of its own: ``model.onnx``, the tokenizer files and
``config.json``. The default is the package's default model
(``GPTCache/paraphrase-albert-onnx``, with the tokenizer of
``GPTCache/paraphrase-albert-small-v2``); any sentence-transformers repository
exported to ONNX works too (``model.onnx`` or ``onnx/model.onnx`` in the repository,
e.g. ``sentence-transformers/all-MiniLM-L6-v2``).

The folder is written beside its final place and renamed into it once complete and
checked (the model loads and embeds a sentence), so a failed download never leaves a
half-written model where the settings point. ``milvus-rag model download DIR`` runs it.

Example:
    .. code-block:: python

        from pathlib import Path

        from milvus_rag.model_download import download_model

        found = download_model(Path("models/all-MiniLM-L6-v2-onnx"),
                               "sentence-transformers/all-MiniLM-L6-v2")
        print(found.dim)  # 384
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from milvus_rag.errors import ConfigError, ModelNotAvailableError

__all__ = ["DEFAULT_DOWNLOAD", "DownloadedModel", "download_model"]

#: The package's default model and the repository holding its tokenizer.
DEFAULT_DOWNLOAD = ("GPTCache/paraphrase-albert-onnx", "GPTCache/paraphrase-albert-small-v2")

#: Where a repository may keep its ONNX export, in order.
_ONNX_FILES = ("model.onnx", "onnx/model.onnx")
#: Tokenizer and config files copied when the repository has them.
_TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


@dataclass
class DownloadedModel:
    """What :func:`download_model` wrote."""

    path: Path
    model: str
    files: list[str] = field(default_factory=list)
    dim: int = 0


def download_model(
    target: Path,
    model: str | None = None,
    *,
    revision: str | None = None,
    force: bool = False,
) -> DownloadedModel:
    """Download ``model`` (default: the package's default) into the folder ``target``.

    Args:
        target: the folder to create (its parent is created too). Keep its name once a
            collection is built with it: the collection records it.
        model: a hub repository id holding ``model.onnx`` or ``onnx/model.onnx``.
        revision: a branch, tag or commit of the repository (default: ``main``).
        force: replace a model already in ``target``.

    Raises:
        ConfigError: ``target`` already holds a model (without ``force``), or is a file.
        ModelNotAvailableError: the hub (``HF_ENDPOINT``) cannot be reached and the hub
            cache does not hold the files, the repository or its ONNX file does not
            exist, or the files do not load as an embedding model.
    """
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file: give a folder for the model")
    if (target / "model.onnx").exists() and not force:
        raise ConfigError(
            f"{target} already holds a model: pass --force to replace it, or give another folder"
        )
    repo, tokenizer_repo = (model, model) if model else DEFAULT_DOWNLOAD
    _check_reachable(repo)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        found = DownloadedModel(path=target, model=repo)
        found.files.append(_fetch_first(repo, _ONNX_FILES, revision, staging, "model.onnx"))
        for name in _TOKENIZER_FILES:
            fetched = _fetch_optional(tokenizer_repo, name, revision, staging)
            if fetched is None and tokenizer_repo != repo:
                fetched = _fetch_optional(repo, name, revision, staging)
            if fetched is not None:
                found.files.append(fetched)
        found.dim = _check_loads(staging, repo)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return found


def _check_reachable(repo: str, timeout: float = 5.0) -> None:
    """Fail at once when the hub does not answer (the hub client would retry for half a
    minute before giving up), unless offline mode asks for the cache alone."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return
    except OSError as exc:
        raise ModelNotAvailableError(
            f"model {repo}: {constants.ENDPOINT} cannot be reached ({exc.strerror or exc}; "
            "HF_ENDPOINT); with the model in the hub cache set HF_HUB_OFFLINE=1, or download "
            "it where there is a connection and copy the folder"
        ) from None


def _hub_download(repo: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, filename, revision=revision))


def _fetch_first(
    repo: str, candidates: tuple[str, ...], revision: str | None, into: Path, name: str
) -> str:
    """The first of ``candidates`` the repository has, copied to ``into/name``."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    for filename in candidates:
        try:
            cached = _hub_download(repo, filename, revision)
        except RemoteEntryNotFoundError:
            continue
        except Exception as exc:
            raise _unavailable(repo, exc) from exc
        shutil.copyfile(cached, into / name)
        return name
    raise ModelNotAvailableError(
        f"{repo} has no ONNX export ({' or '.join(candidates)}): give a sentence-transformers "
        "model exported to ONNX"
    )


def _fetch_optional(repo: str, filename: str, revision: str | None, into: Path) -> str | None:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        cached = _hub_download(repo, filename, revision)
    except EntryNotFoundError:  # not in the repository (or, offline, not cached)
        return None
    except Exception as exc:
        raise _unavailable(repo, exc) from exc
    shutil.copyfile(cached, into / filename)
    return filename


def _unavailable(repo: str, exc: Exception) -> ModelNotAvailableError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = constants.ENDPOINT
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotAvailableError(f"model {repo} was not found on {where} (HF_ENDPOINT)")
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotAvailableError(f"model {repo} has no such revision on {where}")
    if isinstance(exc, LocalEntryNotFoundError):
        return ModelNotAvailableError(
            f"model {repo}: {where} cannot be reached (HF_ENDPOINT, HF_HUB_OFFLINE) and the "
            "hub cache does not hold it; download it where there is a connection and copy "
            "the folder"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotAvailableError(f"model {repo} could not be downloaded from {where}: {first}")


def _check_loads(folder: Path, repo: str) -> int:
    """The dimension of the model in ``folder`` (it must load and embed a sentence)."""
    from milvus_rag.embeddings import MilvusModelEmbeddings

    try:
        vector = MilvusModelEmbeddings(model_dir=folder).embed_query("hello world")
    except Exception as exc:
        raise ModelNotAvailableError(
            f"model {repo} was downloaded but does not load as an embedding model: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from exc
    return len(vector)

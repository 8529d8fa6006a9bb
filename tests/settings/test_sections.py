"""`milvus_rag.settings.sections`: each default written once, and the sections' validation."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
import re

from milvus_rag.errors import ConfigError
from milvus_rag.settings import Settings, load_settings


@pytest.mark.parametrize(
    ("value", "loads"),
    [("1", True), ("86400", True), ("0", False), ("-5", False), ("abc", False), ("1e9", False)],
)
def test_session_ttl_setting(monkeypatch: pytest.MonkeyPatch, value: str, loads: bool) -> None:
    assert Settings().server.session_ttl == 12 * 3600
    monkeypatch.setenv("MILVUS_RAG_SERVER__SESSION_TTL", value)
    if loads:
        assert load_settings().server.session_ttl == int(value)
    else:
        with pytest.raises(ConfigError, match="invalid setting server.session_ttl") as err:
            load_settings()
        assert "\n" not in str(err.value)


def test_settings_bound_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().server.max_auth_failures == 10
    monkeypatch.setenv("MILVUS_RAG_SERVER__MAX_AUTH_FAILURES", "0")
    with pytest.raises(ConfigError, match="invalid setting server.max_auth_failures"):
        load_settings()


@pytest.mark.parametrize(
    ("variables", "overlap", "tokens"),
    [
        ({"MILVUS_RAG_INGEST__CHUNK_OVERLAP": "256"}, 256, 256),  # was a ValueError at ingest
        ({"MILVUS_RAG_INGEST__CHUNK_OVERLAP": "1000"}, 1000, 256),
        ({"MILVUS_RAG_INGEST__CHUNK_TOKENS": "20"}, 32, 20),  # below the default overlap
        ({"MILVUS_RAG_INGEST": '{"chunk_tokens": 64, "chunk_overlap": 64}'}, 64, 64),
    ],
)
def test_chunk_overlap_must_be_below_chunk_tokens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    overlap: int,
    tokens: int,
) -> None:
    from typer.testing import CliRunner

    from milvus_rag.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text.\n")
    expected = f"ingest.chunk_overlap ({overlap}) must be below ingest.chunk_tokens ({tokens})"
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings()
    # The CLI refuses it at load, before ingesting anything: one line, exit 2.
    result = CliRunner().invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: invalid setting ingest: {expected}"]
    assert not (tmp_path / "milvus_demo.db").exists()


def test_chunk_overlap_just_below_chunk_tokens_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_INGEST__CHUNK_OVERLAP", "255")
    assert load_settings().ingest.chunk_overlap == 255
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(overrides={"ingest": {"chunk_tokens": 128, "chunk_overlap": 128}})


# --------------------------------------------------------------------------- one home per default


def _setting_defaults() -> dict[str, list[tuple[str, object]]]:
    """Setting field name -> [(section, default)] over every section of ``Settings``."""
    from milvus_rag.settings import Settings

    names: dict[str, list[tuple[str, object]]] = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            names.setdefault(name, []).append((section, field.default))
    return names


def _component_defaults() -> list[tuple[str, str, object]]:
    """(where, parameter or field name, default) of every component in the package.

    Functions, methods and constructors (dataclass fields included) by signature, and the
    fields of pydantic models that are not settings sections.
    """
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import milvus_rag.chains
    import milvus_rag.loaders
    from pydantic import BaseModel

    import milvus_rag.cli
    import milvus_rag.llm
    from milvus_rag import settings as settings_module

    found: list[tuple[str, str, object]] = []
    packages = (milvus_rag, milvus_rag.cli, milvus_rag.llm, milvus_rag.chains, milvus_rag.loaders)
    for package in packages:
        for info in pkgutil.iter_modules(package.__path__):
            if info.name in ("__main__", "settings"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, obj in vars(module).items():
                if getattr(obj, "__module__", None) != module.__name__:
                    continue
                where = f"{module.__name__}.{name}"
                targets = [obj] if inspect.isfunction(obj) else []
                if inspect.isclass(obj):
                    if issubclass(obj, BaseModel):
                        assert vars(settings_module).get(name) is not obj
                        own = vars(obj).get("__annotations__", {})  # not inherited fields
                        found += [
                            (where, f, i.default) for f, i in obj.model_fields.items() if f in own
                        ]
                        continue
                    if dataclasses.is_dataclass(obj) or "__init__" in vars(obj):
                        targets.append(obj)
                    targets += [m for m in vars(obj).values() if inspect.isfunction(m)]
                for target in targets:
                    try:
                        params = inspect.signature(target).parameters.values()
                    except (TypeError, ValueError):
                        continue
                    found += [
                        (where, p.name, p.default)
                        for p in params
                        if p.default is not inspect.Parameter.empty
                    ]
    return found


# Component parameters named differently from their setting.
_RENAMED = {
    "max_tokens": "chunk_tokens",
    "overlap": "chunk_overlap",
    "min_chars": "min_chunk_chars",
}


def test_every_component_default_is_its_settings_default() -> None:
    # A component that keeps a default for a setting (same name, or a name in _RENAMED) has
    # the setting's default: the value is declared in milvus_rag/settings/ (loaders, which know
    # nothing of settings, keep one named constant each).
    settings = _setting_defaults()
    checked: set[str] = set()
    for where, name, default in _component_defaults():
        candidates = [c for c in settings.get(_RENAMED.get(name, name), []) if c[1] is not None]
        if default is None or len(candidates) != 1:
            continue  # None = "unset, read the setting"; a name set in several sections is not one
        section, expected = candidates[0]
        assert default == expected, (
            f"{where}: {name}={default!r}, but {section}.{name}={expected!r}"
        )
        checked.add(f"{where}.{name}")
    # The defaults issue 18 found declared a second time are among those checked.
    for expected in (
        *(
            f"milvus_rag.loaders.sources.SourceLimits.{n}"
            for n in (
                "max_archive_bytes",
                "max_archive_ratio",
                "max_archive_files",
                "max_download_bytes",
                "download_timeout",
                "allow_private_urls",
                "max_file_bytes",
            )
        ),
        *(
            f"milvus_rag.loaders.{where}.{n}"
            for where in ("documents.make_splitter", "splitters.MarkdownSplitter")
            for n in ("max_tokens", "overlap", "min_chars")
        ),
        "milvus_rag.loaders.documents.SourceLoader.parse_timeout",
        "milvus_rag.loaders.documents.SourceLoader.splitter",
        "milvus_rag.loaders.formats.parse_file.parse_timeout",
        "milvus_rag.embeddings.MilvusModelEmbeddings.model",
        "milvus_rag.embeddings.MilvusModelEmbeddings.tokenizer",
        "milvus_rag.embeddings.MilvusModelEmbeddings.batch_size",
        "milvus_rag.embeddings.BatchedOnnxEncoder.batch_size",
    ):
        assert expected in checked, expected

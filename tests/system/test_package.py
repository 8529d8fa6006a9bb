"""The package surface: public names, module layout, installed files."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import milvus_rag.chains
import milvus_rag.loaders
import pytest

import milvus_rag
import milvus_rag.errors
from tests.support.paths import REPO


def test_public_api_is_locked() -> None:
    assert sorted(milvus_rag.__all__) == sorted(
        [
            "RAG_PROMPT",
            "BatchedOnnxEncoder",
            "ConfigError",
            "EmbeddingError",
            "EndpointChatOpenAI",
            "IngestReport",
            "LLMError",
            "MilvusModelEmbeddings",
            "MilvusRAGError",
            "MilvusRAGRetriever",
            "Settings",
            "SourceError",
            "StoreError",
            "build_rag_chain",
            "build_rag_chain_with_sources",
            "chat_model_from_settings",
            "ingest",
            "load_settings",
            "neutralize",
            "open_vector_store",
        ]
    )
    for name in milvus_rag.__all__:
        assert getattr(milvus_rag, name) is not None


def test_subpackage_apis_are_locked() -> None:
    assert sorted(milvus_rag.chains.__all__) == sorted(
        [
            "CITATION_INSTRUCTION",
            "CONDENSE_PROMPT",
            "CONDENSE_TAG",
            "CONFIGURABLE_FIELDS",
            "INTERNAL_METADATA",
            "RAG_PROMPT",
            "SYSTEM_MESSAGE",
            "USER_MESSAGE",
            "QuestionInput",
            "ScopedRetriever",
            "build_rag_chain",
            "build_rag_chain_with_sources",
            "build_retrieval_chain",
            "client_document",
            "configurable_retriever",
            "format_docs",
            "messages_from",
            "neutralize",
            "retrieved_of",
            "source_list",
            "source_of",
        ]
    )
    assert sorted(milvus_rag.loaders.__all__) == sorted(
        [
            "SPLITTERS",
            "Chunk",
            "MarkdownSplitter",
            "ParsedFile",
            "SourceFile",
            "SourceLimits",
            "SourceLoader",
            "Splitter",
            "UnreadableFile",
            "cap_bytes",
            "format_of",
            "glob_match",
            "make_splitter",
            "open_source",
            "parse_file",
            "split_tutorial",
        ]
    )
    for module in (milvus_rag.chains, milvus_rag.loaders, milvus_rag.errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_chains_and_loaders_live_under_milvus_rag() -> None:
    assert Path(milvus_rag.chains.__file__).parent == REPO / "chains"
    assert Path(milvus_rag.loaders.__file__).parent == REPO / "loaders"
    assert milvus_rag.chains.__name__ == "milvus_rag.chains"


def test_loaders_know_nothing_of_milvus_llm_or_settings() -> None:
    for path in (REPO / "loaders").glob("*.py"):
        text = path.read_text()
        for forbidden in (
            "milvus_rag.settings",
            "milvus_rag.store",
            "milvus_rag.llm",
            "pymilvus",
            "langchain_milvus",
        ):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


_ENV_READ = re.compile(
    r"os\.getenv\(|os\.environ\.get\(|\*\*os\.environ|os\.environ\[[^\]]+\](?!\s*=)"
)


def test_only_settings_reads_the_environment() -> None:
    paths = [
        *(REPO / "milvus_rag").rglob("*.py"),
        *(REPO / "chains").glob("*.py"),
        *(REPO / "loaders").glob("*.py"),
    ]
    for path in paths:
        if path.parent == REPO / "milvus_rag" / "settings":
            continue
        assert not _ENV_READ.search(path.read_text()), f"{path} reads the environment"


@pytest.mark.slow
def test_wheel_installs_no_top_level_chains_or_loaders(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip()[-200:]}")
    wheel = next(tmp_path.glob("milvus_rag-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "chains" not in tops and "loaders" not in tops
    assert "milvus_rag/chains/rag.py" in names
    assert "milvus_rag/loaders/sources.py" in names
    assert "milvus_rag/cli/__init__.py" in names
    # Every package of the source tree ships (a subpackage left out of pyproject would not).
    for init in sorted((REPO / "milvus_rag").glob("*/__init__.py")):
        assert f"milvus_rag/{init.parent.name}/__init__.py" in names, init.parent.name
    assert not any(name.startswith("tests/") for name in names)
    # The commented config template ships as package data (`milvus-rag config init`).
    shipped = zipfile.ZipFile(wheel).read("milvus_rag/config.default.yaml").decode()
    assert shipped == (REPO / "milvus_rag" / "config.default.yaml").read_text()


def test_bm25_and_server_exports() -> None:
    import milvus_rag.bm25
    import milvus_rag.server

    assert sorted(milvus_rag.bm25.__all__) == ["ENGLISH_STOP_WORDS", "analyzer_params"]
    assert sorted(milvus_rag.server.__all__) == sorted(
        ["STATUS_OF", "ChatRequest", "create_app", "status_of"]
    )


def test_redaction_exports() -> None:
    import milvus_rag.redaction

    assert sorted(milvus_rag.redaction.__all__) == sorted(
        ["LOGGERS", "MASK", "MIN_SECRET_LENGTH", "RedactingFilter", "Redactor", "redact_logs"]
    )


def test_auth_and_access_exports() -> None:
    import milvus_rag.access
    import milvus_rag.auth

    assert sorted(milvus_rag.auth.__all__) == ["AuthLimiter", "SessionStore", "Sessions"]
    assert sorted(milvus_rag.access.__all__) == ["PRIVILEGES", "UserReport", "create_user"]
    for module in (milvus_rag.auth, milvus_rag.access):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_telemetry_exports() -> None:
    import milvus_rag.metrics
    import milvus_rag.telemetry
    import milvus_rag.tracing

    assert milvus_rag.metrics.__all__ == ["Metrics"]
    assert milvus_rag.tracing.__all__ == ["tracer_provider"]
    assert sorted(milvus_rag.telemetry.__all__) == sorted(
        [
            "ATTRIBUTE_NAMES",
            "LLMWatcher",
            "Step",
            "Telemetry",
            "TelemetryMiddleware",
            "current",
            "ingested",
            "record_error",
            "step",
        ]
    )
    for module in (milvus_rag.metrics, milvus_rag.telemetry, milvus_rag.tracing):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_readme_states_the_test_commands_ci_runs() -> None:
    # README's test commands are exactly the lanes .ci/run runs, in its order.
    readme = (REPO / "README.md").read_text()
    block = readme.split("pip install -e '.[dev]'\npytest", 1)[1].split("```", 1)[0]
    documented = [
        line.split("#", 1)[0].strip() for line in ("pytest" + block).splitlines() if line.strip()
    ]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    run = [
        "pytest " + line.removeprefix("lane ").strip() for line in ci if line.startswith("lane ")
    ]
    assert documented == run == ["pytest -m 'not slow' -x", "pytest -m slow -n 2"]
    assert "pip install -q -e '.[dev]'" in ci


def test_architecture_names_every_module() -> None:
    # ARCHITECTURE.md has one line per module: a new module gets its line there.
    text = (REPO / "ARCHITECTURE.md").read_text()
    modules = _package_files()
    missing = [
        str(path.relative_to(REPO))
        for path in modules
        if path.name not in ("__main__.py",) and f"`{path.name}`" not in text
    ]
    assert not missing, f"ARCHITECTURE.md does not name {missing}"
    assert "[ARCHITECTURE.md](ARCHITECTURE.md)" in (REPO / "README.md").read_text()


def test_mcp_and_model_download_exports() -> None:
    import milvus_rag.mcp
    import milvus_rag.model_download

    assert sorted(milvus_rag.mcp.__all__) == sorted(
        ["MCPEndpoint", "Turn", "bearer_key", "create_mcp_server", "mcp_endpoint", "mcp_http_app"]
    )
    assert sorted(milvus_rag.model_download.__all__) == sorted(
        ["DEFAULT_DOWNLOAD", "DownloadedModel", "download_model"]
    )


def _package_files() -> list[Path]:
    return [
        *(REPO / "milvus_rag").rglob("*.py"),
        *(REPO / "chains").glob("*.py"),
        *(REPO / "loaders").glob("*.py"),
    ]


def test_only_the_store_calls_a_milvus_client() -> None:
    # Every Milvus call (rows, collections, users) goes through the milvus_rag/store/ package:
    # a module elsewhere calling a MilvusClient method on a client fails here. Closing one is fine.
    import ast

    from pymilvus import MilvusClient

    methods = {name for name in dir(MilvusClient) if not name.startswith("_")} - {"close"}
    found = []
    for path in _package_files():
        if REPO / "milvus_rag" / "store" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = ast.unparse(node.func.value)
            is_client = receiver.endswith("client") or receiver in ("src", "dst")
            if is_client and node.func.attr in methods:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {receiver}.{node.func.attr}")
    assert not found, found


#: The most lines a module of the package may hold (issue 18: one concept a module).
MAX_MODULE_LINES = 600
#: The most lines a function may hold; a CLI command's option declarations do not count.
MAX_FUNCTION_LINES = 60


def test_modules_are_at_most_600_lines() -> None:
    lines = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in _package_files()
    }
    too_long = {name: n for name, n in lines.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"over {MAX_MODULE_LINES} lines: {too_long}"


def test_functions_are_at_most_60_lines() -> None:
    import ast

    too_long = {}
    for path in _package_files():
        command_module = path.parent.name == "cli"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # A CLI command's option declarations (its signature) do not count.
                first = node.body[0].lineno if command_module else node.lineno
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(REPO)}::{node.name}"] = length
    assert not too_long, f"over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_the_package_has_no_import_cycle() -> None:
    # Imports inside functions count; those only for type checking do not.
    import ast

    modules: dict[str, Path] = {}
    for base, package in (
        (REPO / "milvus_rag", "milvus_rag"),
        (REPO / "chains", "milvus_rag.chains"),
        (REPO / "loaders", "milvus_rag.loaders"),
    ):
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {
                t for t in targets if t in modules and t != name and not name.startswith(t + ".")
            }

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for nxt in graph[current] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    cycles = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles, cycles


#: Where each test file lives: a module's tests are found by its name.
TESTS = REPO / "tests"
#: Folders of tests/ that are named after no module: what spans the system, and helpers.
NOT_MIRRORED = ("system", "support")
#: A module of this many lines or more has a test file of its own.
TESTED_FROM_LINES = 150


def _test_file_of(module: Path) -> Path:
    """The test file of a module, at the mirrored path: ``milvus_rag/server/openai.py`` ->
    ``tests/server/test_openai.py``, ``chains/rag.py`` -> ``tests/chains/test_rag.py``,
    ``milvus_rag/keys.py`` -> ``tests/test_keys.py``; a subpackage's ``__init__.py`` is the
    module of the subpackage's name (``milvus_rag/store/__init__.py`` -> ``tests/test_store.py``)
    and the package's own ``__init__.py`` is tested in ``tests/system/test_package.py``."""
    rel = module.relative_to(REPO)
    parts = list(rel.parts[1:] if rel.parts[0] == "milvus_rag" else rel.parts)
    if parts == ["__init__.py"]:
        return TESTS / "system" / "test_package.py"
    if parts[-1] == "__init__.py":
        return TESTS / f"test_{parts[-2]}.py"
    return TESTS.joinpath(*parts[:-1], f"test_{parts[-1]}")


def test_tests_mirror_the_package() -> None:
    # tests/ mirrors the package: tests/<subpackage>/test_<module>.py for a module of a
    # subpackage (tests/chains/ and tests/loaders/ mirror chains/ and loaders/),
    # tests/test_<module>.py for a top-level module or a subpackage's __init__.py. Only
    # tests/system/ (tests that span the system) and tests/support/ are named after no module.
    modules = [p for p in _package_files() if p.name != "__main__.py"]
    homes = {_test_file_of(p) for p in modules}
    orphans = sorted(
        str(path.relative_to(REPO))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in NOT_MIRRORED and path not in homes
    )
    assert not orphans, f"test files named after no module at the mirrored path: {orphans}"
    untested = sorted(
        str(path.relative_to(REPO))
        for path in modules
        if len(path.read_text().splitlines()) >= TESTED_FROM_LINES
        and not _test_file_of(path).exists()
    )
    assert not untested, (
        f"modules of {TESTED_FROM_LINES}+ lines without a test file of their name: {untested}"
    )

"""The commands people expect: --version, -h, --uri/--collection, choices, the search
table, config init, sources, delete, doctor; exit codes and output through typer's runner."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.cli import one_line_error
from tests.support.openai_server import FakeOpenAIServer, closed_port

runner = CliRunner()

MILVUS_COMMANDS = [
    "ingest",
    "search",
    "ask",
    "eval",
    "migrate",
    "serve",
    "sources",
    "delete",
    "chat",
    "doctor",
    "unlock",
]


def run(*args: str, input: str | None = None) -> object:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("COLUMNS", "100")
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "cli.db", tiny_model_dir, llm)))
    return path


def _ingest(config: Path, source: Path, *extra: str) -> object:
    result = run("ingest", str(source), "--glob", "en/faq/*.md", *extra, "--config", str(config))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return result


# --------------------------------------------------------------------------- basics


def test_version_and_short_help() -> None:
    from milvus_rag import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"milvus-rag {__version__}"
    long, short = run("--help"), run("-h")
    assert long.exit_code == short.exit_code == 0
    assert short.stdout == long.stdout
    for command in (*MILVUS_COMMANDS, "config", "sources", "delete", "doctor"):
        assert command in long.stdout
    assert run("search", "-h").stdout == run("search", "--help").stdout


@pytest.mark.parametrize("command", MILVUS_COMMANDS)
def test_every_milvus_command_takes_uri_and_collection(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "--uri" in result.stdout and "--collection" in result.stdout


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("search", "--mode", ("dense", "hybrid")),
        ("ask", "--mode", ("dense", "hybrid")),
        ("ingest", "--mode", ("dense", "hybrid")),
        ("ingest", "--splitter", ("markdown", "tutorial")),
        ("search", "--format", ("table", "json", "tutorial")),
    ],
)
def test_choices_are_shown_and_enforced(
    command: str, option: str, choices: tuple[str, ...]
) -> None:
    shown = run(command, "--help").stdout
    assert re.search(r"\W".join(choices), shown), shown
    args = [command, "x", option, "nope"]
    err = one_line_error(run(*args), code=2)
    assert option in err and all(c in err for c in choices) and f"{command} -h" in err


@pytest.mark.slow
def test_uri_and_collection_flags_win(config: Path, faq_folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    flags = ["--uri", str(other), "--collection", "elsewhere"]
    _ingest(config, faq_folder, *flags)
    assert other.exists() and not (tmp_path / "cli.db").exists()
    found = run(
        "search", "Where does Milvus store data?", "--json", *flags, "--config", str(config)
    )
    assert found.exit_code == 0 and json.loads(found.stdout)[0]["source"].startswith("en/faq/")
    listed = json.loads(run("sources", "--json", *flags, "--config", str(config)).stdout)
    assert listed["collection"] == "elsewhere" and len(listed["documents"]) == 4
    err = one_line_error(run("search", "q?", "--config", str(config)))
    assert "cli.db" in err  # without the flags: the config's database, never ingested
    copied = run(
        "migrate", "--to", str(tmp_path / "copy.db"), *flags, "--json", "--config", str(config)
    )
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)["copied"] > 0


# --------------------------------------------------------------------------- search output


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 200])
def test_search_prints_a_table_by_default(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    _ingest(config, faq_folder)
    question = "Where does Milvus store data?"
    result = run("search", question, "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["#", "score", "source", "heading"]
    assert all(len(line) <= columns for line in lines)
    as_json = json.loads(run("search", question, "--json", "--config", str(config)).stdout)
    assert as_json == json.loads(
        run("search", question, "--format", "json", "--config", str(config)).stdout
    )
    per_hit = (len(lines) - 1) // len(as_json)
    assert per_hit == (1 if columns == 200 else 2)  # 80 columns: the text on a line of its own
    for rank, hit in enumerate(as_json, 1):
        row = " ".join(lines[1 + (rank - 1) * per_hit : 1 + rank * per_hit])
        assert row.split()[:3] == [str(rank), f"{hit['score']:.3f}", hit["source"]]
        heading, _, body = hit["text"].partition("\n\n")
        assert heading[-10:] in row  # a heading cut to fit keeps its innermost part
        shown = body.strip().splitlines()[0]
        # The text keeps at least MIN_TEXT columns (or the whole line).
        assert shown[: min(len(shown), 39)] in row
    err = one_line_error(
        run("search", question, "--json", "--format", "tutorial", "--config", str(config)), code=2
    )
    assert "--json" in err and "--format" in err


def test_table_fits_narrow_terminals() -> None:
    from langchain_core.documents import Document

    from milvus_rag.cli.search import result_table

    heading = "A long chapter title > " * 5 + "Section"
    docs = [
        Document(
            page_content=heading + "\n\n" + "word " * 100,
            metadata={"score": 0.5, "source": "x/" * 40 + "doc.md", "heading": heading},
        )
    ]
    for width in (40, 80, 200):
        lines = result_table(docs, width)
        assert all(len(line) <= width for line in lines), (width, lines)
        assert lines[1].startswith("1  0.500")
        assert "doc.md" in lines[1]  # a cut source keeps its file name
        text = lines[2]  # the source and heading leave too little room: two lines
        assert "…" in text and "word" in text  # truncated, the text still shown
    wide = result_table(docs, 400)
    assert len(wide) == 2 and "x/" * 40 + "doc.md" in wide[1] and heading in wide[1]
    assert result_table([], 80) == ["no passage matched"]


def test_table_keeps_source_and_heading_readable_at_80_columns() -> None:
    from langchain_core.documents import Document

    from milvus_rag.cli.search import MIN_TEXT, result_table

    doc = Document(
        page_content="Operational FAQ > Where does Milvus store data?\n\n" + "Milvus stores " * 30,
        metadata={
            "score": 0.71,
            "source": "en/faq/operational_faq.md",
            "heading": "Operational FAQ > Where does Milvus store data?",
        },
    )
    lines = result_table([doc], 80)
    assert "en/faq/operational_faq.md" in lines[1]
    assert "Where does Milvus store data?" in lines[1]
    assert len(lines[2].strip()) >= MIN_TEXT


# --------------------------------------------------------------------------- config init


def test_config_init_writes_the_defaults(tmp_path: Path) -> None:
    from milvus_rag.settings import Settings, load_settings

    result = run("config", "init")
    assert result.exit_code == 0, result.output
    written = tmp_path / "config.yaml"  # in the cwd
    assert written.read_text().startswith("# milvus-rag configuration")
    assert load_settings(written).model_dump() == Settings().model_dump()

    written.write_text("retrieval:\n  top_k: 5\n")
    err = one_line_error(run("config", "init"), code=2)
    assert "already exists" in err and "--force" in err
    assert written.read_text() == "retrieval:\n  top_k: 5\n"  # untouched
    assert run("config", "init", "--force").exit_code == 0
    assert load_settings(written).retrieval.top_k == 3

    other = tmp_path / "sub" / "my.yaml"
    other.parent.mkdir()
    assert run("config", "init", str(other)).exit_code == 0
    shown = json.loads(run("config", "--config", str(other)).stdout)
    assert shown.pop("config_file") == str(other.resolve())
    assert shown.pop("secrets") == Settings().secret_routes()
    assert shown == Settings().redacted()


def test_config_init_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    err = one_line_error(run("config", "init", str(tmp_path / "dir"), "--force"), code=2)
    assert "folder" in err


# --------------------------------------------------------------------------- ingest output


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return path


@pytest.mark.parametrize("case", ["missing", "nothing-matched", "corrupt-zip", "not-a-model"])
def test_a_failed_ingest_creates_no_database(config: Path, tmp_path: Path, case: str) -> None:
    db = tmp_path / "cli.db"
    source = tmp_path / "docs"
    source.mkdir()
    (source / "a.md").write_text("# A\n\nMilvus stores data in object storage.\n")
    args = ["ingest", str(source), "--config", str(config)]
    if case == "missing":
        args[1] = str(tmp_path / "nope")
    elif case == "nothing-matched":
        args += ["--glob", "*.pdf"]
    elif case == "corrupt-zip":
        (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
        args[1] = str(tmp_path / "bad.zip")
    else:
        broken = tmp_path / "broken-model"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"junk")
        data = yaml.safe_load(config.read_text())
        data["embedding"]["model_dir"] = str(broken)
        config.write_text(yaml.safe_dump(data))
    one_line_error(run(*args))
    assert not db.exists()


@pytest.mark.slow
def test_unsupported_types_are_summarised_once(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "# Storage\n\nMilvus keeps data in object storage and metadata in etcd.\n"
    unsupported = ["b.bin", "c.bin", "d.bin", "e.bin", "en/menu.json", "f.bin", "logo.png"]
    entries = {"a.md": text, "big.md": text * 50, **dict.fromkeys(unsupported, "x")}
    archive = _zip(tmp_path / "docs.zip", entries)
    monkeypatch.setenv("MILVUS_RAG_INGEST__MAX_FILE_BYTES", "1000")  # big.md: another reason
    for _ in range(2):  # every run says it once
        result = run("ingest", str(archive), "--config", str(config))
        assert result.exit_code == 0, result.output
        big, summary = result.stderr.rpartition("\r")[2].splitlines()
        assert big.startswith("skipped big.md: ") and "max_file_bytes" in big
        assert summary == (
            "skipped 7 files: unsupported file type "
            "(b.bin, c.bin, d.bin, e.bin, en/menu.json, ... 2 more)"
        )
    one = _zip(tmp_path / "one.zip", {"a.md": text, "x.bin": "x"})
    result = run("ingest", str(one), "--config", str(config))
    assert result.stderr.rpartition("\r")[2].splitlines() == [
        "skipped x.bin: unsupported file type"
    ]


# --------------------------------------------------------------------------- sources and delete


@pytest.mark.slow
def test_sources_lists_documents(config: Path, faq_folder: Path, tiny_model_dir: Path) -> None:
    _ingest(config, faq_folder, "--splitter", "tutorial")
    result = run("sources", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("collection test_docs: 4 documents, 72 chunks")
    assert f"model {tiny_model_dir.name}, mode hybrid" in lines[0]  # the default
    assert lines[1].split()[:2] == ["source", "chunks"]
    assert len(lines) == 6 and all("tutorial" in line and "UTC" in line for line in lines[2:])

    data = json.loads(run("sources", "--json", "--config", str(config)).stdout)
    assert data["mode"] == "hybrid" and data["model"] == tiny_model_dir.name
    docs = {d["source"]: d for d in data["documents"]}
    assert set(docs) == {
        "en/faq/operational_faq.md",
        "en/faq/performance_faq.md",
        "en/faq/product_faq.md",
        "en/faq/troubleshooting.md",
    }
    assert sum(d["chunks"] for d in docs.values()) == 72
    first = docs["en/faq/product_faq.md"]
    assert first["splitter"] == "tutorial" and first["origin"] == str(faq_folder.resolve())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first["ingested_at"])


@pytest.mark.slow
def test_sources_time_follows_the_glob(config: Path, faq_folder: Path) -> None:
    from milvus_rag.settings import load_settings
    from milvus_rag.store import connect, record_ingest

    _ingest(config, faq_folder)
    settings = load_settings(config)
    client = connect(settings.milvus)
    try:  # a later run over one file only (a fixed time, to compare)
        record_ingest(
            client,
            "test_docs",
            origin=str(faq_folder.resolve()),
            glob="en/faq/product_*.md",
            splitter="markdown",
            chunker="x",
            at="2999-01-01T00:00:00+00:00",
        )
    finally:
        client.close()
    docs = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    times = {d["source"]: d["ingested_at"] for d in docs}
    assert times.pop("en/faq/product_faq.md") == "2999-01-01T00:00:00+00:00"
    assert all(t is not None and t < "2999" for t in times.values())


def test_sources_on_a_missing_database(config: Path, tmp_path: Path) -> None:
    err = one_line_error(run("sources", "--config", str(config)))
    assert "no Milvus Lite database" in err and not (tmp_path / "cli.db").exists()


@pytest.mark.slow
def test_delete_removes_documents_and_their_state(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    before = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    chunks = {d["source"]: d["chunks"] for d in before}

    result = run("delete", "en/faq/product*", "--yes", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "en/faq/product_faq.md" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        f"deleted 1 documents ({chunks['en/faq/product_faq.md']} chunks) from test_docs"
    )
    after = json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]
    assert {d["source"] for d in after} == set(chunks) - {"en/faq/product_faq.md"}

    again = _ingest(config, faq_folder, "--json")
    report = json.loads(again.stdout)  # type: ignore[attr-defined]
    assert (report["added"], report["unchanged"]) == (1, 3)  # its sync state went with it


@pytest.mark.slow
def test_delete_asks_first(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    declined = run("delete", "en/faq/", "--config", str(config), input="n\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.stderr
    assert "delete these 4 documents" in declined.stdout
    assert (
        len(json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]) == 4
    )
    accepted = run("delete", "en/faq/", "--config", str(config), input="y\n")
    assert accepted.exit_code == 0 and "deleted 4 documents" in accepted.stdout
    listed = run("sources", "--config", str(config))
    assert listed.stdout.startswith("collection test_docs: 0 documents")


@pytest.mark.slow
def test_delete_with_no_match_is_one_line(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    result = run("delete", "en/nothing/*", "--yes", "--config", str(config))
    err = one_line_error(result, code=1)
    assert "en/nothing/*" in err and result.stdout == ""


# --------------------------------------------------------------------------- doctor


def _doctor(config: Path, *extra: str) -> tuple[int, dict[str, list[str]]]:
    result = run("doctor", *extra, "--config", str(config))
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    by_check: dict[str, list[str]] = {}
    for line in lines[:-1]:
        status, name = line.split()[:2]
        by_check.setdefault(name, []).append(line)
        assert status in ("ok", "FAIL", "skip"), line
    assert re.fullmatch(r"(all \d+ checks passed|\d+ of \d+ checks failed)", lines[-1])
    return result.exit_code, by_check  # type: ignore[attr-defined]


@pytest.mark.slow
def test_doctor_all_ok(config: Path, faq_folder: Path, llm: FakeOpenAIServer) -> None:
    _ingest(config, faq_folder)
    code, checks = _doctor(config)
    assert code == 0, checks
    assert set(checks) == {"config", "env", "model", "milvus", "collection", "llm"}
    assert all(line.startswith("ok") for lines in checks.values() for line in lines)
    assert llm.requests[-1]["path"] == "/v1/models"
    assert llm.requests[-1]["headers"]["authorization"] == "Bearer test-key"
    data = json.loads(run("doctor", "--json", "--config", str(config)).stdout)
    assert data["ok"] is True and {c["status"] for c in data["checks"]} == {"ok"}


@pytest.mark.slow
def test_doctor_a_dense_collection_under_the_hybrid_default(config: Path, faq_folder: Path) -> None:
    """ask and serve search a dense collection dense under retrieval.mode hybrid: doctor agrees."""
    _ingest(config, faq_folder, "--mode", "dense")
    code, checks = _doctor(config, "--offline")
    assert code == 0, checks
    (line,) = checks["collection"]
    assert "dense (retrieval.mode hybrid searches it dense; ingest --recreate" in line, line


def _failing(checks: dict[str, list[str]], name: str) -> str:
    (line,) = [li for li in checks[name] if li.startswith("FAIL")]
    assert " -> fix: " in line
    return line


@pytest.mark.slow
def test_doctor_names_an_unknown_variable(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(config, faq_folder)
    monkeypatch.setenv("MILVUS_RAG_RETREIVAL__TOP_K", "5")
    result = run("doctor", "--offline", "--config", str(config))
    assert result.exit_code == 1 and "warning:" not in result.stderr  # said once, in its line
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "env")
    assert "MILVUS_RAG_RETREIVAL__TOP_K" in line
    assert line.endswith("fix: rename it to MILVUS_RAG_RETRIEVAL__TOP_K")
    assert checks["llm"][0].startswith("skip")


def test_doctor_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  top_k: lots\n")
    code, checks = _doctor(bad, "--offline")
    assert code == 1
    assert "retrieval.top_k" in _failing(checks, "config")
    assert checks["milvus"][0].startswith("skip")


def test_doctor_model_files(config: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial-model"
    partial.mkdir()
    (partial / "model.onnx").write_bytes(b"x")
    data = yaml.safe_load(config.read_text())
    data["embedding"]["model_dir"] = str(partial)
    config.write_text(yaml.safe_dump(data))
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "model")
    assert "config.json" in line and "tokenizer.json" in line

    del data["embedding"]["model_dir"]  # the hub model, offline and not cached
    config.write_text(yaml.safe_dump(data))
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "model")
    assert "not in the Hugging Face cache" in line and "embedding.model_dir" in line


def test_doctor_milvus_missing_and_unreachable(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checks = _doctor(config, "--offline")
    line = _failing(checks, "milvus")
    assert "no Milvus Lite database" in line and "milvus-rag ingest" in line
    assert checks["collection"][0].startswith("skip")

    monkeypatch.setenv("MILVUS_RAG_MILVUS__TIMEOUT", "2")
    url = f"http://127.0.0.1:{closed_port()}"
    _, checks = _doctor(config, "--offline", "--uri", url)
    line = _failing(checks, "milvus")
    assert url in line and "cannot be reached" in line


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    """A Milvus Lite database held open by another process."""
    from tests.support.lite_server import lite_file_held

    with lite_file_held(tmp_path / "locked.db") as db:
        yield db


@pytest.mark.slow
def test_doctor_lite_file_locked(config: Path, locked_db: Path) -> None:
    _, checks = _doctor(config, "--offline", "--uri", str(locked_db))
    line = _failing(checks, "milvus")
    assert "open in another process" in line and "127.0.0.1:19530" in line  # how to serve it


@pytest.mark.slow
def test_doctor_collection_missing_and_other_model(
    config: Path, faq_folder: Path, tmp_path: Path
) -> None:
    from tests.support.tiny_model import make_tiny_model

    _ingest(config, faq_folder)
    _, checks = _doctor(config, "--offline", "--collection", "nothing_here")
    assert "does not exist" in _failing(checks, "collection")

    data = yaml.safe_load(config.read_text())
    data["embedding"]["model_dir"] = str(make_tiny_model(tmp_path / "other", seed=5))
    config.write_text(yaml.safe_dump(data))
    code, checks = _doctor(config, "--offline")
    line = _failing(checks, "collection")
    assert (
        code == 1 and "was built with model=" in line and "fix: re-ingest with --recreate" in line
    )


@pytest.mark.slow
def test_doctor_llm_failures(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(config, faq_folder)
    llm.script(status=401)
    _, checks = _doctor(config)
    line = _failing(checks, "llm")
    assert "rejected the key" in line and "TEST_LLM_KEY" in line and "test-key" not in line

    monkeypatch.delenv("TEST_LLM_KEY")
    _, checks = _doctor(config)
    assert "TEST_LLM_KEY is not set" in _failing(checks, "llm")

    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("MILVUS_RAG_LLM__BASE_URL", url)
    code, checks = _doctor(config)
    line = _failing(checks, "llm")
    assert code == 1 and "cannot be reached" in line and "llm.base_url" in line

    monkeypatch.setenv("MILVUS_RAG_LLM__FALLBACKS", '["local"]')
    _, checks = _doctor(config, "--offline")
    assert [li.split()[0] for li in checks["llm"] + checks["fallback"]] == ["skip", "skip"]

"""The command line through typer's runner: exit codes and output."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from milvus_rag.cli import app
from tests.conftest import base_config
from tests.support.cli import one_line_error
from tests.support.openai_server import FakeOpenAIServer, closed_port

runner = CliRunner()


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    monkeypatch.setenv("COLUMNS", "100")
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "cli.db", tiny_model_dir, llm)))
    return path


def run(*args: str, input: str | None = None) -> object:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def _ingest_faq(config: Path, source: Path, *extra: str) -> object:
    glob = ("--glob", "en/faq/*.md", "--splitter", "tutorial")
    return run("ingest", str(source), *glob, *extra, "--config", str(config))


def _tutorial_report(config: Path, source: Path) -> tuple[int, int]:
    """Files seen and chunks written by a JSON tutorial-splitter ingest of the FAQ."""
    result = _ingest_faq(config, source, "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    report = json.loads(result.stdout)  # type: ignore[attr-defined]
    return report["files_seen"], report["chunks_written"]


@pytest.mark.slow
def test_ingest_tutorial_gives_72_chunks_then_nothing(config: Path, faq_folder: Path) -> None:
    result = _ingest_faq(config, faq_folder)
    assert result.exit_code == 0, result.output
    assert "files seen 4" in result.stdout and "chunks written 72" in result.stdout
    again = _ingest_faq(config, faq_folder)
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout and "unchanged 4" in again.stdout
    assert "chunks written 0" in again.stdout


@pytest.mark.slow
def test_ingest_zip_and_json(config: Path, faq_zip: Path) -> None:
    assert _tutorial_report(config, faq_zip) == (4, 72)


@pytest.mark.slow
def test_search_prints_like_the_tutorial(config: Path, faq_folder: Path) -> None:
    _ingest_faq(config, faq_folder)
    question = "Where does Milvus store data?"
    result = run("search", question, "--format", "tutorial", "--config", str(config))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(isinstance(r, list) and len(r) == 2 for r in rows)
    assert rows[0][0].startswith("Where does Milvus store data?")
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)

    result = run(
        "search", "Where does Milvus store data?", "-k", "5", "--json", "--config", str(config)
    )
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and set(hits[0]) == {"text", "source", "score"}
    assert hits[0]["source"] == "en/faq/product_faq.md"


@pytest.mark.slow
def test_ask_streams_then_lists_sources(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer
) -> None:
    _ingest_faq(config, faq_folder)
    result = run("ask", "Where does Milvus store data?", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(llm.answer)
    assert "Sources:" in result.stdout and "en/faq/product_faq.md" in result.stdout
    assert llm.chat_requests()[-1]["body"]["stream"] is True

    result = run("ask", "Where does Milvus store data?", "--json", "--config", str(config))
    data = json.loads(result.stdout)
    assert data["answer"] == llm.answer
    assert data["sources"][0]["source"] == "en/faq/product_faq.md"
    assert set(data["sources"][0]) == {"text", "source", "score"}

    result = run("ask", "Where does Milvus store data?", "--no-stream", "--config", str(config))
    assert result.exit_code == 0 and result.stdout.startswith(llm.answer)
    assert llm.chat_requests()[-1]["body"].get("stream") in (None, False)


def test_ask_without_key_fails_before_any_request(
    config: Path, faq_folder: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    monkeypatch.delenv("TEST_LLM_KEY")
    llm.reset()
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err
    assert llm.requests == []


@pytest.mark.slow
def test_ask_unreachable_endpoint(
    config: Path, faq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_faq(config, faq_folder)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("MILVUS_RAG_LLM__BASE_URL", url)
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert url in err and "llm.base_url" in err


@pytest.mark.slow
def test_ask_rejected_key(config: Path, faq_folder: Path, llm: FakeOpenAIServer) -> None:
    _ingest_faq(config, faq_folder)
    llm.script(status=401)
    err = one_line_error(run("ask", "q?", "--config", str(config)))
    assert "TEST_LLM_KEY" in err and "401" in err


def test_no_files_matched(config: Path, faq_folder: Path) -> None:
    err = one_line_error(run("ingest", str(faq_folder), "--glob", "*.pdf", "--config", str(config)))
    assert "*.pdf" in err


def test_missing_source(config: Path, tmp_path: Path) -> None:
    err = one_line_error(run("ingest", str(tmp_path / "nope"), "--config", str(config)))
    assert "nope" in err


def test_search_empty_collection(config: Path) -> None:
    err = one_line_error(run("search", "q?", "--config", str(config)))
    assert "milvus-rag ingest" in err


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  top_k: lots\n")
    err = one_line_error(run("search", "q?", "--config", str(bad)), code=2)
    assert "retrieval.top_k" in err
    err = one_line_error(run("search", "q?", "--config", str(tmp_path / "none.yaml")), code=2)
    assert "none.yaml" in err


def test_bad_flag_values(config: Path, faq_folder: Path) -> None:
    one_line_error(
        run("ingest", str(faq_folder), "--splitter", "words", "--config", str(config)), code=2
    )
    one_line_error(run("search", "q", "--mode", "sparse", "--config", str(config)), code=2)
    one_line_error(run("search", "q", "-k", "0", "--config", str(config)), code=2)


def test_model_not_downloadable_offline(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"milvus:\n  uri: {tmp_path / 'hub.db'}\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text about milvus.\n")
    err = one_line_error(run("ingest", str(tmp_path / "docs"), "--config", str(cfg)))
    assert "embedding.model_dir" in err
    assert not (tmp_path / "hub.db").exists()  # the model loads before anything connects


def test_config_command_redacts_secrets(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "tok-secret")
    result = run("config", "--config", str(config))
    assert result.exit_code == 0
    assert "tok-secret" not in result.stdout and "test-key" not in result.stdout
    data = json.loads(result.stdout)
    assert data["milvus"]["token"] == "**********"
    assert data["llm"]["api_key"] == "**********"


@pytest.mark.slow
@pytest.mark.shared
def test_tutorial_parity_on_the_shared_archive(config: Path) -> None:
    from tests.conftest import SHARED_ZIP, require

    assert _tutorial_report(config, require(SHARED_ZIP)) == (4, 72)


# --------------------------------------------------------------------------- limits and exposure


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def www(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A local static file server (query strings ignored) and its base URL; private URLs on."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    monkeypatch.setenv("MILVUS_RAG_INGEST__ALLOW_PRIVATE_URLS", "true")
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return path


def _stored_rows(config: Path) -> list[dict[str, object]]:
    from milvus_rag.settings import load_settings
    from milvus_rag.store import connect

    settings = load_settings(config)
    client = connect(settings.milvus)
    try:
        client.load_collection(settings.milvus.collection)
        return client.query(
            settings.milvus.collection, filter="", output_fields=["*"], limit=10_000
        )
    finally:
        client.close()


@pytest.mark.slow
def test_url_credentials_and_query_are_never_stored_or_printed(
    config: Path, www: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = www
    text = "# Storage\n\nMilvus keeps data in object storage and metadata in etcd.\n" * 3
    _zip(root / "docs.zip", {"a.md": text, "big.md": text * 20, "x.bin": "b"})
    host = base_url.removeprefix("http://")
    url = f"http://alice:SECRETPW@{host}/docs.zip?X-Amz-Signature=SECRETSIG&token=SECRETTOK#SECRET"
    monkeypatch.setenv("MILVUS_RAG_INGEST__MAX_FILE_BYTES", "1000")  # big.md is skipped
    result = run("ingest", url, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "skipped big.md" in result.stderr and "max_file_bytes" in result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    result = run("ingest", url, "--json", "--config", str(config))
    assert result.exit_code == 0 and "SECRET" not in result.stdout + result.stderr

    rows = _stored_rows(config)
    assert rows and {row["origin"] for row in rows} == {
        f"http://{host}/docs.zip?X-Amz-Signature=&token="
    }
    assert "SECRET" not in json.dumps(rows, default=str)

    found = run("search", "object storage", "--json", "--config", str(config))
    assert found.exit_code == 0 and "SECRET" not in found.stdout

    missing = url.replace("docs.zip", "gone.zip")
    err = one_line_error(run("ingest", missing, "--config", str(config)))
    assert "HTTP 404" in err and "SECRET" not in err


NASTY_NAMES = ["\x1b[2J.bin", "\x1b]0;title\x07.bin", "a\r\nerror: forged.bin", "rtl\u202egpj.bin"]


def _no_raw_controls(text: str) -> None:
    for char in ("\x1b", "\x07", "\r", "\u202e"):
        assert char not in text, repr(text)


@pytest.mark.slow
def test_names_from_archives_are_printed_escaped(
    config: Path, tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    body = "# Storage \x1b[31m red\n\nMilvus keeps data in object storage and etcd.\n" * 3
    entries = {name: "x" for name in NASTY_NAMES}
    entries["en/\x1b[2Jdoc.md"] = body
    archive = _zip(tmp_path / "nasty.zip", entries)

    result = run("ingest", str(archive), "--config", str(config))
    assert result.exit_code == 0, result.output
    after_bar = result.stderr.rpartition("\r")[2]  # the progress bar ends with a CR
    _no_raw_controls(result.stdout + after_bar)
    assert after_bar.splitlines() == [  # unsupported types: one line per run
        "skipped 4 files: unsupported file type (\\x1b[2J.bin, \\x1b]0;title\\x07.bin, "
        "a\\r\\nerror: forged.bin, rtl\\u202egpj.bin)"
    ]

    result = run("ingest", str(archive), "--json", "--recreate", "--config", str(config))
    _no_raw_controls(result.stdout)
    reasons = json.loads(result.stdout)["skipped_files"]
    assert {r["source"] for r in reasons} == set(NASTY_NAMES)  # escaped, not altered

    asked = run("ask", "object storage?", "--config", str(config))
    assert asked.exit_code == 0, asked.output
    _no_raw_controls(asked.stdout)
    assert "en/\\x1b[2Jdoc.md" in asked.stdout

    err = one_line_error(
        run("ingest", str(tmp_path / "no\x1b[2Jpe\r\nerror: x"), "--config", str(config))
    )
    assert "no\\x1b[2Jpe\\r\\nerror: x" in err
    _no_raw_controls(err)


def test_eval_questions_file_not_utf8(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    data = b'{"question": "ok?", "sources": ["a.md"]}\n{"question": "caf\xe9?"}\n'
    bad.write_bytes(data)
    err = one_line_error(run("eval", str(bad), "--config", str(config)), code=2)
    assert str(bad) in err and "line 2" in err and "UTF-8" in err
    offset = data.index(b"\xe9")
    assert f"byte {offset} is 0xe9" in err


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json}", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"just a string"', "JSON object"),
        ('{"question": "q?"}', "no 'sources' key"),
        ('{"question": "", "sources": []}', "non-empty"),
        ('{"question": "q?", "sources": "a.md"}', "list of paths"),
    ],
)
def test_eval_questions_file_malformed_lines(
    config: Path, tmp_path: Path, line: str, needle: str
) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('\ufeff{"question": "ok?", "sources": ["a.md"]}\n\n' + line + "\n")
    err = one_line_error(run("eval", str(bad), "--config", str(config)), code=2)
    assert str(bad) in err and "line 3" in err and needle in err


@pytest.mark.slow
def test_config_file_is_shown(config: Path, tmp_path: Path, faq_folder: Path) -> None:
    shown = json.loads(run("config", "--config", str(config)).stdout)
    assert shown["config_file"] == str(config.resolve())
    assert json.loads(run("config").stdout)["config_file"] is None  # cwd has no config.yaml
    # Found implicitly, a file may not send TEST_LLM_KEY to the local LLM server's host...
    (tmp_path / "config.yaml").write_text(config.read_text())
    assert "TEST_LLM_KEY" in one_line_error(runner.invoke(app, ["config"]), code=2)
    # ... but it is read (without its own endpoint).
    data = yaml.safe_load(config.read_text())
    del data["llm"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert json.loads(run("config").stdout)["config_file"] == str(tmp_path / "config.yaml")

    _ingest_faq(config, faq_folder)
    result = run("ask", "Where does Milvus store data?", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config_file"] == str(config.resolve())


def test_config_cannot_send_the_milvus_token_to_the_llm(
    config: Path, llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILVUS_RAG_MILVUS__TOKEN", "milvus-secret")
    data = yaml.safe_load(config.read_text())
    data["llm"]["api_key_env"] = "MILVUS_RAG_MILVUS__TOKEN"
    config.write_text(yaml.safe_dump(data))
    err = one_line_error(run("ask", "q?", "--config", str(config)), code=2)
    assert "llm.api_key_env" in err and "milvus-secret" not in err
    assert llm.requests == []


def test_unknown_env_var_is_warned(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_RETREIVAL__TOP_K", "5")
    result = run("config", "--config", str(config))
    assert result.exit_code == 0
    assert result.stderr.strip() == (
        "warning: unknown environment variable MILVUS_RAG_RETREIVAL__TOP_K "
        "(not a milvus-rag setting); did you mean MILVUS_RAG_RETRIEVAL__TOP_K?"
    )


def test_section_not_a_mapping_is_refused_despite_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("milvus: 5\n")
    monkeypatch.setenv("MILVUS_RAG_MILVUS__URI", str(tmp_path / "x.db"))
    err = one_line_error(run("config", "--config", str(cfg)), code=2)
    assert "milvus" in err and "mapping" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_threshold_must_be_finite(config: Path, value: str) -> None:
    err = one_line_error(run("search", "q", "--threshold", value, "--config", str(config)), code=2)
    assert "retrieval.score_threshold" in err and "finite" in err


@pytest.mark.parametrize("command", ["search", "ask"])
def test_search_on_a_missing_lite_path_creates_nothing(
    config: Path, tmp_path: Path, command: str
) -> None:
    db = tmp_path / "cli.db"  # the config's milvus.uri, never ingested
    err = one_line_error(run(command, "q?", "--config", str(config)))
    assert "no Milvus Lite database" in err and str(db) in err and "milvus-rag ingest" in err
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.yaml"]

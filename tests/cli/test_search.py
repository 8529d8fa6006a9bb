"""``milvus-rag search``: the tutorial's output, the table, filters, refusals as one line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.settings import Settings, load_settings
from milvus_rag.store import connect
from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest, _ingest_faq, _zip, run


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


def test_search_empty_collection(config: Path) -> None:
    err = one_line_error(run("search", "q?", "--config", str(config)))
    assert "milvus-rag ingest" in err


def test_bad_flag_values(config: Path, faq_folder: Path) -> None:
    one_line_error(
        run("ingest", str(faq_folder), "--splitter", "words", "--config", str(config)), code=2
    )
    one_line_error(run("search", "q", "--mode", "sparse", "--config", str(config)), code=2)
    one_line_error(run("search", "q", "-k", "0", "--config", str(config)), code=2)


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


def _stored_rows(config: Path) -> list[dict[str, object]]:

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


@pytest.mark.slow
@pytest.mark.contract
def test_search_cli_with_source_filter(hybrid_settings: Settings, tmp_path: Path) -> None:

    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "milvus": hybrid_settings.milvus.model_dump(mode="json", exclude={"token"}),
                "embedding": {"model_dir": str(hybrid_settings.embedding.model_dir)},
            }
        )
    )
    args = ["search", "repair a car", "--json", "-k", "5", "--config", str(config)]
    result = CliRunner().invoke(app, [*args, "--source", "faq/*", "--mode", "hybrid"])
    assert result.exit_code == 0, result.output
    assert {h["source"].split("/")[0] for h in json.loads(result.stdout)} == {"faq"}
    result = CliRunner().invoke(app, [*args, "--filter", 'source=faq/odd "name".md'])
    assert [h["source"] for h in json.loads(result.stdout)] == ['faq/odd "name".md']
    result = CliRunner().invoke(app, [*args, "--filter", "novalue"])
    assert result.exit_code == 2

"""``milvus-rag ingest``: the tutorial's 72 chunks, zips, URLs, refusals as one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest_faq, run


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


def test_no_files_matched(config: Path, faq_folder: Path) -> None:
    err = one_line_error(run("ingest", str(faq_folder), "--glob", "*.pdf", "--config", str(config)))
    assert "*.pdf" in err


def test_missing_source(config: Path, tmp_path: Path) -> None:
    err = one_line_error(run("ingest", str(tmp_path / "nope"), "--config", str(config)))
    assert "nope" in err


def test_model_not_downloadable_offline(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"milvus:\n  uri: {tmp_path / 'hub.db'}\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text about milvus.\n")
    err = one_line_error(run("ingest", str(tmp_path / "docs"), "--config", str(cfg)))
    assert "embedding.model_dir" in err
    assert not (tmp_path / "hub.db").exists()  # the model loads before anything connects


@pytest.mark.slow
@pytest.mark.shared
def test_tutorial_parity_on_the_shared_archive(config: Path) -> None:
    from tests.conftest import SHARED_ZIP, require

    assert _tutorial_report(config, require(SHARED_ZIP)) == (4, 72)


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

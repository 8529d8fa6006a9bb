"""`milvus_rag.cli._common`: what every command shares (help, --uri/--collection, choices, bad
config files as exit 2, names printed escaped), through typer's runner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest, _zip, run
from tests.support.openai_server import FakeOpenAIServer


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  top_k: lots\n")
    err = one_line_error(run("search", "q?", "--config", str(bad)), code=2)
    assert "retrieval.top_k" in err
    err = one_line_error(run("search", "q?", "--config", str(tmp_path / "none.yaml")), code=2)
    assert "none.yaml" in err


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

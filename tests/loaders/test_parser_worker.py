"""`milvus_rag.loaders.parser_worker`: the parser sandbox (timeouts, crashes, no network, reuse)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from milvus_rag.loaders import formats
from milvus_rag.loaders.formats import (
    UnreadableFile,
    parse_file,
)

from tests.support.formats import assert_one_line, make_docx, make_pdf, raising_parser

# --------------------------------------------------------------------------- helpers
# Module-level so the parser worker can import them by name (tests.loaders.test_parser_worker).


def slow_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    time.sleep(60)
    return "never", ()


def crashing_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    os._exit(7)


def network_probe_parser(data: bytes) -> tuple[str, tuple[str, ...]]:
    results = []
    for attempt in (
        lambda: socket.getaddrinfo("example.com", 80),
        lambda: socket.create_connection(("127.0.0.1", 9), timeout=1),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9)),
    ):
        try:
            attempt()
            results.append("connected")
        except OSError as exc:
            results.append(str(exc))
    return "\n".join(results), ()


# --------------------------------------------------------------------------- worker


@pytest.mark.slow
def test_slow_parser_times_out_and_worker_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", slow_parser)
    started = time.monotonic()
    with pytest.raises(UnreadableFile) as info:
        parse_file("slow.pdf", b"%PDF-1.4", parse_timeout=1)
    elapsed = time.monotonic() - started
    assert assert_one_line(info.value) == "parser timed out after 1 s"
    assert elapsed < 1 + 2 + 1.5  # timeout + 2 s, plus a worker start-up
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", formats._parse_pdf)
    assert parse_file("ok.pdf", make_pdf(["after timeout"])).text == "after timeout"


@pytest.mark.slow
def test_crashing_parser_is_unreadable_and_worker_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "docx", crashing_parser)
    with pytest.raises(UnreadableFile) as info:
        parse_file("crash.docx", b"PK", use_unstructured=False)
    assert assert_one_line(info.value).startswith("parser process crashed (exit code 7")
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "docx", formats._parse_docx)
    assert parse_file("ok.docx", make_docx(), use_unstructured=False).text.startswith("# Milvus")


@pytest.mark.slow
def test_unexpected_parser_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", raising_parser)
    with pytest.raises(UnreadableFile) as info:
        parse_file("x.pdf", b"%PDF")
    assert assert_one_line(info.value) == "parser failed: KeyError: 'boom\\nsecond line'"


@pytest.mark.slow
def test_worker_has_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formats._BUILTIN_PARSERS, "pdf", network_probe_parser)
    text = parse_file("probe.pdf", b"%PDF").text
    assert text.split("\n") == ["network access is disabled in the parser worker"] * 3


@pytest.mark.slow
def test_worker_is_reused_and_cheap() -> None:
    data = make_pdf(["reuse"])
    parse_file("warm.pdf", data)
    started = time.monotonic()
    for _ in range(20):
        assert parse_file("r.pdf", data).text == "reuse"
    assert (time.monotonic() - started) / 20 < 0.25


def test_parse_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="parse_timeout"):
        parse_file("a.pdf", b"%PDF", parse_timeout=0)


def test_worker_parsers_must_be_importable() -> None:
    with pytest.raises(TypeError, match="module-level"):
        formats._run_in_worker(lambda data: ("x", ()), b"x", 5)


@pytest.mark.slow
def test_concurrent_parses_and_shutdown() -> None:
    import concurrent.futures

    pdfs = [make_pdf([f"document {i}"]) for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda d: parse_file("c.pdf", d).text, pdfs))
    assert texts == [f"document {i}" for i in range(4)]
    pids = [w.proc.pid for w in formats._workers]
    assert pids
    formats._shutdown_workers()
    assert not formats._workers
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

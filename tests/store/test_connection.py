"""`milvus_rag.store.connection`: Milvus Lite's one-process rule, missing folders, unreachable servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from milvus_rag.errors import (
    StoreLockedError,
    StoreUnavailableError,
)
from milvus_rag.settings import Settings
from milvus_rag.store import connect

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_missing_folder(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(milvus={"uri": "/no/such/dir/x.db"})
    with pytest.raises(StoreUnavailableError, match="/no/such/dir"):
        connect(s.milvus)


def test_unreachable_server(make_settings: Callable[..., Settings]) -> None:
    from tests.support.openai_server import closed_port

    # A refused connection fails at once: with an hour's timeout, waiting for it would
    # be the test runner's timeout.
    s = make_settings(milvus={"uri": f"http://127.0.0.1:{closed_port()}", "timeout": 3600})
    with pytest.raises(StoreUnavailableError, match="cannot be reached .*refused"):
        connect(s.milvus)


def test_concurrent_first_opens_of_a_lite_file(tmp_path: Path) -> None:
    """A server's upload job creates its Lite file while requests open it too: every open
    works (a second open's lock probe must not release the first one's engine lock)."""
    import threading

    from milvus_rag.settings import load_settings

    s = load_settings(overrides={"milvus": {"uri": str(tmp_path / "fresh.db")}})
    first: list[Any] = []
    opened = threading.Thread(target=lambda: first.append(connect(s.milvus)))
    opened.start()
    others = 0
    while opened.is_alive() or not others:  # open and close while the first one starts
        connect(s.milvus).close()
        others += 1
    opened.join()
    assert first and first[0].list_collections() is not None
    first[0].close()


def test_second_process_gets_a_clear_message(tmp_path: Path) -> None:
    from milvus_rag.settings import load_settings
    from tests.support.lite_server import lite_file_held

    with lite_file_held(tmp_path / "locked.db") as db:
        s = load_settings(overrides={"milvus": {"uri": str(db)}})
        with pytest.raises(StoreLockedError) as info:
            connect(s.milvus)
        message = str(info.value)
        assert str(db) in message and "another process" in message and "milvus.uri" in message
        assert "\n" not in message


def test_reason_of_a_grpc_error_is_its_code_and_details() -> None:
    import grpc

    from milvus_rag.store import reason

    class Denied(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

        def details(self) -> str:
            return "user milvus_rag has no privilege CreateCollection\nmore"

        def __str__(self) -> str:
            return "<_InactiveRpcError of RPC that terminated with:\n\tstatus = ..."

    assert (
        reason(Denied()) == "PERMISSION_DENIED: user milvus_rag has no privilege CreateCollection"
    )
    assert reason(ValueError("plain\nsecond line")) == "plain"

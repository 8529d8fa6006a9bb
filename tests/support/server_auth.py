"""What the login tests share: the key and a clock that moves when told."""

from __future__ import annotations

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")


AUTH_KEY = "k3y-for-auth-tests"


class Clock:
    """A clock the test moves (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

"""What CLI tests share."""

from __future__ import annotations

__all__ = ["one_line_error"]


def one_line_error(result: object, code: int | None = None) -> str:
    """The one ``error: ...`` line a failed command printed (no traceback), checked."""
    assert result.exit_code != 0  # type: ignore[attr-defined]
    if code is not None:
        assert result.exit_code == code  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err

"""What the Milvus-user tests share: the CLI runner, the user's token, one-line errors."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

runner = CliRunner()


USER_TOKEN = "milvus_rag:app-Passw0rd"


def _one_line(result: Any, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])

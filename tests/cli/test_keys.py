"""``milvus-rag keys``: adding, listing and revoking named keys in the keys file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from milvus_rag.cli import app

runner = CliRunner()


def test_keys_commands(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    added = runner.invoke(
        app, ["keys", "add", "alice", "--role", "writer", "--scope", "hr", "--keys-file", str(path)]
    )
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("mrag-") and key not in path.read_text()
    listed = runner.invoke(app, ["keys", "list", "--json", "--keys-file", str(path)])
    assert json.loads(listed.stdout)["keys"] == [
        {"name": "alice", "role": "writer", "scopes": ["hr"], "rate_per_minute": None}
    ]
    assert key not in listed.stdout
    again = runner.invoke(app, ["keys", "add", "alice", "--scope", "hr", "--keys-file", str(path)])
    assert again.exit_code == 2 and again.stderr.count("\n") == 1, again.output
    assert runner.invoke(app, ["keys", "revoke", "alice", "--keys-file", str(path)]).exit_code == 0
    gone = runner.invoke(app, ["keys", "revoke", "alice", "--keys-file", str(path)])
    assert gone.exit_code == 2 and "no key named alice" in gone.stderr
    nowhere = runner.invoke(app, ["keys", "list"])
    assert nowhere.exit_code == 2 and "server.keys_file" in nowhere.stderr

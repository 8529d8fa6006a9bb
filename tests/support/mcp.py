"""What the MCP tests share: the key and the question."""

from __future__ import annotations

import pytest

pytest.importorskip("mcp")


KEY = "k3y-for-mcp"


QUESTION = "Where does Milvus store data?"

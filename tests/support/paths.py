"""Where things are: the repository's root."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

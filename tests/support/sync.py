"""What the ingest tests share: a folder of documents."""

from __future__ import annotations

from pathlib import Path


def _docs(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


FILES = {
    "a.md": "# Alpha\n\nMilvus stores vectors in segments and flushes them to object storage.\n\n## Sub\n\nMore about alpha segments and indexes here.\n",
    "b.md": "# Beta\n\nZebras graze on the savanna all day, far from any database.\n",
    "c/d.md": "# Delta\n\nGuitar strings are tuned with pegs, one string at a time.\n",
}

"""`milvus_rag.loaders.folders`: listing a folder with globs, symlinks outside skipped."""

from __future__ import annotations

import os
from pathlib import Path

from milvus_rag.loaders.sources import (
    open_source,
)

from tests.support.sources import make_tree, paths

# --------------------------------------------------------------------------- folders and files


def test_folder_listing_and_globs(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs")
    with open_source(root) as listing:
        assert listing.kind == "folder"
        assert listing.origin == str(root.resolve())
        assert paths(listing) == [
            "en/faq/operational_faq.md",
            "en/faq/product_faq.md",
            "en/faq/sub/deep.md",
            "en/guide/intro.txt",
            "top.md",
            "zh/readme.md",
        ]
        first = listing.files[0]
        assert first.size == len("# Ops\n")
        assert first.origin == listing.origin
        assert first.read_bytes() == b"# Ops\n"
    with open_source(str(root), glob="en/faq/*.md") as listing:
        assert paths(listing) == ["en/faq/operational_faq.md", "en/faq/product_faq.md"]
    with open_source(root, glob="**/*.md") as listing:
        assert len(listing.files) == 5
        assert "top.md" in paths(listing)


def test_folder_skips_symlinks_outside(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.md").write_text("secret")
    os.symlink(outside / "key.md", root / "leak.md")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "top.md", root / "alias.md")
    with open_source(root) as listing:
        names = paths(listing)
    assert "leak.md" not in names
    assert not any(n.startswith("leakdir") for n in names)
    assert "alias.md" in names

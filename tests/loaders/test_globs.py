"""`milvus_rag.loaders.globs`: the glob rules."""

from __future__ import annotations

from milvus_rag.loaders.sources import (
    glob_match,
)

# --------------------------------------------------------------------------- globs and URLs


def test_glob_match_rules() -> None:
    assert glob_match("en/faq/x.md", "en/faq/*.md")
    assert not glob_match("en/faq/sub/x.md", "en/faq/*.md")
    assert glob_match("x.md", "**/*.md")
    assert glob_match("a/b/c/x.md", "**/*.md")
    assert glob_match("a/b", "a/**/b")
    assert glob_match("a/x/y/b", "a/**/b")
    assert glob_match("a/x/y", "a/**")
    assert glob_match("anything/at/all", "**")
    assert glob_match("en/faq/x.md", "./en/faq/*.md")
    assert glob_match("f1.md", "f?.md")
    assert not glob_match("a/b.md", "a?b.md")
    assert glob_match("b.md", "[abc].md")
    assert not glob_match("d.md", "[abc].md")
    assert glob_match("d.md", "[!abc].md")
    assert not glob_match("a/b", "a[/]b")
    assert glob_match("x[.md", "x[.md")
    assert not glob_match("x.MD", "*.md")

"""`milvus_rag.loaders.markdown_sections`: heading paths, fences and comments in Markdown."""

from __future__ import annotations

import pytest
from milvus_rag.loaders.splitters import (
    Chunk,
    MarkdownSplitter,
)

from tests.support.splitters import faq_doc, fences_balanced, words


def test_heading_path_in_metadata_and_text_prefix() -> None:
    text = faq_doc("Product FAQ", 3, doc_id="product_faq.md")
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 3
    for q, chunk in enumerate(chunks):
        heading = f"Product FAQ > Question {q} about Product FAQ?"
        assert chunk.metadata["heading"] == heading
        assert chunk.text.startswith(heading + "\n\nAnswer " + str(q))
        assert chunk.metadata["doc_id"] == "product_faq.md"
        assert chunk.metadata["title"] == "Product FAQ"
        assert chunk.metadata["summary"] == "Answers about Product FAQ."
        assert "<!--" not in chunk.text
        assert "####" not in chunk.text


def test_nested_heading_path_pops_levels() -> None:
    body = "Enough body text to stand alone as its own chunk, well over eighty characters long."
    text = (
        f"# A\n\n{body}\n\n## B\n\n{body}\n\n### C\n\n{body}\n\n## D\n\n{body}\n\n# E\n\n{body}\n"
    )
    headings = [c.metadata["heading"] for c in MarkdownSplitter().split(text)]
    assert headings == ["A", "A > B", "A > B > C", "A > D", "E"]


def test_hash_inside_fenced_code_is_not_a_heading() -> None:
    code = "```python\n# connect to Milvus\nclient = connect()\n# Product FAQ\n```"
    text = (
        "# Guide\n\n## Setup\n\nRun the following snippet to connect to the server "
        f"before doing anything else.\n\n{code}\n\nThen continue with the next step.\n"
    )
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert chunks[0].metadata["heading"] == "Guide > Setup"
    assert code in chunks[0].text
    assert fences_balanced(chunks[0].text)


@pytest.mark.parametrize(
    "code",
    [
        "~~~bash\n# not a heading\necho hi\n~~~",
        "````markdown\n```\n# still code\n```\n````",
        "  ```yaml\n  # indented fence in a list\n  key: value\n  ```",
    ],
)
def test_fence_variants_keep_code_whole(code: str) -> None:
    intro = "An introduction paragraph that is long enough (over eighty characters) to stand alone."
    text = f"# Doc\n\n{intro}\n\n{code}\n\n## Next\n\n{intro}\n"
    chunks = MarkdownSplitter().split(text)
    assert [c.metadata["heading"] for c in chunks] == ["Doc", "Doc > Next"]
    assert code in chunks[0].text
    assert all(fences_balanced(c.text) for c in chunks)


def test_unclosed_fence_is_closed() -> None:
    text = "# Doc\n\nSome text before the code block that never gets closed.\n\n```sh\n# x\nls\n"
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert chunks[0].metadata["heading"] == "Doc"
    assert fences_balanced(chunks[0].text)


def test_oversized_code_block_is_split_and_refenced() -> None:
    code_lines = [f"value_{i} = compute({i}, flag=True)  # line {i}" for i in range(200)]
    code = "```python title=demo\n" + "\n".join(code_lines) + "\n```"
    text = f"# Big code\n\n{code}\n"
    splitter = MarkdownSplitter(max_tokens=100, overlap=10, length_function=words)
    chunks = splitter.split(text)
    assert len(chunks) > 5
    seen: list[str] = []
    for chunk in chunks:
        assert fences_balanced(chunk.text)
        assert words(chunk.text) <= 100 + words("Big code")
        body = chunk.text.split("\n\n", 1)[1]
        lines = body.split("\n")
        assert lines[0] == "```python title=demo"
        assert lines[-1] == "```"
        seen.extend(lines[1:-1])
    assert seen == code_lines  # every line exactly once, in order


def test_heading_only_document() -> None:
    chunks = MarkdownSplitter().split("---\ntitle: T\n---\n\n# Upgrade Embedded Milvus\n")
    assert chunks == [
        Chunk(
            text="Upgrade Embedded Milvus",
            metadata={"title": "T", "heading": "Upgrade Embedded Milvus"},
        )
    ]


def test_html_comments_dropped_even_multiline() -> None:
    body = "Visible paragraph text that is long enough to be kept as its own chunk of content."
    text = (
        f"# Doc\n\n<!-- one-line -->\n\n<!--\n# Hidden heading\nhidden text\n-->\n\n{body}\n\n"
        "An unclosed <!-- marker keeps the rest of this line and what follows visible.\n"
    )
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert chunks[0].metadata["heading"] == "Doc"
    assert "Hidden" not in chunks[0].text and "hidden text" not in chunks[0].text
    assert "one-line" not in chunks[0].text
    assert body in chunks[0].text
    assert "An unclosed <!-- marker keeps" in chunks[0].text

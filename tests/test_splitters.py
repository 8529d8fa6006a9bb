"""Tests for ``milvus_rag.loaders.splitters`` (tutorial split, markdown split, byte cap)."""

from __future__ import annotations

import itertools
import re
import time
import zipfile
from pathlib import Path

import pytest
from milvus_rag.loaders.splitters import (
    MAX_TEXT_BYTES,
    Chunk,
    MarkdownSplitter,
    cap_bytes,
    estimate_tokens,
    parse_front_matter,
    split_tutorial,
)

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "milvus_docs_2.4.x_en.zip"

FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def words(text: str) -> int:
    """A simple custom length function: whitespace-separated words."""
    return len(text.split())


def fences_balanced(text: str) -> bool:
    """True if every fenced code block opened in ``text`` is closed."""
    open_fence: str | None = None
    for line in text.split("\n"):
        match = FENCE_RE.match(line)
        if not match:
            continue
        marker, rest = match.group(1), match.group(2)
        if open_fence is None:
            open_fence = marker
        elif marker[0] == open_fence[0] and len(marker) >= len(open_fence) and not rest.strip():
            open_fence = None
    return open_fence is None


def faq_doc(title: str, n_questions: int, doc_id: str = "faq.md") -> str:
    """A FAQ-like markdown file: front matter, H1, TOC comments, H4 questions."""
    parts = [
        f"---\nid: {doc_id}\nsummary: Answers about {title}.\ntitle: {title}\n---\n\n",
        f"# {title}\n\n<!-- TOC -->\n\n\n\n<!-- /TOC -->\n\n",
    ]
    for q in range(n_questions):
        parts.append(
            f"#### Question {q} about {title}?\n\n"
            f"Answer {q} explains the behaviour of component {q} in detail. "
            f"It stores data in bucket-{q} and logs every change.\n\n"
        )
    return "".join(parts)


def shared_zip() -> zipfile.ZipFile:
    if not SHARED_ZIP.is_file():
        pytest.skip(f"shared corpus not found: {SHARED_ZIP}")
    return zipfile.ZipFile(SHARED_ZIP)


# ---------------------------------------------------------------------------
# split_tutorial
# ---------------------------------------------------------------------------


def test_split_tutorial_is_exactly_str_split() -> None:
    text = faq_doc("Product FAQ", 5) + "# \n# trailing# "
    chunks = split_tutorial(text)
    assert [c.text for c in chunks] == text.split("# ")
    assert all(c.metadata == {} for c in chunks)
    assert "" in [c.text for c in chunks]  # empty pieces are kept
    assert chunks[0].text.startswith("---\nid:")  # front matter is not special here


def test_split_tutorial_generated_faq_structure_gives_72() -> None:
    # Same piece counts as the four en/faq/*.md files of the Milvus 2.4.x docs.
    # Pieces = 1 + one "# " in the H1 + one per "#### " question.
    expected = {"operational": 19, "performance": 7, "product": 33, "troubleshooting": 13}
    total = 0
    for name, pieces in expected.items():
        text = faq_doc(name.title() + " FAQ", pieces - 2, doc_id=f"{name}_faq.md")
        chunks = split_tutorial(text)
        assert len(chunks) == pieces
        total += len(chunks)
    assert total == 72


@pytest.mark.shared
def test_split_tutorial_shared_faq_gives_72() -> None:
    with shared_zip() as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("en/faq/") and n.endswith(".md"))
        assert len(names) == 4
        total = sum(len(split_tutorial(zf.read(n).decode("utf-8"))) for n in names)
    assert total == 72


# ---------------------------------------------------------------------------
# parse_front_matter
# ---------------------------------------------------------------------------


def test_parse_front_matter_basic() -> None:
    text = "---\nid: a.md\ntitle: A\nsummary: S\norder: 3\ndeprecate: true\ntags: [x, y]\n---\n\n# A\nbody\n"
    meta, body = parse_front_matter(text)
    assert meta == {
        "doc_id": "a.md",
        "title": "A",
        "summary": "S",
        "order": "3",
        "deprecate": "true",
        "tags": ["x", "y"],
    }
    assert body == "\n# A\nbody\n"


@pytest.mark.parametrize(
    "text",
    [
        "# No front matter\n",
        "---\nid: [unclosed\n---\nbody\n",  # invalid YAML
        "---\njust a string\n---\nbody\n",  # not a mapping
        "---\nid: x\nno closing line\n",
        "text\n---\nid: x\n---\n",  # not leading
    ],
)
def test_parse_front_matter_absent_or_invalid(text: str) -> None:
    assert parse_front_matter(text) == ({}, text)


def test_parse_front_matter_empty_block() -> None:
    assert parse_front_matter("---\n---\nbody") == ({}, "body")


# ---------------------------------------------------------------------------
# MarkdownSplitter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n"])
def test_blank_input_gives_no_chunks(text: str) -> None:
    assert MarkdownSplitter().split(text) == []


def test_front_matter_only_gives_no_chunks() -> None:
    assert MarkdownSplitter().split("---\nid: x.md\ntitle: X\n---\n\n") == []


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


def test_front_matter_never_a_chunk() -> None:
    text = "---\nid: doc.md\ntitle: Doc\n---\n\n" + "Plain paragraph with some words. " * 5
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert not chunks[0].text.startswith("---")
    assert "id: doc.md" not in chunks[0].text
    assert chunks[0].metadata == {"doc_id": "doc.md", "title": "Doc", "heading": ""}


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


def test_code_block_never_cut_when_it_fits() -> None:
    code_lines = [f"print({i})  # step {i}" for i in range(30)]
    code = "```python\n" + "\n".join(code_lines) + "\n```"
    prose = " ".join(f"Sentence number {i} describes the code." for i in range(20))
    text = f"# Doc\n\n{prose}\n\n{code}\n\n{prose}\n"
    splitter = MarkdownSplitter(max_tokens=200, overlap=10, length_function=words)
    chunks = splitter.split(text)
    assert len(chunks) > 1
    assert sum(code in c.text for c in chunks) == 1
    assert all(fences_balanced(c.text) for c in chunks)


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


def test_no_chunk_over_max_tokens_with_custom_length_function() -> None:
    paragraphs = [
        " ".join(f"word{p}_{w}." if w % 9 == 8 else f"word{p}_{w}" for w in range(60))
        for p in range(40)
    ]
    one_huge_line = " ".join(f"tok{i}" for i in range(500))
    text = (
        "# Title\n\n## Long section\n\n"
        + "\n\n".join(paragraphs)
        + "\n\n## Huge line\n\n"
        + one_huge_line
        + "\n"
    )
    max_tokens = 50
    slack = words("Title > Long section")
    chunks = MarkdownSplitter(max_tokens=max_tokens, overlap=8, length_function=words).split(text)
    assert len(chunks) > 40
    for chunk in chunks:
        assert words(chunk.text) <= max_tokens + slack
    # Nothing is lost: every word of the input appears in some chunk.
    all_text = " ".join(c.text for c in chunks).split()
    for token in [*paragraphs[0].split(), *paragraphs[-1].split(), "tok0", "tok499"]:
        assert token in all_text


def test_default_length_function_respects_max_tokens() -> None:
    prose = "\n\n".join(
        " ".join(f"The component {p}-{s} stores vectors in segment {s}." for s in range(8))
        for p in range(30)
    )
    chunks = MarkdownSplitter(max_tokens=64, overlap=8).split(f"# Doc\n\n{prose}\n")
    assert len(chunks) > 10
    assert max(estimate_tokens(c.text) for c in chunks) <= 64


def test_overlap_between_consecutive_pieces_of_long_section() -> None:
    sentences = [f"Fact number {i} is stated here." for i in range(60)]
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, 60, 5)]
    text = "# Doc\n\n## Long\n\n" + "\n\n".join(paragraphs) + "\n"
    chunks = MarkdownSplitter(max_tokens=40, overlap=12, length_function=words).split(text)
    assert len(chunks) > 3
    assert {c.metadata["heading"] for c in chunks} == {"Doc > Long"}
    prefix = "Doc > Long\n\n"
    for prev, nxt in itertools.pairwise(chunks):
        prev_facts = set(re.findall(r"Fact number \d+", prev.text))
        next_body = nxt.text.removeprefix(prefix)
        first = re.match(r"Fact number \d+", next_body)
        assert first is not None
        assert first.group(0) in prev_facts  # the next piece starts with carried text
        carried = [f for f in re.findall(r"Fact number \d+", next_body) if f in prev_facts]
        assert 1 <= words(" ".join(s + " is stated here." for s in carried)) <= 12


def test_no_overlap_when_zero() -> None:
    sentences = [f"Fact number {i} is stated here." for i in range(60)]
    text = "# Doc\n\n" + "\n\n".join(sentences) + "\n"
    chunks = MarkdownSplitter(max_tokens=40, overlap=0, length_function=words).split(text)
    facts = [f for c in chunks for f in re.findall(r"Fact number \d+", c.text)]
    assert facts == [f"Fact number {i}" for i in range(60)]


def test_short_sections_keep_their_own_heading() -> None:
    body = "This section has a body that is comfortably longer than the eighty char minimum."
    text = (
        "# Manual\n\n<!-- TOC -->\n\n<!-- /TOC -->\n\n"
        "## Empty heading\n\n"
        "## Short\n\nTiny note.\n\n"
        f"## Real\n\n{body}\n\n"
        f"## Other\n\n{body}\n\n"
        "## Last tiny\n\nBye.\n"
    )
    chunks = MarkdownSplitter().split(text)
    assert [c.text for c in chunks] == [
        "Manual > Short\n\nTiny note.",
        f"Manual > Real\n\n{body}",
        f"Manual > Other\n\n{body}",
        "Manual > Last tiny\n\nBye.",
    ]
    assert [c.metadata["heading"] for c in chunks] == [
        "Manual > Short",
        "Manual > Real",
        "Manual > Other",
        "Manual > Last tiny",
    ]


def test_faq_short_answers_stay_under_their_own_question() -> None:
    """The regression: a short answer was merged under the previous question's heading."""
    faq = [
        (
            "Is Milvus scalable?",
            "Yes. You can deploy Milvus clusters with multiple nodes "
            "through Helm Chart on Kubernetes. Refer to the Scaling Guide for more.",
        ),
        ("Does Milvus support Apple M1 CPU?", "No, Milvus does not support Apple M1 CPU."),
        ("Does Milvus support inserting and searching data simultaneously?", "Yes."),
        (
            "Why is there no vector data in etcd?",
            "etcd stores Milvus module metadata; MinIO stores entities.",
        ),
        (
            "What data types does Milvus support on the primary key field?",
            "Milvus supports "
            "both INT64 and VARCHAR data types on the primary key field in the current release.",
        ),
    ]
    text = "---\nid: product_faq.md\n---\n\n# Product FAQ\n\n<!-- TOC -->\n\n" + "".join(
        f"#### {q}\n\n{a}\n\n" for q, a in faq
    )
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == len(faq)
    for chunk, (question, answer) in zip(chunks, faq, strict=True):
        assert chunk.metadata["heading"] == f"Product FAQ > {question}"
        assert chunk.text == f"Product FAQ > {question}\n\n{answer}"
        assert chunk.text.count("?") == question.count("?")  # no other question inside


def test_tiny_parent_body_merges_into_child() -> None:
    body = "The child section body is long enough (well over eighty characters) to be a chunk."
    text = f"# Parent\n\nIntro.\n\n## Child\n\n{body}\n"
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert chunks[0].metadata["heading"] == "Parent > Child"
    assert chunks[0].text == f"Parent > Child\n\nIntro.\n\n{body}"


def test_short_parent_intro_goes_with_its_short_child() -> None:
    chunks = MarkdownSplitter().split("# Title\n\nShort.\n\n## Sub\n\nAlso short.\n")
    assert chunks == [
        Chunk(text="Title > Sub\n\nShort.\n\nAlso short.", metadata={"heading": "Title > Sub"})
    ]


def test_short_sibling_is_not_carried_into_a_cousin() -> None:
    body = "A body long enough to stand as its own chunk, well over the eighty characters."
    text = f"# A\n\nIntro.\n\n## A1\n\nShort.\n\n# B\n\n{body}\n"
    chunks = MarkdownSplitter().split(text)
    assert [c.metadata["heading"] for c in chunks] == ["A > A1", "B"]
    assert chunks[0].text == "A > A1\n\nIntro.\n\nShort."


def test_heading_only_document() -> None:
    chunks = MarkdownSplitter().split("---\ntitle: T\n---\n\n# Upgrade Embedded Milvus\n")
    assert chunks == [
        Chunk(
            text="Upgrade Embedded Milvus",
            metadata={"title": "T", "heading": "Upgrade Embedded Milvus"},
        )
    ]


def test_plain_text_without_headings_splits_by_size() -> None:
    paragraphs = [
        " ".join(f"Page text {p} line {s} from a PDF export." for s in range(6)) for p in range(20)
    ]
    text = "\n\n".join(paragraphs)
    chunks = MarkdownSplitter(max_tokens=60, overlap=0, length_function=words).split(text)
    assert len(chunks) > 5
    assert all(c.metadata == {"heading": ""} for c in chunks)
    assert all(words(c.text) <= 60 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_short_plain_text_is_one_chunk() -> None:
    assert MarkdownSplitter().split("Hello world.") == [
        Chunk(text="Hello world.", metadata={"heading": ""})
    ]


def test_deterministic() -> None:
    text = faq_doc("Determinism", 20) + "\n\n" + "word " * 2000
    splitter = MarkdownSplitter(max_tokens=64, overlap=16)
    assert splitter.split(text) == splitter.split(text)


@pytest.mark.parametrize("char", ["é", "漢", "😀"])
def test_multibyte_text_never_exceeds_byte_limit(char: str) -> None:
    text = char * 30000 + "中文字符" * 5000 + "🎉" * 3000
    chunks = MarkdownSplitter(max_tokens=10**9, overlap=0).split(text)
    assert len(chunks) > 1
    for chunk in chunks:
        encoded = chunk.text.encode("utf-8")
        assert len(encoded) <= MAX_TEXT_BYTES
        assert len(encoded) <= 60000  # the splitter's default max_bytes
        encoded.decode("utf-8")  # no broken character
    assert "".join(c.text for c in chunks) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10, "overlap": 10}, "overlap"),
        ({"overlap": -1}, "overlap"),
        ({"min_chars": -1}, "min_chars"),
        ({"max_bytes": 2}, "max_bytes"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MarkdownSplitter(**kwargs)


# ---------------------------------------------------------------------------
# cap_bytes
# ---------------------------------------------------------------------------


def test_cap_bytes_leaves_small_chunks_untouched() -> None:
    chunks = [Chunk("a", {"i": 1}), Chunk("b" * 100, {"i": 2})]
    out = cap_bytes(chunks, max_bytes=100)
    assert len(out) == 2
    assert out[0] is chunks[0] and out[1] is chunks[1]


def test_cap_bytes_splits_only_oversized_chunk_and_keeps_order() -> None:
    big = Chunk("x" * 250, {"heading": "H"})
    chunks = [Chunk("first", {}), big, Chunk("last", {})]
    out = cap_bytes(chunks, max_bytes=100)
    assert out[0] is chunks[0] and out[-1] is chunks[2]
    middle = out[1:-1]
    assert [len(c.text) for c in middle] == [100, 100, 50]
    assert "".join(c.text for c in middle) == big.text
    assert all(c.metadata == {"heading": "H"} for c in middle)


def test_cap_bytes_prefers_newline_then_space() -> None:
    text = "a" * 60 + "\n" + "b" * 20 + " " + "c" * 60
    out = cap_bytes([Chunk(text, {})], max_bytes=100)
    assert out[0].text == "a" * 60 + "\n"
    assert "".join(c.text for c in out) == text
    spaced = "a" * 60 + " " + "b" * 60
    out = cap_bytes([Chunk(spaced, {})], max_bytes=100)
    assert out[0].text == "a" * 60 + " "


@pytest.mark.parametrize("char", ["é", "漢", "😀"])
def test_cap_bytes_never_breaks_multibyte_characters(char: str) -> None:
    text = ("ab" + char) * 1000
    out = cap_bytes([Chunk(text, {})], max_bytes=101)
    assert len(out) > 1
    for chunk in out:
        assert 0 < len(chunk.text.encode("utf-8")) <= 101
    assert "".join(c.text for c in out) == text


def test_cap_bytes_default_is_milvus_limit() -> None:
    text = "é" * 40000  # 80,000 bytes
    out = cap_bytes([Chunk(text, {})])
    assert [len(c.text.encode()) for c in out] == [65534, 80000 - 65534]


def test_cap_bytes_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError):
        cap_bytes([Chunk("abc", {})], max_bytes=3)


# ---------------------------------------------------------------------------
# Real corpus (skipped when ../shared is absent)
# ---------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.shared
def test_shared_corpus_markdown_split() -> None:
    with shared_zip() as zf:
        docs = {
            name: zf.read(name).decode("utf-8") for name in zf.namelist() if name.endswith(".md")
        }
    splitter = MarkdownSplitter()
    results = {name: splitter.split(text) for name, text in docs.items()}

    all_chunks = [c for chunks in results.values() for c in chunks]
    assert len(all_chunks) > len(docs)
    for chunk in all_chunks:
        assert chunk.text.strip()
        assert not chunk.text.startswith("---")
        assert fences_balanced(chunk.text)
        assert len(chunk.text.encode("utf-8")) <= 60000
        assert estimate_tokens(chunk.text) <= 256 + estimate_tokens(chunk.metadata["heading"])

    product = results["en/faq/product_faq.md"]
    store = [c for c in product if "Where does Milvus store data?" in c.text]
    assert store  # the answer may span more than one chunk, each with the same heading
    for chunk in store:
        assert chunk.metadata["heading"] == "Product FAQ > Where does Milvus store data?"
        assert chunk.text.startswith("Product FAQ > Where does Milvus store data?\n\n")
        assert chunk.metadata["doc_id"] == "product_faq.md"
        assert chunk.metadata["title"] == "Product FAQ"
    assert store[0].text.startswith(
        "Product FAQ > Where does Milvus store data?\n\nMilvus deals with two types of data"
    )
    assert all("<!-- TOC -->" not in c.text for c in product)


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


def test_pathological_inputs_are_fast() -> None:
    splitter = MarkdownSplitter(overlap=0)
    start = time.perf_counter()
    for text in ("a" * 300_000, "中文" * 100_000, "word " * 100_000):
        chunks = splitter.split(text)
        assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert (
        time.perf_counter() - start < 60.0
    )  # a guard against quadratic blow-up, not a speed target

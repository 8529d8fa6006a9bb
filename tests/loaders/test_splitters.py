"""`milvus_rag.loaders.splitters`: the tutorial split and the Markdown splitter's chunks."""

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
    estimate_tokens,
    split_tutorial,
)

from tests.support.splitters import faq_doc, fences_balanced, words

SHARED_ZIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "milvus_docs_2.4.x_en.zip"


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
# MarkdownSplitter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n"])
def test_blank_input_gives_no_chunks(text: str) -> None:
    assert MarkdownSplitter().split(text) == []


def test_front_matter_only_gives_no_chunks() -> None:
    assert MarkdownSplitter().split("---\nid: x.md\ntitle: X\n---\n\n") == []


def test_front_matter_never_a_chunk() -> None:
    text = "---\nid: doc.md\ntitle: Doc\n---\n\n" + "Plain paragraph with some words. " * 5
    chunks = MarkdownSplitter().split(text)
    assert len(chunks) == 1
    assert not chunks[0].text.startswith("---")
    assert "id: doc.md" not in chunks[0].text
    assert chunks[0].metadata == {"doc_id": "doc.md", "title": "Doc", "heading": ""}


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


def test_pathological_inputs_are_fast() -> None:
    splitter = MarkdownSplitter(overlap=0)
    start = time.perf_counter()
    for text in ("a" * 300_000, "中文" * 100_000, "word " * 100_000):
        chunks = splitter.split(text)
        assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert (
        time.perf_counter() - start < 60.0
    )  # a guard against quadratic blow-up, not a speed target

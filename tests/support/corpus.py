"""Generated documents for tests: a copy of the tutorial FAQ's structure."""

from __future__ import annotations

import zipfile
from pathlib import Path

# Pieces per file when split on "# " in the real en/faq/*.md (19 + 7 + 33 + 13 = 72).
FAQ_PIECES = {
    "operational_faq.md": 19,
    "performance_faq.md": 7,
    "product_faq.md": 33,
    "troubleshooting.md": 13,
}

STORAGE_ANSWER = (
    "Milvus deals with two types of data, inserted data and metadata. Inserted data, "
    "including vector data, scalar data, and collection-specific schema, are stored in "
    "persistent storage as incremental log. Milvus supports multiple object storage "
    "backends, including MinIO, AWS S3, Google Cloud Storage, Azure Blob Storage, Alibaba "
    "Cloud OSS, and Tencent Cloud Object Storage. Metadata are generated within Milvus and "
    "stored in etcd."
)

_TOPICS = [
    "zebra savanna grazing",
    "guitar strings tuning",
    "bread baking oven",
    "mountain hiking trail",
    "ocean tide moon",
    "coffee beans roasting",
    "chess opening gambit",
    "garden tomato soil",
]


def faq_file(name: str, pieces: int) -> str:
    """A markdown file that splits on "# " into exactly ``pieces`` pieces."""
    title = name.removesuffix(".md").replace("_", " ").title()
    lines = [
        f"---\nid: {name}\nsummary: Questions about {title}.\ntitle: {title}\n---\n",
        f"# {title}\n\n",
    ]
    for i in range(pieces - 2):
        if name == "product_faq.md" and i == 0:
            lines.append(f"#### Where does Milvus store data?\n\n{STORAGE_ANSWER}\n\n")
            continue
        topic = _TOPICS[i % len(_TOPICS)]
        lines.append(
            f"#### Question {i} about {topic}?\n\nThe answer talks about {topic} number {i}.\n\n"
        )
    return "".join(lines)


def write_faq_folder(root: Path) -> Path:
    """``root/en/faq/*.md`` plus an unrelated file; returns ``root``."""
    faq = root / "en" / "faq"
    faq.mkdir(parents=True, exist_ok=True)
    for name, pieces in FAQ_PIECES.items():
        (faq / name).write_text(faq_file(name, pieces), encoding="utf-8")
    other = root / "en" / "userGuide"
    other.mkdir(parents=True, exist_ok=True)
    (other / "guide.md").write_text("# Guide\n\nUnrelated guide text about zebra stripes.\n")
    return root


def write_faq_zip(path: Path) -> Path:
    """The same tree as :func:`write_faq_folder`, as a zip archive."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, pieces in FAQ_PIECES.items():
            archive.writestr(f"en/faq/{name}", faq_file(name, pieces))
        archive.writestr(
            "en/userGuide/guide.md", "# Guide\n\nUnrelated guide text about zebra stripes.\n"
        )
    return path


#: A few passages for chain and server tests: the FAQ answer about storage and distractors.
CHAIN_DOCS = [
    ("Where does Milvus store data? " + STORAGE_ANSWER, "en/faq/product_faq.md"),
    ("Zebras graze on the savanna grass all day long.", "en/animals/zebra.md"),
    ("Guitar strings are tuned with pegs at the head of the guitar.", "en/music/guitar.md"),
    ("Bread is baked in a hot oven until the crust is brown.", "en/food/bread.md"),
]


def store_chain_docs(settings: object) -> None:
    """Write :data:`CHAIN_DOCS` into the collection ``settings`` describes (created if needed)."""
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.store import open_vector_store

    store = open_vector_store(settings, embeddings_from_settings(settings), create=True)  # type: ignore[arg-type]
    store.add_texts(
        [text for text, _ in CHAIN_DOCS],
        metadatas=[{"source": source} for _, source in CHAIN_DOCS],
        ids=[f"id{i}" for i in range(len(CHAIN_DOCS))],
    )
    store.client.close()

"""``python -m milvus_rag.cli``."""

from milvus_rag.cli import main

main()

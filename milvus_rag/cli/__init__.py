"""The milvus-rag command line."""


def main() -> None:
    """Entry point."""

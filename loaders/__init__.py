"""Loaders: sources, format parsers and splitters. Knows nothing of Milvus or settings."""

"""Tests that span the system rather than one module: the CLI and the server fuzzed, kill
rounds, Milvus deployments and engines, deployment files, the package surface and its lock,
start-up, retrieval quality, a real browser, and the test-support fixtures themselves."""

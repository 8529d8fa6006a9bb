# milvus-rag's HTTP server: `milvus-rag serve` on port 8000, as a non-root user.
#
#   docker build -t milvus-rag .
#   docker run -p 127.0.0.1:8000:8000 -v "$PWD/models:/models:ro" \
#     -e MILVUS_RAG_MILVUS__URI=http://milvus:19530 -e MILVUS_RAG_MILVUS__TOKEN=milvus_rag:... \
#     -e MILVUS_RAG_SERVER__API_KEY=... -e NVIDIA_API_KEY=... milvus-rag
#
# Any other command runs too: `docker run ... milvus-rag ingest /docs`, and
# `milvus-rag create-user` (with MILVUS_ADMIN_TOKEN=root:...) makes the Milvus user milvus_rag
# once. compose.yaml runs it next to a Milvus standalone (README.md, "Deploy").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Every dependency pinned with its hashes (requirements.lock, written by scripts/lock for
# the extras below): two builds a month apart install the same packages.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
# Then the project itself, without resolving anything (the build backend is in the lock).
COPY pyproject.toml README.md ./
COPY milvus_rag ./milvus_rag
COPY chains ./chains
COPY loaders ./loaders
RUN pip install --no-deps --no-build-isolation ".[server,otel]" && pip check \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin milvus-rag

# The embedding model is mounted, not baked in: a folder holding model.onnx and its
# tokenizer under /models (keep its folder name: the collection records it).
VOLUME ["/models"]
ENV MILVUS_RAG_EMBEDDING__MODEL_DIR=/models/all-MiniLM-L6-v2-onnx \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER milvus-rag
# ./config.yaml is read from here when mounted; MILVUS_RAG_* variables override it.
WORKDIR /home/milvus-rag
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["milvus-rag"]
CMD ["serve", "--host", "0.0.0.0"]

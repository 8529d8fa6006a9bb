# milvus-rag's HTTP server: `milvus-rag serve` on port 8000, as a non-root user.
#
#   docker build -t milvus-rag .
#   docker run -p 127.0.0.1:8000:8000 \
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
RUN pip install --no-deps --no-build-isolation ".[server,otel,mcp]" && pip check \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin milvus-rag

# The embedding model, fetched at build time into the image by `milvus-rag model download`
# (the hub client: --build-arg HF_ENDPOINT=... for a mirror; keep the folder's name once a
# collection is built with it: the collection records it). Without a connection at build
# time, mount a folder made elsewhere by the same command and point
# MILVUS_RAG_EMBEDDING__MODEL_DIR at it (README.md, "Deploy").
ARG EMBEDDING_MODEL=sentence-transformers/all-MiniLM-L6-v2
ARG EMBEDDING_FOLDER=all-MiniLM-L6-v2-onnx
ARG HF_ENDPOINT=https://huggingface.co
RUN HF_ENDPOINT="$HF_ENDPOINT" HF_HOME=/tmp/hf \
    milvus-rag model download "/opt/milvus-rag/models/$EMBEDDING_FOLDER" --model "$EMBEDDING_MODEL" \
    && rm -rf /tmp/hf
ENV MILVUS_RAG_EMBEDDING__MODEL_DIR=/opt/milvus-rag/models/${EMBEDDING_FOLDER} \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER milvus-rag
# ./config.yaml is read from here when mounted; MILVUS_RAG_* variables override it.
WORKDIR /home/milvus-rag
EXPOSE 8000
# Healthy: ready to answer (Milvus reachable, the collection there and not empty); /health
# is liveness only. `docker stop` (SIGTERM) lets in-flight requests finish, then exits 0.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
ENTRYPOINT ["milvus-rag"]
CMD ["serve", "--host", "0.0.0.0"]

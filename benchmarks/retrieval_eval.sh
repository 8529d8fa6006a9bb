#!/usr/bin/env bash
# Retrieval quality and latency on the whole Milvus docs: the tutorial's pipeline
# (split on "# ", dense) against milvus-rag's default (markdown splitter; dense and hybrid),
# measured by the same `milvus-rag eval` on the same questions.
# A held-out set (../shared/eval/dev_questions.jsonl, never used to tune anything) runs too
# when present.
# Usage: benchmarks/retrieval_eval.sh MODEL_DIR [ZIP] [QUESTIONS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:?usage: $0 MODEL_DIR [ZIP] [QUESTIONS]}"
zip="${2:-$here/../shared/data/milvus_docs_2.4.x_en.zip}"
questions="${3:-$here/eval/questions.jsonl}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MILVUS_RAG_EMBEDDING__MODEL_DIR="$model" MILVUS_RAG_MILVUS__URI="$work/eval.db"

MILVUS_RAG_MILVUS__COLLECTION=tutorial milvus-rag ingest "$zip" --splitter tutorial --recreate >/dev/null
MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag ingest "$zip" --mode hybrid --recreate >/dev/null

heldout="$here/../shared/eval/dev_questions.jsonl"
sets=("$questions")
[ -f "$heldout" ] && sets+=("$heldout")
for set in "${sets[@]}"; do
  echo "== $set"
  echo "tutorial pipeline (split on '# ', dense):"
  MILVUS_RAG_MILVUS__COLLECTION=tutorial milvus-rag eval "$set" --mode dense | tail -n 1
  for mode in dense hybrid; do
    echo "milvus-rag (markdown splitter, $mode):"
    MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag eval "$set" --mode "$mode" | tail -n 1
  done
done

#!/usr/bin/env bash
# Retrieval quality and latency on the whole Milvus docs: the tutorial's pipeline
# (split on "# ", dense) against milvus-rag's modes (markdown splitter with views;
# dense = the default, hybrid with z-score fusion, hybrid with Milvus's RRF ranker),
# measured by the same `milvus-rag eval` on the same questions.
# Sets: eval/questions.jsonl (file-level) and eval/faq_paraphrases.jsonl (passage-level),
# both used for tuning; ../shared/eval/dev_questions.jsonl (never used to tune
# anything) when present.
# Usage: benchmarks/retrieval_eval.sh MODEL_DIR [ZIP]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:?usage: $0 MODEL_DIR [ZIP]}"
zip="${2:-$here/../shared/data/milvus_docs_2.4.x_en.zip}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MILVUS_RAG_EMBEDDING__MODEL_DIR="$model" MILVUS_RAG_MILVUS__URI="$work/eval.db"

MILVUS_RAG_MILVUS__COLLECTION=tutorial milvus-rag ingest "$zip" --splitter tutorial --recreate >/dev/null
MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag ingest "$zip" --mode hybrid --recreate >/dev/null

sets=("$here/eval/questions.jsonl" "$here/eval/faq_paraphrases.jsonl")
heldout="$here/../shared/eval/dev_questions.jsonl"
[ -f "$heldout" ] && sets+=("$heldout")
for set in "${sets[@]}"; do
  echo "== $set"
  echo "tutorial pipeline (split on '# ', dense):"
  MILVUS_RAG_MILVUS__COLLECTION=tutorial MILVUS_RAG_RETRIEVAL__DIVERSE=false \
    milvus-rag eval "$set" --mode dense | tail -n 1
  echo "milvus-rag default (dense):"
  MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag eval "$set" --mode dense | tail -n 1
  for fusion in zscore rrf; do
    echo "milvus-rag hybrid ($fusion):"
    MILVUS_RAG_MILVUS__COLLECTION=markdown MILVUS_RAG_RETRIEVAL__FUSION=$fusion \
      milvus-rag eval "$set" --mode hybrid | tail -n 1
  done
done

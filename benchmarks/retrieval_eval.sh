#!/usr/bin/env bash
# Retrieval quality and latency on the whole Milvus docs: the tutorial's pipeline
# (split on "# ", dense) against milvus-rag's modes (markdown splitter with views;
# hybrid with z-score fusion = the default, dense, hybrid with reciprocal rank fusion),
# measured by the same `milvus-rag eval` on the same questions, in the installed
# Milvus Lite engine (printed first).
# Sets: eval/questions.jsonl (file-level) and eval/faq_paraphrases.jsonl (passage-level),
# both used for tuning; ../shared/eval/dev_questions.jsonl (never used to tune
# anything) when present.
# Each line gives hit@3, MRR@3, the retrieval p50 (query embedding + search, on the
# flushed collection) and the p50 of embedding the question alone, timed in the same run
# after each retrieval, and their ratio (targets for the default mode: <= 10 ms, <= 2x).
# Usage: benchmarks/retrieval_eval.sh MODEL_DIR [ZIP]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:?usage: $0 MODEL_DIR [ZIP]}"
zip="${2:-$here/../shared/data/milvus_docs_2.4.x_en.zip}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MILVUS_RAG_EMBEDDING__MODEL_DIR="$model" MILVUS_RAG_MILVUS__URI="$work/eval.db"

python - <<'PY'
import importlib.metadata as m, os
print("engine:", *(f"{p} {m.version(p)}" for p in ("milvus-lite", "pymilvus", "langchain-milvus")))
print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
PY
MILVUS_RAG_MILVUS__COLLECTION=tutorial milvus-rag ingest "$zip" --splitter tutorial --mode dense --recreate >/dev/null
MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag ingest "$zip" --recreate >/dev/null  # the default: hybrid

line() {  # label, then the eval command's --json on stdin
  python -c '
import json, sys
r = json.load(sys.stdin)
hit, mrr, p50 = r["hit_at_k"], r["mrr_at_k"], r["p50_ms"]
e = r.get("embed_p50_ms") or float("nan")
print(f"{sys.argv[1]:<40} hit@3 {hit:.3f}  MRR@3 {mrr:.3f}  retrieval p50 {p50:5.1f} ms  "
      f"embedding p50 {e:4.1f} ms  ratio {p50 / e:.2f}x")
' "$1"
}

sets=("$here/eval/questions.jsonl" "$here/eval/faq_paraphrases.jsonl")
heldout="$here/../shared/eval/dev_questions.jsonl"
[ -f "$heldout" ] && sets+=("$heldout")
for set in "${sets[@]}"; do
  echo "== $set"
  MILVUS_RAG_MILVUS__COLLECTION=tutorial MILVUS_RAG_RETRIEVAL__DIVERSE=false \
    milvus-rag eval "$set" --mode dense --json | line "tutorial pipeline (split on '# ', dense)"
  MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag eval "$set" --json \
    | line "milvus-rag default (hybrid, zscore)"
  MILVUS_RAG_MILVUS__COLLECTION=markdown milvus-rag eval "$set" --mode dense --json \
    | line "milvus-rag dense"
  MILVUS_RAG_MILVUS__COLLECTION=markdown MILVUS_RAG_RETRIEVAL__FUSION=rrf \
    milvus-rag eval "$set" --mode hybrid --json | line "milvus-rag hybrid (rrf)"
done

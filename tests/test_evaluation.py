"""`milvus_rag.evaluation`: hit@k, MRR and recall on a tiny set; the shipped questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from milvus_rag.evaluation import evaluate, load_questions
from milvus_rag.settings import Settings
from tests.support.retrieval import _retriever

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_eval_on_tiny_set(hybrid_settings: Settings, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    lines = [
        {"question": "how to repair a car engine", "sources": ["guide/cars.md"]},
        {"question": "zebras graze on grass", "sources": ["faq/zebra.md", "faq/bread.md"]},
        {"question": "qzx7_maxsize", "sources": ["nowhere.md"]},
    ]
    questions.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    report = evaluate(load_questions(questions), _retriever(hybrid_settings, k=1), k=1)
    assert report.hit_at_k == pytest.approx(2 / 3)
    assert report.mrr_at_k == pytest.approx(2 / 3)
    assert report.recall_at_k == pytest.approx((1 + 0.5 + 0) / 3)
    assert [m.question for m in report.misses] == ["qzx7_maxsize"]
    assert report.p95_ms >= report.p50_ms > 0


def test_eval_questions_shipped() -> None:
    path = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"
    items = load_questions(path)
    assert len(items) >= 60
    areas = {json.loads(line)["area"] for line in path.read_text().splitlines() if line.strip()}
    assert {"faq", "userGuide", "adminGuide", "reference"} <= areas

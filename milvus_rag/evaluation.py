"""Retrieval evaluation over a questions file.

Each line of the file is ``{"question": "...", "sources": ["en/faq/x.md", ...]}``.
A retrieved chunk is a hit when its ``source`` is one of the listed sources. A line
may also give ``"answer"``: a passage of the answer; then a hit must also contain
it (a passage-level hit: the right section, not only the right file).

Metrics over the top ``k``: hit@k (a hit anywhere), MRR@k (1 / rank of the first
hit, 0 without one), recall@k (share of the listed sources found), and the
latency of each retrieval (query embedding + search), p50 and p95, and the p50 of
embedding the question alone, timed in the same run.

Example:
    .. code-block:: python

        from milvus_rag import MilvusRAGRetriever, load_settings
        from milvus_rag.evaluation import evaluate, load_questions

        settings = load_settings()
        report = evaluate(load_questions("eval/questions.jsonl"),
                          MilvusRAGRetriever.from_settings(settings), k=3)
        print(report.hit_at_k, report.mrr_at_k)
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.retrievers import BaseRetriever

from milvus_rag.errors import ConfigError
from milvus_rag.settings import RetrievalSettings
from milvus_rag.store import SOURCE_FIELD

__all__ = ["EvalQuestion", "EvalReport", "QuestionResult", "evaluate", "load_questions"]


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    sources: tuple[str, ...]
    answer: str | None = None
    """A passage a hit must contain (``None``: any chunk of a listed source is a hit)."""

    def is_hit(self, source: Any, text: str) -> bool:
        """True when a chunk of ``source`` with ``text`` answers this question."""
        return source in self.sources and (self.answer is None or self.answer in text)


@dataclass
class QuestionResult:
    question: str
    sources: list[str]
    retrieved: list[dict[str, Any]]
    first_hit_rank: int | None
    recall: float
    milliseconds: float


@dataclass
class EvalReport:
    k: int
    mode: str
    questions: int
    hit_at_k: float
    mrr_at_k: float
    recall_at_k: float
    p50_ms: float
    p95_ms: float
    results: list[QuestionResult] = field(default_factory=list)
    embed_p50_ms: float | None = None
    """p50 of embedding the question alone, timed after each retrieval in the same
    run (``None`` when the retriever has no embedding model to time)."""

    @property
    def misses(self) -> list[QuestionResult]:
        return [r for r in self.results if r.first_hit_rank is None]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.questions} questions, k={self.k}, mode={self.mode}: "
            f"hit@{self.k} {self.hit_at_k:.3f}, MRR@{self.k} {self.mrr_at_k:.3f}, "
            f"recall@{self.k} {self.recall_at_k:.3f}; retrieval p50 {self.p50_ms:.1f} ms, "
            f"p95 {self.p95_ms:.1f} ms"
            + (
                f"; query embedding p50 {self.embed_p50_ms:.1f} ms "
                f"(retrieval {self.p50_ms / self.embed_p50_ms:.2f}x)"
                if self.embed_p50_ms
                else ""
            )
        )


def load_questions(path: str | Path) -> list[EvalQuestion]:
    """Read a JSONL questions file (UTF-8, a BOM allowed).

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, holds a line that is
            not a question record, or holds no question; the message names the
            file and the line (and the byte offset of undecodable bytes).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"questions file {path} cannot be read: {exc.strerror}") from exc
    questions = []
    offset = 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        start, offset = offset, offset + len(line) + 1
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"questions file {path} line {number}: not UTF-8 (byte {start + exc.start} "
                f"is 0x{line[exc.start]:02x}); save the file as UTF-8"
            ) from None
        if not text.strip():
            continue
        try:
            item = json.loads(text)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            question = item["question"]
            sources = item["sources"]
            if not isinstance(question, str) or not question.strip():
                raise ValueError("question must be a non-empty string")
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise ValueError("sources must be a list of paths")
            answer = item.get("answer")
            if answer is not None and (not isinstance(answer, str) or not answer.strip()):
                raise ValueError("answer must be a non-empty string")
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"questions file {path} line {number}: not valid JSON ({exc.msg} at column "
                f"{exc.colno})"
            ) from None
        except RecursionError:
            raise ConfigError(
                f"questions file {path} line {number}: nested too deeply to be a question record"
            ) from None
        except KeyError as exc:
            raise ConfigError(
                f"questions file {path} line {number}: not a question record (no {exc} key)"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"questions file {path} line {number}: not a question record ({exc})"
            ) from None
        questions.append(EvalQuestion(question, tuple(sources), answer))
    if not questions:
        raise ConfigError(f"questions file {path} holds no questions")
    return questions


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def evaluate(
    questions: list[EvalQuestion],
    retriever: BaseRetriever,
    *,
    k: int,
    mode: str = RetrievalSettings.model_fields["mode"].default,
) -> EvalReport:
    """Retrieve for every question and score the results."""
    if questions:
        retriever.invoke(questions[0].question, k=k)  # warm-up: model load, collection load
    embedder = getattr(retriever, "embeddings", None)
    embed_ms: list[float] = []
    results = []
    for item in questions:
        started = time.perf_counter()
        docs = retriever.invoke(item.question, k=k)
        elapsed = (time.perf_counter() - started) * 1000
        if embedder is not None:  # the same question, embedded alone, in the same conditions
            started = time.perf_counter()
            embedder.embed_query(item.question)
            embed_ms.append((time.perf_counter() - started) * 1000)
        retrieved = [
            {
                "text": d.page_content,
                "source": d.metadata.get(SOURCE_FIELD),
                "score": d.metadata.get("score"),
            }
            for d in docs[:k]
        ]
        wanted = set(item.sources)
        hits = [item.is_hit(r["source"], str(r["text"])) for r in retrieved]
        rank = next((i for i, hit in enumerate(hits, 1) if hit), None)
        found = {r["source"] for r, hit in zip(retrieved, hits, strict=True) if hit} & wanted
        results.append(
            QuestionResult(
                question=item.question,
                sources=list(item.sources),
                retrieved=retrieved,
                first_hit_rank=rank,
                recall=len(found) / len(wanted) if wanted else 0.0,
                milliseconds=elapsed,
            )
        )
    n = len(results) or 1
    latencies = sorted(r.milliseconds for r in results)
    return EvalReport(
        k=k,
        mode=mode,
        questions=len(results),
        hit_at_k=sum(r.first_hit_rank is not None for r in results) / n,
        mrr_at_k=sum(1 / r.first_hit_rank for r in results if r.first_hit_rank) / n,
        recall_at_k=sum(r.recall for r in results) / n,
        p50_ms=_percentile(latencies, 50),
        p95_ms=_percentile(latencies, 95),
        results=results,
        embed_p50_ms=_percentile(sorted(embed_ms), 50) if embed_ms else None,
    )

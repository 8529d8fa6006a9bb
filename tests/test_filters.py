"""`milvus_rag.filters`: filter expressions built safely, values that stay data, templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.filters import eq, metadata_filter, quote, source_glob
from milvus_rag.settings import Settings, load_settings
from milvus_rag.store import connect
from tests.support.retrieval import _retriever, _sources

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_filter_values_stay_data(hybrid_settings: Settings) -> None:
    odd = 'faq/odd "name".md'
    docs = _retriever(hybrid_settings, expr=eq("source", odd), k=10).invoke("guitars")
    assert _sources(docs) == [odd]
    injection = 'x" or source != "'
    docs = _retriever(hybrid_settings, expr=eq("source", injection), k=10).invoke("guitars")
    assert docs == []
    docs = _retriever(
        hybrid_settings, expr=metadata_filter({"title": ['a") or (1==1', "b"]})
    ).invoke("x")
    assert docs == []


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("bell\x07\x00", '"bell\x07\x00"'),  # Milvus reads them literally; Lite knows no \u
        ("a' || 1==1", '"a\' || 1==1"'),
    ],
)
def test_quote(value: str, literal: str) -> None:
    assert quote(value) == literal


def test_quoted_values_round_trip_in_milvus(tmp_path: Path) -> None:
    s = load_settings(overrides={"milvus": {"uri": str(tmp_path / "q.db")}})
    client = connect(s.milvus)
    client.create_collection("q", dimension=2)
    values = ['a"b', "c\\d", "e\nf", "g'h", 'x" or id >= 0 or "', "100%_like", "tab\tz", "\x07\x00"]
    client.insert("q", [{"id": i, "vector": [0.1, 0.2], "v": v} for i, v in enumerate(values)])
    from milvus_rag.store import lite_engine

    compiled = (lite_engine() or "").startswith("2.")
    for i, value in enumerate(values):
        rows = client.query("q", filter=eq("v", value), output_fields=["id"])
        if compiled and ("\n" in value or "\t" in value):
            # Milvus's own parser (Lite 2.5) does not decode \n or \t in a string
            # literal: such a value matches nothing, never another row.
            assert rows == []
            continue
        assert [r["id"] for r in rows] == [i]
    rows = client.query("q", filter=source_glob("100%_*", name="v"), output_fields=["id"])
    if compiled and not rows:
        pytest.xfail(
            "Milvus Lite 2.5 (Milvus's own LIKE on a dynamic field) honours no backslash "
            "escape: a glob with a literal % or _ matches nothing there (open, issue 17)"
        )
    assert [r["id"] for r in rows] == [values.index("100%_like")]


def test_bad_field_name_refused() -> None:
    with pytest.raises(ConfigError):
        eq("title == 1 or x", "v")


def test_filter_expr_carries_a_template() -> None:
    from milvus_rag.filters import Expr, all_of

    expr = all_of(source_glob("faq/"), eq("title", 'say "hi"'), metadata_filter({"n": [1, 2]}))
    assert isinstance(expr, Expr)
    assert expr.template == "(source like {p0}) and (title == {p1}) and (n in {p2})"
    assert expr.params == {"p0": "faq/%", "p1": 'say "hi"', "p2": [1, 2]}
    assert expr == '(source like "faq/%") and (title == "say \\"hi\\"") and (n in [1, 2])'


def test_templating_used_only_where_the_server_supports_it(
    hybrid_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    calls: list[dict] = []
    original = MilvusClient.search

    def spy(self: MilvusClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(dict(kwargs))
        if (
            "filter_params" in kwargs
        ):  # Milvus Lite has no templating: render it to check the wiring
            kwargs["filter"] = eq("source", kwargs.pop("filter_params")["p0"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MilvusClient, "search", spy)
    expr = eq("source", "faq/zebra.md")
    docs = _retriever(hybrid_settings, mode="dense", expr=expr).invoke("zebra")
    assert _sources(docs) == ["faq/zebra.md"]
    assert calls[-1]["filter"] == 'source == "faq/zebra.md"' and "filter_params" not in calls[-1]

    monkeypatch.setattr(MilvusClient, "get_server_version", lambda self, **kw: "v2.5.4")
    docs = _retriever(hybrid_settings, mode="dense", expr=expr).invoke("zebra")
    assert _sources(docs) == ["faq/zebra.md"]
    assert calls[-1]["filter_params"] == {"p0": "faq/zebra.md"}

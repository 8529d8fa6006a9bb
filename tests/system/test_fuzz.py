"""Property-based fuzzing of the edges: every CLI command and the server's routes.

Hypothesis generates bad input (control characters, escape sequences, lone surrogates,
huge and empty values, wrong types, binary files, folders for files, garbage
``MILVUS_RAG_*`` variables, malformed bodies) against a prepared Milvus Lite collection
(the tiny model, the local OpenAI-compatible server). Whatever comes in:

* no traceback, and only the documented exit codes / HTTP statuses
  (:data:`milvus_rag.errors.EXIT_CODES`, :data:`milvus_rag.errors.HTTP_STATUSES`);
* error responses are JSON;
* nothing is written: the collection keeps its ids and no file appears in the working
  folder.

Inputs that are in fact valid may succeed (exit 0, HTTP 200); inputs whose success
would legitimately write (an ingest of a real source, a migration to a new Lite file)
are not generated.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from typer.testing import CliRunner

from milvus_rag.cli import app
from milvus_rag.errors import EXIT_CODES, HTTP_STATUSES
from milvus_rag.settings import Settings, load_settings
from tests.conftest import base_config
from tests.support.corpus import CHAIN_DOCS, store_chain_docs
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

# Hypothesis caches under ./.hypothesis by default: keep the checkout clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "milvus-rag-hypothesis")

EXAMPLES = settings.default.max_examples  # the profile's (tests/conftest.py)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written: not even hypothesis's example database
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COLLECTION = "fuzz_docs"
DEAD = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


class Prepared:
    """The collection every fuzzed command and request runs against (files in ``root``)."""

    def __init__(self, root: Path, config: Path, settings: Settings) -> None:
        self.root = root
        self.config = config
        self.settings = settings
        self.binary = root / "blob.md"
        self.empty_dir = root / "empty"
        self.files_dir = root / "files"

    def __repr__(self) -> str:  # hypothesis prints it with each failing example
        return f"Prepared({self.root})"


@pytest.fixture(scope="module")
def prepared(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, llm_server: FakeOpenAIServer
) -> Prepared:
    root = tmp_path_factory.mktemp("fuzz")
    config = base_config(root / "fuzz.db", tiny_model_dir, llm_server)
    config["milvus"]["collection"] = COLLECTION
    path = root / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config))
    prepared = Prepared(root, path, load_settings(path, environ={"TEST_LLM_KEY": "test-key"}))
    store_chain_docs(prepared.settings)
    prepared.binary.write_bytes(bytes(range(256)) * 8)
    prepared.empty_dir.mkdir()
    prepared.files_dir.mkdir()
    return prepared


@pytest.fixture
def env(prepared: Prepared, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    return prepared


def _ids(s: Settings) -> tuple[list[str], list[str]]:
    """The collections of the prepared database and the ids of the fuzzed one."""
    from milvus_rag.store import connect

    client = connect(s.milvus)
    try:
        client.load_collection(COLLECTION)
        rows = client.query(COLLECTION, filter='id != ""', output_fields=["id"], limit=1000)
        return sorted(client.list_collections()), sorted(str(r["id"]) for r in rows)
    finally:
        client.close()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def unchanged(env: Prepared) -> Callable[[set[str]], None]:
    """A check that nothing was written: same collections and ids, no new file in the cwd."""
    expected = _ids(env.settings)
    assert expected[1] == sorted(f"id{i}" for i in range(len(CHAIN_DOCS)))

    def check(files_before: set[str]) -> None:
        assert _ids(env.settings) == expected
        assert _files(Path.cwd()) == files_before

    return check


# --------------------------------------------------------------------------- strategies

SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "\x1b[2J\x1b[31mred",
    "\x1b]0;title\x07",
    "\r\nforged: line",
    "\ud800",
    "\udcff",
    "a\u202eb",
    "\ufeff",
    "x" * 100_000,
    "-",
    "--",
    "nan",
    "-inf",
    "1e309",
    "-5",
    "0",
    "99999999999999999999",
    "../../etc/passwd",
    "~nobody_at_all/x.db",  # ~ of an unknown user: expanduser() raises RuntimeError
    "%s%n{p0}",
    'x" or id != "',
    "\\",
    "*?[",
    "{}",
    "[1, 2",
    "null",
    "[" * 5000,  # nested too deeply for a recursive parser
    '{"a": ' * 3000,
]

#: Any character, lone surrogates and control characters included.
bad_text = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.text(st.characters(max_codepoint=0x1F), max_size=10),
)
bad_number = st.one_of(
    st.sampled_from(["-5", "0", "abc", "nan", "inf", "-inf", "1e309", "", "3.5", "0x10", "10**9"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    bad_text,
)


def _flags(prepared: Prepared, *options: st.SearchStrategy[list[str]]) -> Any:
    """A shuffled list of option groups, each maybe present, plus --config."""
    config = st.one_of(
        st.just(["--config", str(prepared.config)]),
        st.sampled_from(
            [
                ["--config", str(prepared.binary)],
                ["--config", str(prepared.root)],
                ["--config", str(prepared.root / "missing.yaml")],
            ]
        ),
        bad_text.map(lambda t: ["--config", t]),
    )
    groups = st.lists(st.one_of(*options), max_size=4)
    return st.tuples(groups, config).map(lambda g: [a for opt in [*g[0], g[1]] for a in opt])


#: ``--uri`` / ``--collection`` values: garbage, a missing Lite file, a dead server.
uri_option = st.one_of(
    bad_text, st.sampled_from(["missing.db", "/nonexistent/x.db", f"http://{DEAD}"])
).map(lambda v: ["--uri", v])
collection_option = st.one_of(bad_text, st.just("no_such_collection")).map(
    lambda v: ["--collection", v]
)


def _not_a_name(value: str) -> bool:
    """Not a valid collection name: nothing can be created under it."""
    return not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value)


def _retrieval_options() -> list[st.SearchStrategy[list[str]]]:
    return [
        uri_option,
        collection_option,
        bad_number.map(lambda v: ["-k", v]),
        st.one_of(st.sampled_from(["dense", "hybrid", "xyz", ""]), bad_text).map(
            lambda v: ["--mode", v]
        ),
        bad_text.map(lambda v: ["--source", v]),
        st.one_of(bad_text, st.tuples(bad_text, bad_text).map("=".join)).map(
            lambda v: ["--filter", v]
        ),
        st.just(["--mmr"]),
        st.just(["--json"]),
        bad_text.map(lambda v: [v]),  # a stray argument or unknown option
    ]


#: ``MILVUS_RAG_*`` variables with garbage (values a process environment can hold).
env_value = bad_text.filter(lambda v: "\x00" not in v and not re.search("[\ud800-\udc7f]", v))
bad_env = st.one_of(
    st.just({}),
    st.tuples(
        st.sampled_from(
            [
                "MILVUS_RAG_RETRIEVAL__TOP_K",
                "MILVUS_RAG_RETRIEVAL__SCORE_THRESHOLD",
                "MILVUS_RAG_RETRIEVAL__WEIGHTS",
                "MILVUS_RAG_RETRIEVAL",
                "MILVUS_RAG_MILVUS__URI",
                "MILVUS_RAG_MILVUS__COLLECTION",
                "MILVUS_RAG_MILVUS__TIMEOUT",
                "MILVUS_RAG_EMBEDDING__MODEL_DIR",
                "MILVUS_RAG_LLM__PRESET",
                "MILVUS_RAG_LLM__TIMEOUT",
                "MILVUS_RAG_SERVER__PORT",
                "MILVUS_RAG_INGEST__GLOB",
                "MILVUS_RAG_RETREIVAL__TOP_K",
            ]
        ),
        st.one_of(env_value, st.just(f"http://{DEAD}/x")),
    ).map(lambda kv: dict([kv])),
)

runner = CliRunner()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else f"{text[:150]}...{text[-150:]}"


def _invoke(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> set[str]:
    before = _files(Path.cwd())
    result = runner.invoke(app, args, env=env, input=stdin)
    output = result.stdout + result.stderr
    shown = f"{_short(args)} with {_short(env)}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown} raised {_short(result.exception)}"
    )
    assert result.exit_code in EXIT_CODES, (result.exit_code, shown, output[-1000:])
    assert not TRACEBACK.search(output), (shown, output[-2000:])
    return before


def _lite_file(value: str) -> bool:
    """A value that would name a new Milvus Lite file (creating it is a legitimate write)."""
    return "://" not in value and value.rstrip().endswith(".db")


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_search_ask_and_chat(
    env: Prepared, unchanged: Callable[[set[str]], None], data: st.DataObject
) -> None:
    command = data.draw(st.sampled_from(["search", "ask", "chat"]))
    question = data.draw(bad_text)
    extra = {
        "search": [
            st.one_of(bad_number, st.sampled_from(["0.5", "-1"])).map(lambda v: ["--threshold", v])
        ],
        "ask": [st.just(["--no-stream"])],
        "chat": [st.sampled_from([["--citations"], ["--no-citations"]])],
    }[command]
    flags = data.draw(_flags(env, *_retrieval_options(), *extra))
    if command != "chat":
        unchanged(_invoke([command, question, *flags], data.draw(bad_env)))
        return
    # chat reads its questions from stdin: any bytes, lone surrogates as CESU-8 garbage.
    lines = data.draw(st.lists(bad_text, max_size=3))
    typed = "\n".join([question, *lines]).encode("utf-8", "surrogatepass")
    stdin = data.draw(st.one_of(st.just(typed), st.binary(max_size=100)))
    unchanged(_invoke(["chat", *flags], data.draw(bad_env), stdin))


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_ingest_of_bad_sources(
    env: Prepared, unchanged: Callable[[set[str]], None], data: st.DataObject
) -> None:
    invalid = st.one_of(
        bad_text.filter(lambda t: not t or not os.path.lexists(t)),
        st.sampled_from(
            [
                f"http://{DEAD}/docs.zip",
                "http://[::1",
                "http://%zz/",
                "ftp://example.invalid/x.zip",
                "file:///etc/passwd",
                "javascript:alert(1)",
                "https://",
                str(env.root / "missing"),
                str(env.root / "missing.zip"),
                str(env.empty_dir),
            ]
        ),
        bad_text.map(lambda t: f"http://{DEAD}/{t}"),
    )
    # Valid but harmless: a binary file is skipped (with --recreate it would drop; not drawn).
    source = data.draw(st.one_of(invalid, st.just(str(env.binary))))
    options = [
        bad_text.map(lambda v: ["--glob", v]),
        st.one_of(st.sampled_from(["markdown", "tutorial", "xyz"]), bad_text).map(
            lambda v: ["--splitter", v]
        ),
        st.one_of(st.sampled_from(["dense", "hybrid", "xyz"]), bad_text).map(
            lambda v: ["--mode", v]
        ),
        st.just(["--prune"]),
        st.just(["--json"]),
        # Another database or collection could legitimately be created: only unusable ones.
        bad_text.filter(lambda v: not _lite_file(v)).map(lambda v: ["--uri", v]),
        bad_text.filter(_not_a_name).map(lambda v: ["--collection", v]),
    ]
    if source != str(env.binary):
        options.append(st.just(["--recreate"]))
    flags = data.draw(_flags(env, *options))
    variables = data.draw(bad_env)
    if _lite_file(variables.get("MILVUS_RAG_MILVUS__URI", "")) or (
        "MILVUS_RAG_MILVUS__COLLECTION" in variables
    ):
        variables = {}  # an ingest into another (new) database or collection may write
    unchanged(_invoke(["ingest", source, *flags], variables))


@pytest.mark.slow
@FUZZ
@given(data=st.data(), content=st.one_of(st.binary(max_size=300), bad_text))
def test_eval_and_config(
    env: Prepared, unchanged: Callable[[set[str]], None], data: st.DataObject, content: bytes | str
) -> None:
    questions = env.files_dir / "questions.jsonl"
    if isinstance(content, bytes):
        questions.write_bytes(content)
    else:
        lines = [json.dumps({"question": content, "sources": [content]}), content]
        questions.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    config_file = env.files_dir / "config.yaml"
    config_file.write_bytes(
        content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    )
    command = data.draw(st.sampled_from(["eval", "config"]))
    if command == "eval":
        path = data.draw(
            st.one_of(
                st.sampled_from([str(questions), str(env.binary), str(env.root), ""]),
                bad_text,
            )
        )
        flags = data.draw(
            _flags(
                env,
                bad_number.map(lambda v: ["-k", v]),
                bad_text.map(lambda v: ["--mode", v]),
                st.just(["--json"]),
                uri_option,
                collection_option,
            )
        )
        args = ["eval", path, *flags]
    else:
        args = ["config", *data.draw(st.sampled_from([["-c", str(config_file)], []]))]
        args += data.draw(st.lists(bad_text.filter(lambda t: t != "init"), max_size=2))
    unchanged(_invoke(args, data.draw(bad_env)))


def _may_delete(pattern: str) -> bool:
    """Whether ``delete PATTERN`` could match a stored source (a glob, a prefix, the path)."""
    return bool(re.search("[*?]", pattern)) or any(
        source == pattern or source.startswith(pattern.rstrip("/") + "/")
        for _, source in CHAIN_DOCS
    )


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_sources_doctor_delete_and_config_init(
    env: Prepared, unchanged: Callable[[set[str]], None], data: st.DataObject
) -> None:
    command = data.draw(st.sampled_from(["sources", "doctor", "delete", "init"]))
    stdin = None
    if command == "sources":
        args = [
            "sources",
            *data.draw(_flags(env, st.just(["--json"]), uri_option, collection_option)),
        ]
    elif command == "doctor":
        options = [st.just(["--offline"]), st.just(["--json"]), uri_option, collection_option]
        args = ["doctor", *data.draw(_flags(env, *options))]
    elif command == "delete":
        patterns = data.draw(st.lists(bad_text, max_size=3))
        options = [uri_option, collection_option]
        if not any(_may_delete(p) for p in patterns):
            options.append(st.just(["--yes"]))  # nothing can match: nothing to confirm
        args = ["delete", *patterns, *data.draw(_flags(env, *options))]
        # Any answer but yes: the deletion must not happen.
        stdin = data.draw(
            st.binary(max_size=20).filter(lambda b: not b.strip().lower().startswith(b"y"))
        )
    else:  # config init: only to paths that cannot be written (any other would be written)
        path = data.draw(
            st.one_of(
                st.sampled_from(
                    [
                        str(env.binary),  # exists: refused without --force
                        str(env.root),
                        ".",
                        str(env.root / "missing" / "config.yaml"),
                        "x" * 5000,
                        "a\x00b.yaml",
                        "\ud800.yaml",
                    ]
                ),
            )
        )
        args = ["config", "init", path]
    unchanged(_invoke(args, data.draw(bad_env), stdin))


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_migrate_to_bad_targets(
    env: Prepared, unchanged: Callable[[set[str]], None], data: st.DataObject
) -> None:
    to = data.draw(
        st.one_of(
            bad_text.filter(lambda t: not _lite_file(t) and "://" not in t),
            st.sampled_from(
                [
                    f"http://{DEAD}",
                    f"https://{DEAD}/x",
                    f"tcp://{DEAD}",
                    "unix:///nonexistent/milvus.sock",
                    str(env.root / "missing" / "x.db"),
                    str(env.root),
                    str(env.settings.milvus.uri),  # the source itself
                ]
            ),
            bad_text.map(lambda t: f"http://{DEAD}/{t}"),
        )
    )
    collection = data.draw(
        st.one_of(st.none(), bad_text.filter(lambda t: not re.fullmatch(r"[A-Za-z_]\w*", t)))
    )
    flags = data.draw(_flags(env, st.just(["--recreate"]), st.just(["--json"])))
    args = ["migrate", "--to", to, *flags]
    if collection is not None:
        args += ["--to-collection", collection]
    unchanged(_invoke(args, {}))


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_serve_and_stray_arguments(
    env: Prepared,
    unchanged: Callable[[set[str]], None],
    data: st.DataObject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    served: list[Any] = []  # serve that gets as far as listening returns at once
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, **kwargs: served.append(kwargs))
    monkeypatch.setattr(Multiprocess, "run", lambda self: served.append(self))
    if data.draw(st.booleans()):
        flags = data.draw(
            _flags(
                env,
                bad_text.map(lambda v: ["--host", v]),
                bad_number.map(lambda v: ["--port", v]),
                bad_text.map(lambda v: ["--mode", v]),
            )
        )
        args = ["serve", *flags]
    else:
        args = data.draw(st.lists(bad_text, max_size=4))
    unchanged(_invoke(args, data.draw(bad_env)))


# --------------------------------------------------------------------------- server

RUN_ROUTES = [
    "/v1/chat/completions",
    *(
        f"{base}/{kind}"
        for base in ("/rag", "/rag-with-sources", "/retrieve")
        for kind in ("invoke", "batch", "stream", "stream_log", "stream_events")
    ),
]
OTHER_ROUTES = [
    "/health",
    "/v1/models",
    "/rag/input_schema",
    "/rag/playground/",
    "/rag/playground/assets",
    "/rag/playground/%00",
    "/rag/c/x",
    "/nope",
]
API_KEY = "fuzz-key"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | bad_text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.one_of(st.sampled_from(["question", "input", "content", "text", "type"]), bad_text),
            children,
            max_size=3,
        )
    ),
    max_leaves=8,
)
VALID = "Where does Milvus store data?"
question = st.one_of(bad_text, st.just("x" * 5000), st.just(VALID))
message = st.fixed_dictionaries(
    {
        "role": st.one_of(
            st.sampled_from(["user", "assistant", "system", "developer"]), json_values
        ),
        "content": st.one_of(
            question,
            st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url"]), "text": question}
                ),
                max_size=2,
            ),
            json_values,
        ),
    }
)
some_input = st.one_of(
    question,
    st.fixed_dictionaries(
        {"question": question},
        optional={
            "chat_history": st.one_of(
                st.lists(st.tuples(st.sampled_from(["user", "assistant"]), question), max_size=3),
                st.lists(message, max_size=3),
                json_values,
            ),
            "system": st.one_of(question, json_values),
            "citations": json_values,
        },
    ),
    json_values,
)
#: Per-request settings (LangServe's config.configurable): each alone, or any mix.
configurable_values = {
    "k": st.one_of(st.integers(-5, 60), st.integers(), json_values),
    "mode": st.one_of(st.sampled_from(["dense", "hybrid", "xyz"]), json_values),
    "source": st.one_of(st.lists(st.one_of(st.just("en/"), bad_text), max_size=3), json_values),
}
configurable = st.one_of(
    *(st.fixed_dictionaries({key: value}) for key, value in configurable_values.items()),
    st.fixed_dictionaries({}, optional={**configurable_values, "other": json_values}),
)
run_config = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "configurable": st.one_of(configurable, json_values),
            **{
                key: json_values
                for key in (
                    "run_name",
                    "tags",
                    "metadata",
                    "recursion_limit",
                    "max_concurrency",
                    "callbacks",
                )
            },
        },
    ),
)
json_bodies = st.one_of(
    st.fixed_dictionaries(
        {"messages": st.one_of(st.lists(message, max_size=3), json_values)},
        optional={
            "stream": st.one_of(st.booleans(), json_values),
            "model": json_values,
            "temperature": st.one_of(st.floats(), json_values),
            "max_tokens": st.one_of(st.integers(), json_values),
            "stop": json_values,
            "citations": json_values,
            "stream_options": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"input": some_input},
        optional={
            "config": run_config,
            "kwargs": json_values,
            "include_names": json_values,
            "version": st.one_of(st.sampled_from(["v1", "v2"]), json_values),
            "diff": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(some_input, max_size=20), json_values)},
        optional={
            "config": st.one_of(run_config, st.lists(run_config, max_size=3)),
            "kwargs": json_values,
        },
    ),
    json_values,
)
#: Lone surrogates travel as \ud800 escapes (ensure_ascii), which is how a client sends them.
bodies = st.one_of(
    json_bodies.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"x" * 70_000,
            b"[" * 60_000,
            b'{"input": "\xff"}',
            b"\xef\xbb\xbf{}",
            b'{"input": ' + b"9" * 5000 + b"}",  # more digits than Python reads into an int
            b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}',
        ]
    ),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
    ]
)


@pytest.fixture
def clients(env: Prepared) -> Iterator[dict[str, Any]]:
    """Apps over the prepared collection: open, and behind an API key."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from sse_starlette.sse import AppStatus

    from milvus_rag.server import create_app

    keyed = env.settings.model_copy(
        update={"server": env.settings.server.model_copy(update={"api_key": SecretStr(API_KEY)})}
    )
    AppStatus.should_exit_event = None  # sse-starlette binds it to one event loop
    with (
        TestClient(create_app(env.settings), raise_server_exceptions=False) as open_,
        TestClient(create_app(keyed), raise_server_exceptions=False) as locked,
    ):
        yield {"open": open_, "keyed": locked}
    AppStatus.should_exit_event = None


def _stream_statuses(text: str) -> list[int]:
    """Statuses carried by error events of a LangServe or OpenAI-style event stream."""
    statuses = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            data = json.loads(line[len("data:") :])
        except ValueError:
            continue
        if isinstance(data, dict) and "status_code" in data:
            statuses.append(data["status_code"])
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            statuses.append(data["error"].get("code"))
    return statuses


def _request(
    client: Any, method: str, route: str, body: bytes, headers: dict[str, str], caplog: Any
) -> None:
    """Send one request; check its status, body and logs."""
    caplog.clear()
    response = client.request(method, route, content=body, headers=headers)
    shown = f"{method} {route} {_short(body)} {headers}"
    assert response.status_code in HTTP_STATUSES, (response.status_code, shown, response.text[:500])
    assert not TRACEBACK.search(response.text), shown
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), shown
        assert isinstance(response.json(), dict), shown
    elif "text/event-stream" in response.headers.get("content-type", ""):
        for status in _stream_statuses(response.text):
            assert status in HTTP_STATUSES, (status, shown, response.text[-500:])
    ours = ("milvus_rag", "uvicorn", "fastapi", "starlette", "langserve")
    errors = [r for r in caplog.records if r.levelno >= 40 and r.name.startswith(ours)]
    assert not errors, (shown, [r.getMessage() for r in errors])


@pytest.mark.slow
@settings(FUZZ, max_examples=3 * EXAMPLES)
@given(data=st.data(), body=bodies, content_type=content_types)
def test_server_routes(
    clients: dict[str, Any],
    unchanged: Callable[[set[str]], None],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
    body: bytes,
    content_type: str,
) -> None:
    route = data.draw(st.one_of(st.sampled_from(RUN_ROUTES), st.sampled_from(OTHER_ROUTES)))
    method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE"]))
    keyed = data.draw(st.booleans())
    headers = {"content-type": content_type} if content_type else {}
    if keyed:
        token = data.draw(
            st.one_of(
                st.just(f"Bearer {API_KEY}"),
                st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
            )
        )
        headers["authorization"] = token
    before = _files(Path.cwd())
    _request(clients["keyed" if keyed else "open"], method, route, body, headers, caplog)
    unchanged(before)


@pytest.mark.slow
@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data())
def test_server_questions_with_odd_options(
    clients: dict[str, Any],
    unchanged: Callable[[set[str]], None],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    """Well-formed requests with a valid question and odd options reach retrieval and the LLM."""
    route = data.draw(st.sampled_from(RUN_ROUTES))
    asked = st.one_of(
        st.just(VALID),
        st.fixed_dictionaries(
            {"question": st.just(VALID)},
            optional={"chat_history": some_input, "system": question, "citations": json_values},
        ),
    )
    config = st.fixed_dictionaries({"configurable": configurable})
    if route == "/v1/chat/completions":
        body: Any = data.draw(
            st.fixed_dictionaries(
                {"messages": st.just([{"role": "user", "content": VALID}])},
                optional={
                    "stream": st.booleans(),
                    "temperature": st.one_of(st.floats(), json_values),
                    "max_tokens": st.one_of(st.integers(), json_values),
                    "stop": json_values,
                    "citations": json_values,
                },
            )
        )
    elif route.endswith("/batch"):
        body = data.draw(
            st.fixed_dictionaries(
                {
                    "inputs": st.lists(asked, min_size=1, max_size=3),
                    "config": st.one_of(config, st.lists(config, min_size=1, max_size=3)),
                },
            )
        )
    else:
        body = data.draw(st.fixed_dictionaries({"input": asked, "config": config}))
    before = _files(Path.cwd())
    raw = json.dumps(body, ensure_ascii=True).encode()
    _request(clients["open"], "POST", route, raw, {"content-type": "application/json"}, caplog)
    unchanged(before)


# --------------------------------------------------------------------------- settings
# Every setting and secret, from the environment and from config.yaml: whatever the value
# (control characters, non-ASCII text, huge numbers, deep nesting, JSON of any shape),
# loading gives settings or one ConfigError line; the CLI exits 0 or 2 with one line.


def _setting_keys() -> list[tuple[str, str]]:
    """(section, key) of every setting, secrets included."""
    from pydantic import BaseModel

    keys = []
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        keys += [(section, key) for key in model.model_fields]
    return keys


SETTING_KEYS = _setting_keys()
SECRET_VARS = [
    "MILVUS_RAG_MILVUS__TOKEN",
    "MILVUS_RAG_SERVER__API_KEY",
    "MILVUS_RAG_LLM__API_KEY",
    "LEPTONAI_TOKEN",  # the default preset's key variable (llm.api_key_env)
    "NVIDIA_API_KEY",
    "OPENAI_API_KEY",
]
SETTING_VARS = [
    *(f"MILVUS_RAG_{section}__{key}".upper() for section, key in SETTING_KEYS),
    *(f"MILVUS_RAG_{section}".upper() for section in Settings.model_fields),  # JSON sections
    *SECRET_VARS,
]
#: A marker put in secret values: it must never show in an error message.
SECRET_MARK = "S3CR3T"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HUGE = [
    "9" * 5000,  # more digits than Python converts to an int (4300)
    "-" + "9" * 5000,
    "1" + "0" * 400,
    "1e309",
    "-1e309",
    "1e-400",
    "9" * 4300,
    str(2**64),
    str(-(2**63) - 1),
    "0x7fffffff",
    "1_000",
    "١٢",  # Arabic-Indic digits
    '{"top_k": ' + "9" * 5000 + "}",  # inside JSON (a section variable, a list setting)
    "[" + "9" * 5000 + ", 1]",
]
DEEP = [
    _nested(100),
    _nested(5000),
    _nested(200_000),
    '{"a": ' * 5000 + "1" + "}" * 5000,
    "[" * 200_000,
    '{"top_k": ' + "[" * 5000,
]
setting_text = st.one_of(
    st.sampled_from([*HUGE, *DEEP]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),  # any non-ASCII
    st.text(st.characters(max_codepoint=0x1F), max_size=8),  # control characters
    st.text(st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=("Cs",))),
    st.integers().map(str),
    st.floats().map(str),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False, default=str)),
    bad_text,
)
#: What a process environment can hold (no NUL; lone surrogates only as undecodable bytes).
env_setting = setting_text.filter(lambda v: "\x00" not in v and not re.search("[\ud800-\udc7f]", v))


def _secret(value: str) -> str:
    return f"{value[:20]}{SECRET_MARK}{value[20:]}"


def _env_settings() -> Any:
    """1-3 variables: a setting or a secret each, with an odd value."""
    pair = st.tuples(st.sampled_from(SETTING_VARS), env_setting, st.booleans()).map(
        lambda t: (t[0], _secret(t[1]) if t[0] in SECRET_VARS and t[2] else t[1])
    )
    return st.lists(pair, min_size=1, max_size=3).map(dict)


def _check_loaded_or_one_line(load: Callable[[], Any], shown: str) -> None:
    from milvus_rag.errors import ConfigError

    try:
        load()
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, (shown, message)
        assert SECRET_MARK not in message, (shown, message)
        assert not TRACEBACK.search(message), (shown, message)


class _Environment:
    """Set variables for one example; restore the environment after it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for name, value in self.values.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@FUZZ
@given(values=_env_settings())
def test_every_setting_and_secret_from_the_environment(values: dict[str, str]) -> None:
    with _Environment(values):
        _check_loaded_or_one_line(load_settings, _short(values))


#: YAML scalars written as they are (a huge integer, a deep flow sequence, a tag, an anchor).
yaml_scalar = st.one_of(
    st.sampled_from(
        [
            *HUGE,
            *DEEP,
            "!!python/object:os.system x",
            "!!binary AAAA",
            "&a [*a]",
            "*undefined",
            "~",
            ".inf",
            ".nan",
            "0o17",
            "2001-12-14t21:59:43.10-05:00",
            "{a: {b: {c: 1}}}",
            "|\n    a\n    b",
            "'\\x00'",
            '"\\0\\x1b[31m\\u202e"',
            '"\\ud800"',
        ]
    ),
    setting_text.map(lambda v: json.dumps(v)),  # any text, as a quoted YAML scalar
    setting_text,
)


@FUZZ
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(SETTING_KEYS), yaml_scalar, st.booleans()), min_size=1, max_size=3
    )
)
def test_every_setting_and_secret_from_the_config_file(
    tmp_path: Path, entries: list[tuple[tuple[str, str], str, bool]]
) -> None:
    lines: dict[str, list[str]] = {}
    for (section, key), value, secret in entries:
        shown = _secret(value) if secret and key in ("token", "api_key") else value
        scalar = shown.replace("\n", "\n    ")  # block scalars stay inside their key
        lines.setdefault(section, []).append(f"  {key}: {scalar}")
    text = "".join(f"{section}:\n" + "\n".join(body) + "\n" for section, body in lines.items())
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _check_loaded_or_one_line(lambda: load_settings(path), _short(text))


@settings(FUZZ, max_examples=EXAMPLES)
@given(values=_env_settings(), use_file=st.booleans(), scalar=yaml_scalar, data=st.data())
def test_config_command_exits_0_or_2_with_one_line(
    tmp_path: Path, values: dict[str, str], use_file: bool, scalar: str, data: st.DataObject
) -> None:
    args = ["config"]
    if use_file:
        section, key = data.draw(st.sampled_from(SETTING_KEYS))
        path = tmp_path / "fuzzed.yaml"
        path.write_bytes(f"{section}:\n  {key}: {scalar}\n".encode("utf-8", "surrogatepass"))
        args += ["--config", str(path)]
    result = runner.invoke(app, args, env=values)
    shown = f"{_short(args)} with {_short(values)}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        shown,
        repr(result.exception),
    )
    assert result.exit_code in (0, 2), (result.exit_code, shown, result.output[-1000:])
    assert not TRACEBACK.search(result.output), (shown, result.output[-2000:])
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
        assert len(errors) == 1 and errors[0].startswith("error: "), (shown, result.stderr)
        assert SECRET_MARK not in result.stderr, (shown, result.stderr)
    else:
        assert SECRET_MARK not in result.stdout  # secrets are shown as set / unset


# --------------------------------------------------------------------------- regressions
# Plain tests for what the fuzzing found: each was a traceback, a 500 or a write.


def _run(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


@pytest.mark.slow
def test_filter_values_with_control_characters(env: Prepared) -> None:
    config = ["--config", str(env.config)]
    # Was a MilvusException: Milvus Lite knows no \u escape.
    result = _run(["search", "x", "--filter", "source=\x01", "--json", *config])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = _run(["search", "x", "--source", "en/\x1b[2J", "--json", *config])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    # Was a MilvusException: a lone surrogate cannot be sent.
    result = _run(["search", "x", "--source", "\udcff*", *config])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: filter value") and "Unicode" in result.stderr


@pytest.mark.slow
def test_surrogate_question_is_a_clear_error(env: Prepared) -> None:
    result = _run(["search", "caf\udce9", "--config", str(env.config)])
    assert result.exit_code == 1
    assert "not valid Unicode" in result.stderr and "TypeError" not in result.stderr


def test_config_init_to_a_name_too_long() -> None:
    result = _run(["config", "init", "x" * 5000])  # was an OSError (ENAMETOOLONG)
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert not list(Path.cwd().iterdir())


@pytest.mark.slow
def test_chat_input_that_is_not_utf8(env: Prepared) -> None:
    result = runner.invoke(app, ["chat", "--config", str(env.config)], input=b"\x80\nexit\n")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 0 and "error: the line is not UTF-8 text" in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"retrieval:\n  top_k: \xff\n", "not UTF-8 text (byte 21 is 0xff)"),
        (b"[" * 5000, "nested too deeply"),
        (b"retrieval:\n  top_k: " + b"9" * 5000 + b"\n", "an integer of more than 4300 digits"),
        (b"ingest:\n  glob: 2001-02-30\n", "a value that cannot be read"),  # no such date
    ],
)
def test_config_file_that_is_no_config(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = _run(["config", "--config", str(path)])
    assert result.exit_code == 2 and needle in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not TRACEBACK.search(result.output)


@pytest.mark.parametrize(
    "line",
    [
        "[" * 200_000,  # was a RecursionError traceback
        '{"question": "q", "sources": ' + "[" * 200_000 + "]" * 200_000 + "}",
        '{"question": "q", "sources": [], "answer": ' + '{"a": ' * 100_000 + "}",
    ],
)
def test_eval_file_nested_too_deeply(tmp_path: Path, line: str) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"question": "q", "sources": ["a.md"]}\n' + line + "\n")
    result = _run(["eval", str(path)])
    assert result.exit_code == 2 and not TRACEBACK.search(result.output)
    assert result.stderr.splitlines() == [
        f"error: questions file {path} line 2: nested too deeply to be a question record"
    ]


def test_config_path_too_long() -> None:
    result = _run(["config", "--config", "x" * 5000])  # was an OSError (ENAMETOOLONG)
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("MILVUS_RAG_RETRIEVAL__WEIGHTS", "[" * 5000, "nested too deeply"),
        ("MILVUS_RAG_MILVUS__URI", " ", "invalid setting milvus.uri"),
        ("MILVUS_RAG_MILVUS__URI", "\udcff.db", "lone surrogate"),
        ("MILVUS_RAG_EMBEDDING__MODEL_DIR", "\udcff", "holds no model.onnx"),
        ("MILVUS_RAG_EMBEDDING__MODEL_DIR", "x" * 5000, "holds no model.onnx"),
        ("MILVUS_RAG_EMBEDDING__MODEL_DIR", "~nobody_at_all", "names no known user"),
        ("MILVUS_RAG_MILVUS__URI", "~nobody_at_all/x.db", "names no known user"),
    ],
)
def test_bad_environment_variables(name: str, value: str, needle: str) -> None:
    result = _run(["config"], env={name: value})
    assert result.exit_code == 2 and needle in result.stderr


@pytest.mark.parametrize("command", ["search", "sources"])
def test_lite_path_too_long(env: Prepared, command: str) -> None:
    args = [command, "x"][: 2 if command == "search" else 1]
    result = _run([*args, "--uri", f"/{'x' * 300}/a.db", "--config", str(env.config)])
    assert result.exit_code == 2 and "the path is too long" in result.stderr


@pytest.mark.parametrize("to", ["\x00", "\ud800", ""])
def test_migrate_to_an_unusable_uri(env: Prepared, to: str) -> None:
    result = _run(["migrate", "--to", to, "--config", str(env.config)])
    assert result.exit_code == 2 and "invalid setting milvus.uri" in result.stderr


@pytest.mark.slow
def test_ingest_of_an_empty_source_does_not_ingest_the_working_folder(
    env: Prepared, tmp_path: Path
) -> None:
    (tmp_path / "notes.md").write_text("# Notes\n\nThese must not be ingested by accident.\n")
    for source in ("", "  "):
        result = _run(["ingest", source, "--config", str(env.config)])
        assert result.exit_code == 1 and "the source is empty" in result.stderr
    assert _ids(env.settings)[1] == sorted(f"id{i}" for i in range(len(CHAIN_DOCS)))


@pytest.mark.parametrize("source", ["docs\x00", "docs\ud800", "~nobody_at_all/docs"])
def test_ingest_of_an_invalid_path(env: Prepared, source: str) -> None:
    result = _run(["ingest", source, "--config", str(env.config)])
    assert result.exit_code == 1 and "is not a valid path" in result.stderr


@pytest.mark.parametrize(
    ("route", "body", "status", "needle"),
    [
        ("/rag/invoke", b'{"input": "\x80"}', 400, "not UTF-8"),
        ("/rag/invoke", b"[" * 60_000, 400, "nested too deeply"),
        ("/rag/invoke", b'{"input": "hi", "config": null}', 422, '"config" must be'),
        ("/rag/stream", b'{"input": "hi", "config": null}', 422, '"config" must be'),
        ("/rag/batch", b'{"inputs": ["hi", 1]}', 422, "inputs[1] is not a valid input"),
        ("/v1/chat/completions", b'{"messages": {"\\ud800": 1}}', 422, "\\ud800"),
    ],
)
def test_server_refusals_that_were_500s(
    clients: dict[str, Any], route: str, body: bytes, status: int, needle: str
) -> None:
    response = clients["open"].post(
        route, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert needle in str(response.json())


@pytest.mark.parametrize("path", ["assets", "%00", "x" * 5000, "missing.js"])
def test_playground_paths_it_cannot_serve_are_json_404s(clients: dict[str, Any], path: str) -> None:
    response = clients["open"].get(f"/rag/playground/{path}")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Not Found", "type": "invalid_request_error"}}
    assert clients["open"].get("/rag/playground/").status_code == 200

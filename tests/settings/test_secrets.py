"""`milvus_rag.settings.secrets`: secrets normalised and checked at load, never in any output,
routed only where allowed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from milvus_rag.cli import app
from milvus_rag.errors import ConfigError
from milvus_rag.settings import Settings, load_settings
from tests.conftest import base_config
from tests.support.cli import one_line_error
from tests.support.openai_server import FakeOpenAIServer, closed_port, openai_error
from tests.support.secrets import (
    EVIL,
    FALLBACK,
    MARKERS,
    SERVER,
    URI_PW,
    URL_PW,
    VARIABLES,
    _assert_clean,
    _leaks,
    _set_secrets,
    runner,
)

#: How a value read from a file or a mounted secret may end.
AROUND = ["{}\r\n", "{}\r", "\t {} \n"]


#: Characters no key can hold (it could not be sent in a header).
INSIDE = ["\r", "\n", "\t", "\x7f", "\x1b", "é", "\u2028"]


def _echo_all(markers: tuple[str, ...] = MARKERS) -> dict[str, Any]:
    """An error body echoing every secret, as OpenAI's API echoes the key it rejects."""
    return openai_error(f"Incorrect API key provided: {' '.join(markers)}", code="invalid_api_key")


def _config(
    llm: FakeOpenAIServer, tmp_path: Path, tiny_model_dir: Path, **milvus: Any
) -> dict[str, Any]:
    config = base_config(tmp_path / "milvus.db", tiny_model_dir, llm)
    config["milvus"].update(milvus)
    config["llm"]["base_url"] = llm.base_url.replace("http://", f"http://u:{URL_PW}@")
    config["llm"]["fallbacks"] = [
        {"base_url": llm.base_url, "model": "fallback-model", "api_key_env": "FALLBACK_KEY"}
    ]
    return config


# -- at load: normalised, checked ----------------------------------------------------------


@pytest.mark.parametrize("form", AROUND)
@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_secrets_are_stripped_at_load(
    monkeypatch: pytest.MonkeyPatch, llm: FakeOpenAIServer, variable: str, form: str
) -> None:
    monkeypatch.setenv(variable, form.format(VARIABLES[variable]))
    overrides = {"llm": {"api_key_env": "TEST_LLM_KEY", "base_url": llm.base_url, "model": "m"}}
    overrides["llm"]["fallbacks"] = [  # type: ignore[index]
        {"base_url": llm.base_url, "model": "m", "api_key_env": "FALLBACK_KEY"}
    ]
    settings = load_settings(overrides=overrides)
    values = {
        "TEST_LLM_KEY": settings.llm.api_key,
        "FALLBACK_KEY": settings.llm.fallbacks[0].api_key,
        "MILVUS_RAG_MILVUS__TOKEN": settings.milvus.token,
        "MILVUS_RAG_SERVER__API_KEY": settings.server.api_key,
    }
    secret = values[variable]
    assert secret is not None and secret.get_secret_value() == VARIABLES[variable]


@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_a_blank_secret_is_unset(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, " \r\n")
    settings = load_settings(overrides={"llm": {"api_key_env": "TEST_LLM_KEY"}})
    assert settings.llm.api_key is None and settings.milvus.token is None
    assert settings.server.api_key is None


@pytest.mark.parametrize("bad", INSIDE)
@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_a_key_with_a_control_or_non_ascii_character_is_one_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, bad: str
) -> None:
    monkeypatch.setenv(variable, f"{VARIABLES[variable]}{bad}x\r\n")
    overrides = {"llm": {"api_key_env": "TEST_LLM_KEY", "fallbacks": []}}
    overrides["llm"]["fallbacks"] = [  # type: ignore[index]
        {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "FALLBACK_KEY"}
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides=overrides)
    message = str(caught.value)
    assert variable in message and "\n" not in message
    _assert_clean(message, "the error")


COMMANDS = [
    ["config"],
    ["doctor"],
    ["doctor", "--json"],
    ["ask", "How is data stored?"],
    ["ask", "How is data stored?", "--json"],
    ["search", "storage", "--json"],
    ["serve"],
]


@pytest.mark.parametrize(
    ("variable", "args"),
    [("TEST_LLM_KEY", args) for args in COMMANDS]
    + [(variable, ["doctor"]) for variable in sorted(VARIABLES) if variable != "TEST_LLM_KEY"],
)
def test_the_cli_names_the_variable_of_a_bad_key_never_its_value(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    args: list[str],
) -> None:
    """A key that cannot be sent (here non-ASCII) stops every command at load: no
    traceback, the variable named (``doctor`` reports it as its config check)."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(llm, tmp_path, tiny_model_dir)))
    _set_secrets(monkeypatch)
    monkeypatch.setenv(variable, f"{VARIABLES[variable]}\xe9\r\n")
    result = runner.invoke(app, [*args, "--config", str(config)])
    output = result.stdout + result.stderr
    assert result.exit_code in (1, 2), output
    assert variable in output
    _assert_clean(output, " ".join(args))
    if args[0] != "doctor":
        one_line_error(result, code=2)


@pytest.mark.parametrize(
    ("file", "env"),
    [
        ({"preset": "nvidia"}, {}),
        ({"preset": "openai", "model": "gpt-4.1", "fallbacks": ["nvidia", "local"]}, {}),
        ({"base_url": "https://integrate.api.nvidia.com/v1/", "api_key_env": "NVIDIA_API_KEY"}, {}),
        ({"preset": "local", "base_url": EVIL}, {}),  # no key is sent
        ({"base_url": EVIL, "api_key_env": None}, {}),
        ({"fallbacks": [{"base_url": EVIL, "model": "m", "api_key_env": None}]}, {}),
        # the environment chose the host and the variable; the file only the model
        (
            {"preset": "lepton", "model": "x"},
            {"MILVUS_RAG_LLM__BASE_URL": EVIL, "MILVUS_RAG_LLM__API_KEY_ENV": "MY_KEY"},
        ),
        ({"preset": "lepton"}, {"MILVUS_RAG_LLM__BASE_URL": EVIL}),  # as without the file
        (
            {"model": "m"},
            {
                "MILVUS_RAG_LLM__FALLBACKS": json.dumps(
                    [{"base_url": EVIL, "model": "m", "api_key_env": "MY_KEY"}]
                )
            },
        ),
    ],
)
def test_what_an_implicit_config_file_may_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: dict[str, Any], env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"llm": file}))
    assert load_settings().config_file == (tmp_path / "config.yaml").resolve()


def test_the_environment_cannot_be_overridden_by_the_file_to_reroute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment names the variable; the file still may not choose its host."""
    monkeypatch.setenv("MILVUS_RAG_LLM__API_KEY_ENV", "MY_KEY")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"llm": {"base_url": EVIL}}))
    with pytest.raises(ConfigError, match="MY_KEY"):
        load_settings()


def test_a_config_file_may_not_hold_a_fallback_key(tmp_path: Path) -> None:
    fallback = {"base_url": EVIL, "model": "m", "api_key": "MARK-in-file"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"llm": {"fallbacks": [fallback]}}))
    with pytest.raises(ConfigError, match="environment only") as caught:
        load_settings(tmp_path / "c.yaml")
    assert "MARK" not in str(caught.value)


# -- the server: bodies, streams, /ready, logs ---------------------------------------------


class _Logs(logging.Handler):
    """Every record of the package's, uvicorn's and the root logger, formatted with its
    traceback, as a log file would hold it."""

    NAMES = ("", "milvus_rag", "uvicorn", "uvicorn.error", "uvicorn.access")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> _Logs:
        self._levels = {}
        for name in self.NAMES:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(self._levels[name])


@pytest.fixture
def fresh_sse() -> Iterator[None]:
    """sse-starlette 1.x keeps one exit event per process, bound to one event loop."""
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit_event = None
    yield
    AppStatus.should_exit_event = None


def _docs_retriever() -> Any:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from tests.support.corpus import CHAIN_DOCS

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [
                Document(page_content=text, metadata={"source": source, "score": 1.0})
                for text, source in CHAIN_DOCS[:2]
            ]

    return Fixed()


def _marked_settings(
    llm: FakeOpenAIServer, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    _set_secrets(monkeypatch)
    config = _config(
        llm, tmp_path, tiny_model_dir, uri=f"http://root:{URI_PW}@127.0.0.1:{closed_port()}"
    )
    return load_settings(overrides=config)


QUESTION = "Where does Milvus store data?"


CHAT = {"messages": [{"role": "user", "content": QUESTION}]}


@pytest.mark.parametrize("key", ["sk-x\r", "sk-x\r\n", " sk-x \n"])
def test_a_key_read_with_a_line_ending_works(
    llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, fresh_sse: None, key: str
) -> None:
    """The issue's case: ``LEPTONAI_TOKEN=$'sk-x\\r'`` against a reachable endpoint."""
    from fastapi.testclient import TestClient

    from milvus_rag.llm import probe_endpoint
    from milvus_rag.server import create_app

    monkeypatch.setenv("LEPTONAI_TOKEN", key)
    settings = load_settings(overrides={"llm": {"base_url": llm.base_url, "max_retries": 0}})
    assert settings.llm.api_key_env == "LEPTONAI_TOKEN"
    assert probe_endpoint(settings.llm, 5).ok
    with TestClient(create_app(settings, retriever=_docs_retriever())) as client:
        answer = client.post("/v1/chat/completions", json=CHAT)
        ready = client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert llm.chat_requests()[-1]["headers"]["authorization"] == "Bearer sk-x"
    assert ready.json()["checks"]["llm"]["ok"], ready.text


@pytest.mark.filterwarnings("ignore:astream_log is deprecated")  # LangServe's stream_log
def test_no_secret_reaches_an_http_client_or_a_log(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sse: None,
) -> None:
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app

    settings = _marked_settings(llm, tmp_path, tiny_model_dir, monkeypatch)
    auth = {"Authorization": f"Bearer {SERVER}"}
    texts: list[tuple[str, str]] = []
    with _Logs() as logs:
        app = create_app(settings, retriever=_docs_retriever())
        with TestClient(app, raise_server_exceptions=False) as client:

            def call(what: str, method: str, path: str, **kwargs: Any) -> Any:
                response = client.request(method, path, headers=auth, **kwargs)
                texts.append((f"{what}: {method} {path} {response.status_code}", response.text))
                return response

            assert call("answer", "POST", "/v1/chat/completions", json=CHAT).status_code == 200

            # The endpoint rejects the key, echoing every secret: 502, before any stream.
            for path, body in (
                ("/v1/chat/completions", CHAT),
                ("/v1/chat/completions", {**CHAT, "stream": True}),
                ("/rag/invoke", {"input": QUESTION}),
                ("/rag-with-sources/invoke", {"input": QUESTION}),
                ("/rag/stream", {"input": QUESTION}),
                ("/rag/batch", {"inputs": [QUESTION]}),
            ):
                llm.script(status=401, body=_echo_all())
                response = call("rejected", "POST", path, json=body)
                assert response.status_code == 502, response.text
                assert "***" in response.text

            # The endpoint fails after the first token: the error event names the base URL.
            for path, body in (
                ("/v1/chat/completions", {**CHAT, "stream": True}),
                ("/rag/stream", {"input": QUESTION}),
                ("/rag/stream_events", {"input": QUESTION}),
                ("/rag-with-sources/stream_log", {"input": QUESTION}),
            ):
                llm.script(error_after=1)
                response = call("midway", "POST", path, json=body)
                assert response.status_code == 200 and "error" in response.text
                assert "u:***@" in response.text, response.text

            # The primary fails echoing the secrets, the fallback answers: a logged warning.
            # The fallback's key was read with a trailing CR LF: it is sent stripped.
            llm.script(status=500, body=_echo_all())
            assert call("fallback", "POST", "/v1/chat/completions", json=CHAT).status_code == 200
            sent = llm.chat_requests()[-1]["headers"]["authorization"]
            assert sent == f"Bearer {FALLBACK}"

            # /ready names the endpoint (its URL holds a password).
            ready = call("ready", "GET", "/ready")
            assert "u:***@" in ready.text and ready.json()["checks"]["llm"]["ok"]

            # The server's key in a URL, as uvicorn's access log would show it.
            call("login", "GET", f"/login?key={SERVER}", follow_redirects=False)
            logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/login?key={SERVER}", "1.1", 303
            )
    for what, text in texts:
        _assert_clean(text, what)
    assert any("answered by the fallback" in line for line in logs.lines), logs.lines
    assert any("/login?key=***" in line for line in logs.lines), logs.lines
    for line in logs.lines:
        assert "MARK" not in line and not _leaks(line), line


# -- end to end: the CLI over a real collection --------------------------------------------


def _cli(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.slow
def test_no_secret_reaches_the_terminal(
    tmp_path: Path,
    tiny_model_dir: Path,
    llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    fresh_sse: None,
) -> None:
    """ask, doctor, config, search, serve (plain and --json) against a real collection,
    with every secret marked; then the same with Milvus behind a URI holding a password."""
    from tests.support.corpus import store_chain_docs

    store_chain_docs(make_settings())  # the collection at tmp_path/milvus.db
    _set_secrets(monkeypatch)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_config(llm, tmp_path, tiny_model_dir)))
    outputs: list[tuple[str, int, str]] = []

    def run(*args: str, config: Path = good, script: dict[str, Any] | None = None) -> str:
        if script is not None:
            llm.script(**script)
        code, output = _cli([*args, "--config", str(config)])
        outputs.append((" ".join(args), code, output))
        return output

    ask = ["ask", QUESTION]
    echo = _echo_all(tuple(m for m in MARKERS if m != URI_PW))  # Milvus Lite: no URI password
    assert llm.answer in run(*ask)  # the keys were read with CR LF: stripped, they work
    for flags in ([], ["--json"], ["--no-stream"]):
        assert "***" in run(*ask, *flags, script={"status": 401, "body": echo})
        assert llm.answer in run(*ask, *flags, script={"status": 500, "body": echo})
    assert "u:***@" in run(*ask, script={"error_after": 1})  # the answer had started
    assert "u:***@" in run("doctor")
    assert "u:***@" in run("doctor", "--json")
    assert "u:***@" in run("config")
    run("search", "storage", "--json")

    # Milvus behind a URI with a password, unreachable: every message names the URI.
    down = tmp_path / "down.yaml"
    uri = f"http://root:{URI_PW}@127.0.0.1:{closed_port()}"
    down.write_text(yaml.safe_dump(_config(llm, tmp_path, tiny_model_dir, uri=uri, timeout=3)))
    for args in (ask, [*ask, "--json"], ["doctor"], ["doctor", "--json"], ["search", "x"]):
        assert "root:***@" in run(*args, config=down)

    # serve without the LLM's key warns naming the endpoint (its URL holds a password).
    import uvicorn

    monkeypatch.delenv("TEST_LLM_KEY")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: None)
    assert "u:***@" in run("serve", "--port", str(closed_port()))

    for what, code, output in outputs:
        _assert_clean(output, f"{what} (exit {code})")

    # /ready over the unreachable Milvus.
    from fastapi.testclient import TestClient

    from milvus_rag.server import create_app

    settings = load_settings(down)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready", headers={"Authorization": f"Bearer {SERVER}"})
    assert ready.status_code == 503 and "root:***@" in ready.text
    _assert_clean(ready.text, "/ready")

"""What every command shares: the --config, --uri and --collection options, settings
loading, error output.

This module and the command modules import nothing heavy at module level (no
pydantic, LangChain, pymilvus or ONNX): ``milvus-rag --help`` only builds the
typer app. Each command imports what it needs inside its body.

Everything printed that may hold a name from outside (a zip entry, a URL, a
heading, an error message quoting them) goes through :func:`printable`, so
escape sequences and line breaks in a name cannot drive the terminal or forge
output lines.

Secrets never reach the terminal: each command runs with a
:class:`~milvus_rag.redaction.Redactor` of its own (URL credentials and bearer
tokens until :func:`settings_for` has loaded the settings, then every secret of
them too), which :func:`printable`, :func:`echo_json`, the error lines and the
package's loggers (:func:`~milvus_rag.redaction.redact_logs`) apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from milvus_rag.errors import MilvusRAGError
from milvus_rag.redaction import Redactor, redact_logs

if TYPE_CHECKING:
    from milvus_rag.settings import Settings

__all__ = [
    "CollectionOption",
    "ConfigOption",
    "JsonOption",
    "UriOption",
    "command",
    "config_file_of",
    "echo_json",
    "light_command",
    "printable",
    "settings_for",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: ./config.yaml when present).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
UriOption = Annotated[
    str | None,
    typer.Option(
        "--uri",
        help="Milvus Lite file or server URL (milvus.uri).",
        show_default=False,
    ),
]
CollectionOption = Annotated[
    str | None,
    typer.Option("--collection", help="Collection name (milvus.collection).", show_default=False),
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _Invocation:
    """What one command run knows about its secrets (made by :func:`command`)."""

    redactor: Redactor = field(default_factory=Redactor)
    settings: list[Any] = field(default_factory=list)
    unfilter: list[Callable[[], None]] = field(default_factory=list)
    traced: Any = None

    def use(self, settings: Settings) -> None:
        """Mask the secrets of ``settings`` too, in output and in the package's logs; with
        traces on (``telemetry.traces``), send the command's spans (ingest stages, ...)."""
        self.settings.append(settings)
        self.redactor = Redactor.from_settings(*self.settings)
        self.unfilter.append(redact_logs(self.redactor))
        if self.traced is None and settings.telemetry.exporter is not None:
            from milvus_rag.telemetry import Telemetry

            telemetry = Telemetry.from_settings(settings.telemetry, metrics=False)
            if telemetry.tracer is not None:
                self.traced = telemetry.active()
                self.traced.__enter__()
                self.unfilter.append(telemetry.close)  # flushed once the command is done

    def close(self) -> None:
        if self.traced is not None:
            self.traced.__exit__(None, None, None)
            self.traced = None
        while self.unfilter:
            self.unfilter.pop()()


#: The running command's invocation (None outside a command: URL credentials and
#: bearer tokens are still masked).
_INVOCATION: ContextVar[_Invocation | None] = ContextVar("milvus_rag_cli", default=None)


def _redactor() -> Redactor:
    invocation = _INVOCATION.get()
    return invocation.redactor if invocation is not None else Redactor()


def printable(text: object) -> str:
    """``text`` with every non-printable character escaped, as ``repr`` would, and
    every secret masked (``***``).

    Escape sequences (``\\x1b[2J``), other control characters, CR/LF and invisible
    format characters (``\\u202e``) become visible escapes; letters of any script
    are kept. Secrets: those of the running command's settings, URL credentials and
    bearer tokens (:class:`~milvus_rag.redaction.Redactor`).
    """
    redactor = _redactor()
    value = redactor.redact(text)
    if value.isprintable():
        return value
    return redactor.redact("".join(c if c.isprintable() else repr(c)[1:-1] for c in value))


def _json_safe(text: str) -> str:
    """JSON text whose non-printable characters are ``\\u`` escapes (still valid JSON)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in text)


class _EchoHandler(logging.Handler):
    """Log records as printable lines on the current stderr (looked up at each record)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(printable(self.format(record)), err=True)
        except Exception:
            self.handleError(record)


def settings_for(
    config: Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    uri: str | None = None,
    collection: str | None = None,
    **options: Any,
) -> Settings:
    """Load settings once for a command: flags > env > config file > defaults.

    ``uri`` and ``collection`` are the ``--uri`` / ``--collection`` flags;
    ``options`` go to :func:`~milvus_rag.settings.load_settings`.
    """
    from milvus_rag.settings import load_settings

    merged: dict[str, Any] = {key: dict(value) for key, value in (overrides or {}).items()}
    flags = {"uri": uri, "collection": collection}
    merged.setdefault("milvus", {}).update({k: v for k, v in flags.items() if v is not None})
    settings = load_settings(config, merged, **options)
    invocation = _INVOCATION.get()
    if invocation is not None:
        invocation.use(settings)
    return settings


def config_file_of(settings: Settings) -> str | None:
    """The config file the settings were read from, for display (None: no file)."""
    return str(settings.config_file) if settings.config_file is not None else None


def _quiet_libraries(milvus: bool) -> None:
    """Libraries that log tracebacks before raising: the CLI prints one line instead.

    pymilvus configures its loggers when imported, so it is imported first, only for
    commands that use it (``milvus``).
    """
    if milvus:
        import pymilvus  # noqa: F401 - it configures its loggers on import; override afterwards

    for name in (
        "pymilvus",
        "pymilvus.milvus_client",
        "pymilvus.bulk_writer",
        "milvus_lite",
        "langchain_milvus",
        "httpx",
        "openai",
        # The hub client warns at each retry; the command prints one line if it fails.
        "huggingface_hub",
        # Milvus Lite's in-process gRPC server logs a traceback for calls it does not
        # implement (pymilvus's async client probes AllocTimestamp, then carries on).
        "grpc._server",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    ours = logging.getLogger("milvus_rag")
    if not ours.handlers:
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.WARNING)
        ours.propagate = False


@contextmanager
def _errors_as_messages() -> Iterator[None]:
    try:
        yield
    except MilvusRAGError as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def command(func: F, *, milvus: bool = True) -> F:
    """Wrap a command so typed errors become one line on stderr and an exit code.

    ``milvus=False`` (:func:`light_command`) is for commands that never touch Milvus:
    they do not import pymilvus to quiet its logs.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet_libraries(milvus)
        invocation = _Invocation()
        token = _INVOCATION.set(invocation)
        try:
            with _errors_as_messages():
                return func(*args, **kwargs)
        finally:
            _INVOCATION.reset(token)
            invocation.close()

    return wrapper  # type: ignore[return-value]


def light_command(func: F) -> F:
    """:func:`command` for a command that never touches Milvus (``config``): starts faster."""
    return command(func, milvus=False)


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (non-printable characters escaped, secrets masked)."""
    redactor = _redactor()
    text = json.dumps(redactor.redact_data(data), ensure_ascii=False, indent=2)
    typer.echo(redactor.redact(_json_safe(text)))

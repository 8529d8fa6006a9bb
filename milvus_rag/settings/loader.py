"""``load_settings``: flags, environment, config file and defaults made one ``Settings``,
with one-line errors; and the ``MILVUS_RAG_`` variables that name no setting."""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from milvus_rag.errors import ConfigError
from milvus_rag.settings.endpoints import LLM_PRESETS, LLMEndpoint, LLMSettings
from milvus_rag.settings.files import DEFAULT_CONFIG_FILE, read_config_file
from milvus_rag.settings.model import CONFIG_DATA, Settings, secret_keys
from milvus_rag.settings.secrets import ENV_PREFIX, normalised_secret, same_origin, url_origin
from milvus_rag.settings.sections import otel_exporter

__all__ = ["load_settings", "unknown_env_vars"]

# The name load_settings has always logged on (logging filters match it exactly).
_log = logging.getLogger("milvus_rag.settings")


def load_settings(
    config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    warn_unknown_env: bool = True,
) -> Settings:
    """Load settings from flags, environment, config file and defaults.

    Args:
        config_path: a YAML file; ``None`` reads ``./config.yaml`` when it exists, but
            such a file found implicitly may not route a key to a host of its choosing.
        overrides: nested values that win over everything, e.g.
            ``{"retrieval": {"top_k": 5}}``; ``None`` values are ignored.
        environ: where to look up the variables named by ``llm.api_key_env`` and
            the fallbacks' ``api_key_env`` (``os.environ`` by default);
            ``MILVUS_RAG_`` variables are always read from the process environment.
        warn_unknown_env: log unknown ``MILVUS_RAG_`` variables as warnings (logger
            ``milvus_rag.settings``) with the closest valid name (callers that report
            :func:`unknown_env_vars` themselves pass False).

    Raises:
        ConfigError: a value is invalid, a key unknown or the file missing; a secret
            holds a control or non-ASCII character; an implicitly found file would send
            a key to a host other than its preset's. The message names the key or the
            variable, never a secret.
    """
    env = os.environ if environ is None else environ
    if warn_unknown_env:
        _warn_unknown_env()
    path = _config_path(config_path)
    data = read_config_file(path) if path is not None else {}
    given = _prune(overrides or {})
    settings = _validated(given, data, path)
    settings._config_file = path.resolve() if path is not None else None
    settings.telemetry._from_env = otel_exporter(env)
    if config_path is None and path is not None:
        _check_implicit_routes(settings, data, given, path)
    _read_keys(settings, env)
    return settings


def _warn_unknown_env() -> None:
    """One warning per ``MILVUS_RAG_`` variable that names no setting."""
    for name, suggestion in unknown_env_vars():
        hint = f"; did you mean {suggestion}?" if suggestion else ""
        _log.warning("unknown environment variable %s (not a milvus-rag setting)%s", name, hint)


def _config_path(config_path: str | Path | None) -> Path | None:
    """The config file to read: the one given (it must exist), else ``./config.yaml`` if
    there is one, else None."""
    if config_path is not None:
        if not os.path.isfile(config_path):  # never raises (a NUL byte, a name too long)
            raise ConfigError(f"config file {config_path} does not exist")
        return Path(config_path)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _validated(given: dict[str, Any], data: dict[str, Any], path: Path | None) -> Settings:
    """``Settings`` from the caller's values, the environment and the file's ``data``.

    Raises:
        ConfigError: one line naming the first offending key or variable.
    """
    token = CONFIG_DATA.set(data)
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_env_error(exc)) from None
    except RecursionError:  # JSON in a variable, nested thousands deep
        raise ConfigError(
            f"invalid settings: a {ENV_PREFIX}* environment variable is nested too deeply"
        ) from None
    finally:
        CONFIG_DATA.reset(token)


def _read_keys(settings: Settings, env: Mapping[str, str]) -> None:
    """Each endpoint's key, from the variable its ``api_key_env`` names (when set).

    Raises:
        ConfigError: a key holds a control or non-ASCII character (naming the variable).
    """
    endpoints: list[tuple[str, LLMSettings | LLMEndpoint]] = [("llm", settings.llm)]
    endpoints += [(f"llm.fallbacks[{i}]", f) for i, f in enumerate(settings.llm.fallbacks)]
    for name, endpoint in endpoints:
        key_env = endpoint.api_key_env
        if not key_env or key_env not in env:
            continue
        try:
            key = normalised_secret(env[key_env], key_env)
        except ValueError as exc:
            raise ConfigError(f"invalid setting {name}.api_key_env: {exc}") from None
        if key is not None:
            endpoint.api_key = SecretStr(key)


def _check_implicit_routes(
    settings: Settings, data: Mapping[str, Any], given: Mapping[str, Any], path: Path
) -> None:
    """A config file found implicitly may not choose which key goes to which host.

    Each endpoint (the primary, the fallbacks) sends the key in its ``api_key_env`` to
    its base URL's host. A route the file brings (one the environment, the caller and
    the defaults alone would not make) must be a preset's key sent to that preset's host.

    Raises:
        ConfigError: the file would send a key elsewhere (naming the variable and host).
    """
    if not isinstance(data.get("llm"), dict) or not data["llm"]:
        return
    from_env = EnvSettingsSource(Settings)().get("llm")
    trusted_llm = {**(from_env if isinstance(from_env, dict) else {}), **(given.get("llm") or {})}
    try:
        trusted = {(origin, env) for _, origin, env in _routes(LLMSettings(**trusted_llm))}
    except (ValidationError, ValueError):  # not valid without the file: trust no route
        trusted = set()
    for name, origin, key_env in _routes(settings.llm):
        if (origin, key_env) in trusted or any(
            preset.api_key_env == key_env and same_origin(preset.base_url, origin)
            for preset in LLM_PRESETS.values()
        ):
            continue
        instead = (
            f"{ENV_PREFIX}LLM__FALLBACKS"
            if name != "llm"
            else f"{ENV_PREFIX}LLM__BASE_URL and {ENV_PREFIX}LLM__API_KEY_ENV"
        )
        raise ConfigError(
            f"{path} (found in the working directory, not passed with --config) would send "
            f"the key in {key_env} to {origin} ({name}); a config file found implicitly may "
            "send only a preset's key to that preset's host: pass it with --config if you "
            f"trust it, or set {instead} in the environment"
        )


def _routes(llm: LLMSettings) -> list[tuple[str, str, str]]:
    """``(endpoint, origin, key variable)`` of each endpoint that sends a key."""
    endpoints: list[tuple[str, LLMSettings | LLMEndpoint]] = [("llm", llm)]
    endpoints += [(f"llm.fallbacks[{i}]", f) for i, f in enumerate(llm.fallbacks)]
    return [
        (name, url_origin(str(endpoint.base_url)), endpoint.api_key_env)
        for name, endpoint in endpoints
        if endpoint.api_key_env
    ]


def _env_names() -> list[str]:
    """Every ``MILVUS_RAG_`` variable a setting is read from (sections take JSON too)."""
    names = []
    for section, info in Settings.model_fields.items():
        names.append(f"{ENV_PREFIX}{section}".upper())
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.extend(f"{ENV_PREFIX}{section}__{key}".upper() for key in model.model_fields)
    return names


def unknown_env_vars(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``MILVUS_RAG_`` variables that name no setting, each with the closest valid name.

    Args:
        environ: the environment to check (``os.environ`` by default).

    Returns:
        ``(name, suggestion)`` pairs sorted by name; ``suggestion`` is None when no
        valid name is close, e.g. ``("MILVUS_RAG_RETREIVAL__TOP_K",
        "MILVUS_RAG_RETRIEVAL__TOP_K")``.
    """
    env = os.environ if environ is None else environ
    # Compared without the shared prefix, which would make every name look close.
    valid = [name.removeprefix(ENV_PREFIX) for name in _env_names()]
    known = set(valid)
    unknown: list[tuple[str, str | None]] = []
    for name in sorted(env):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if upper.startswith(ENV_PREFIX) and upper.removeprefix(ENV_PREFIX) not in known:
            close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), valid, n=1)
            unknown.append((name, ENV_PREFIX + close[0] if close else None))
    return unknown


def _prune(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``None`` leaves so that unset CLI flags do not override anything."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _prune(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _describe_env_error(exc: SettingsError) -> str:
    """One line for a ``MILVUS_RAG_`` variable pydantic-settings could not parse."""
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found.group(1) if found else "settings"
    return (
        f"invalid setting {section}: a {ENV_PREFIX}{section.upper()}* environment variable "
        "is not valid JSON (list and mapping values are given as JSON)"
    )


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One line naming the first offending key (never echoing a secret, nor the password
    of a URL)."""
    from milvus_rag.redaction import Redactor

    err = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in err["loc"]) or "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    secret = bool({name for _, name in secret_keys()} & {str(part) for part in err["loc"]})
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif not secret and err["type"] != "missing":
        shown = err.get("input")
        if isinstance(shown, (str, int, float, bool)):
            message = f"{message} (got {shown!r})"
    # A secret comes from the environment only, never from the file.
    origin = f" in {path}" if path is not None and not secret else ""
    return Redactor().redact(f"invalid setting {key}{origin}: {message}")

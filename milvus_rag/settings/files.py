"""The config file: reading ``config.yaml`` (one-line errors, secrets refused) and the
commented default one ``config init`` writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from milvus_rag.errors import ConfigError
from milvus_rag.settings.model import Settings, secret_keys
from milvus_rag.settings.secrets import ENV_PREFIX

__all__ = ["DEFAULT_CONFIG_FILE", "default_config_text", "read_config_file"]

#: The config file read when none is given and it exists (in the working directory).
DEFAULT_CONFIG_FILE = Path("config.yaml")

#: libyaml's safe loader where PyYAML has it (same results, C speed; it refuses deep
#: nesting itself), else the pure-Python one.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_config_file(path: Path) -> dict[str, Any]:
    """The sections ``path`` holds (``{}`` when empty); a ConfigError, in one line, when it
    cannot be read, is not a YAML mapping of sections or holds a secret."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start + 1} is "
            f"{exc.object[exc.start]:#04x}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's limit
            raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    except ValueError as exc:  # a scalar YAML reads but Python refuses (a huge int, a bad date)
        what = (
            f"an integer of more than {sys.get_int_max_str_digits()} digits"
            if "integer string conversion" in str(exc)
            else f"a value that cannot be read ({exc})"
        )
        raise ConfigError(f"config file {path} holds {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    for section, values in list(data.items()):
        # Checked here: MILVUS_RAG_<SECTION>__* variables would otherwise replace the
        # section wholesale and hide the mistake.
        if section not in Settings.model_fields:
            continue  # reported as an unknown key by validation
        if values is None:
            del data[section]  # a section whose keys are all commented out
        elif not isinstance(values, dict):
            raise ConfigError(
                f"invalid setting {section} in {path}: must be a mapping of keys "
                f"(got {type(values).__name__})"
            )
    for section, key in secret_keys():
        if isinstance(data.get(section), dict) and key in data[section]:
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"{section}.{key} is a secret and is read from the environment only: "
                f"remove it from {path} and set {env}"
            )
    llm = data.get("llm")
    fallbacks = llm.get("fallbacks") if isinstance(llm, dict) else None
    for entry in fallbacks if isinstance(fallbacks, list) else []:
        if isinstance(entry, dict) and "api_key" in entry:
            raise ConfigError(
                f"llm.fallbacks api_key is a secret and is read from the environment only: "
                f"remove it from {path} and name its variable in api_key_env"
            )
    return data


def default_config_text() -> str:
    """The commented ``config.yaml`` shipped with the package: every key at its default.

    ``milvus-rag config init`` writes it; loading it gives the same settings as no file.
    """
    from importlib.resources import files

    return files("milvus_rag").joinpath("config.default.yaml").read_text(encoding="utf-8")

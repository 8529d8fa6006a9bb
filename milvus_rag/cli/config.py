"""``milvus-rag config``."""

from __future__ import annotations

from milvus_rag.cli._common import ConfigOption, command, config_file_of, echo_json, settings_for


@command
def show_config(config: ConfigOption = None) -> None:
    """Print the resolved settings (secrets shown only as set or unset).

    ``config_file`` is the file read (absolute path), or null when none was.
    """
    settings = settings_for(config)
    echo_json({"config_file": config_file_of(settings), **settings.redacted()})

"""``milvus-rag config``."""

from __future__ import annotations

from milvus_rag.cli._common import ConfigOption, command, echo_json, settings_for


@command
def show_config(config: ConfigOption = None) -> None:
    """Print the resolved settings (secrets shown only as set or unset)."""
    echo_json(settings_for(config).redacted())

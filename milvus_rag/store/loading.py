"""Loading a collection into memory, with retries (searches and queries need it loaded)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from milvus_rag.errors import StoreError
from milvus_rag.store.connection import reason

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["LOAD_ATTEMPTS", "LOAD_BACKOFF_SECONDS", "load_collection"]

_log = logging.getLogger(__name__)


#: Attempts at loading a collection, and the first pause between two (doubled each time).
LOAD_ATTEMPTS = 4
LOAD_BACKOFF_SECONDS = 0.25


def load_collection(client: MilvusClient, collection: str) -> None:
    """Load ``collection`` unless it is loaded (a killed writer leaves Milvus Lite's released).

    Never releases a loaded collection. A failed load is tried again
    (:data:`LOAD_ATTEMPTS` in all, short pauses between): Milvus Lite 3.x can fail
    to read segment files a flush has just written (``file seems not fully written``).

    Raises:
        StoreError: the collection could not be loaded (one line, the last reason).
    """

    from pymilvus.client.types import LoadState

    state = client.get_load_state(collection).get("state")
    if state == LoadState.Loaded:
        return
    for attempt in range(LOAD_ATTEMPTS):
        try:
            client.load_collection(collection)
            return
        except Exception as exc:
            if attempt + 1 == LOAD_ATTEMPTS:
                raise StoreError(
                    f"collection {collection} could not be loaded ({LOAD_ATTEMPTS} attempts): "
                    f"{reason(exc)}"
                ) from exc
            _log.debug("loading %s failed (%s); trying again", collection, reason(exc))
            time.sleep(LOAD_BACKOFF_SECONDS * 2**attempt)

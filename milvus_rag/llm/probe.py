"""One cheap request to an endpoint (``GET /models``): reachable, key accepted, model listed;
for ``milvus-rag doctor`` and the server's ``/ready``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from milvus_rag.llm.failures import header_error, root_cause, shown_url

if TYPE_CHECKING:
    from milvus_rag.settings import LLMEndpoint, LLMSettings

__all__ = ["EndpointProbe", "probe_endpoint"]


@dataclass(frozen=True)
class EndpointProbe:
    """What one cheap request to an endpoint said: ``ok``, a message and, if not ok, the fix."""

    ok: bool
    message: str
    fix: str | None = None


def probe_endpoint(endpoint: LLMSettings | LLMEndpoint, timeout: float) -> EndpointProbe:
    """``GET {base_url}/models`` with the key: reachable, key accepted, model listed.

    Used by ``milvus-rag doctor`` and the server's ``/ready``. Never raises.
    """
    import httpx

    url = str(endpoint.base_url).rstrip("/")
    base = shown_url(url)  # for messages
    if endpoint.api_key is None and endpoint.api_key_env:
        return EndpointProbe(
            False,
            f"no API key for {base}: {endpoint.api_key_env} is not set",
            f"export {endpoint.api_key_env}=..., or choose another llm.preset",
        )
    headers = {}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
    unreachable_fix = (
        "Lepton's hosted *.lepton.run endpoints were retired: set llm.preset "
        "(nvidia, openai, local) or llm.base_url"
        if "lepton.run" in base
        else "check llm.base_url and that the server runs, or add llm.fallbacks"
    )
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
    except (httpx.LocalProtocolError, UnicodeEncodeError) as exc:
        refused = header_error(exc, endpoint.api_key_env)
        if refused is None:
            raise
        return EndpointProbe(False, str(refused), f"set {endpoint.api_key_env or 'the key'} again")
    except httpx.TimeoutException:
        return EndpointProbe(False, f"{base} did not answer within {timeout:g} s", unreachable_fix)
    except httpx.HTTPError as exc:
        return EndpointProbe(
            False, f"{base} cannot be reached ({root_cause(exc)})", unreachable_fix
        )
    status = response.status_code
    if status in (401, 403):
        key = endpoint.api_key_env or "llm.api_key_env"
        return EndpointProbe(
            False, f"{base} rejected the key in {key} (HTTP {status})", f"set a valid key in {key}"
        )
    if status == 404:
        return EndpointProbe(
            True, f"{base} is reachable (it has no /models route: key not verified)"
        )
    if status >= 400:
        return EndpointProbe(
            False, f"{base} answered HTTP {status} to GET /models", unreachable_fix
        )
    listed = _model_ids(response)
    note = (
        f"; model {endpoint.model} is not in its /models list"
        if listed and endpoint.model not in listed
        else ""
    )
    return EndpointProbe(True, f"{base} is reachable and accepts the key{note}")


def _model_ids(response: Any) -> set[str]:
    try:
        data = response.json().get("data")
        return {str(item["id"]) for item in data if isinstance(item, dict) and "id" in item}
    except (ValueError, AttributeError, TypeError):
        return set()

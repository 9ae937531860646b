"""What a submitted request is, read without the store or the queues: its stored payload, the
parameters its model cannot honour, its tokens for the rate limit, and the webhook URL check.

Pure functions of a request (and the catalog): the submitter calls them, and so do the SDK
surfaces (:mod:`broker.dropin`, :mod:`broker.api.openai_batches`) that build or check requests
before a batch exists. Kept apart from :mod:`broker.submission.submitter` because none of them
writes anything.
"""

from __future__ import annotations

from broker import queues
from broker.config.broker_toml import BrokerConfig
from broker.errors import InvalidRequest
from broker.schemas.http import RequestIn
from broker.telemetry import redaction
from broker.webhooks import ssrf
from workers.providers import adapter_for
from workers.providers.base import Unsupported


def check_webhook_url(url: str, allow_hosts: list[str]) -> None:
    """400 naming ``webhook_url`` when its host is, or resolves to, a non-public address (the
    SSRF guard, :mod:`broker.webhooks.ssrf`). A host that does not resolve now is accepted:
    every delivery checks again, and fails with the reason."""
    try:
        ssrf.check_url(url, allow_hosts)
    except ssrf.UnresolvableHost:
        return
    except ssrf.UnsafeWebhookUrl as exc:
        raise InvalidRequest(f"webhook_url: {exc}", field="webhook_url") from exc


def payload_of(request: RequestIn, redact: bool = False) -> dict:
    """The request as stored and sent to the provider: a chat request's messages, ``max_tokens``
    and ``temperature``, and those of ``top_p``, ``stop``, ``seed``, ``top_k`` and
    ``response_format`` that are set (absent ones are left out, so a request without them keeps
    the payload, and the cache key, it always had); or an embedding request's texts
    (``kind: embedding``). With ``redact`` the text is stored with personal data replaced
    (:mod:`broker.telemetry.redaction`); stop sequences and schemas are kept as given."""
    clean = redaction.redact if redact else (lambda text: text)
    if request.input is not None:
        return {
            "kind": "embedding",
            "input": [clean(text) for text in request.input],
            "dimensions": request.dimensions,
            "encoding_format": request.encoding_format or "float",
        }
    assert request.messages is not None  # RequestIn holds one or the other
    return {
        "messages": [{**m.model_dump(), "content": clean(m.content)} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        **request.chat_parameters(),
    }


def unhonoured(config: BrokerConfig, model: str, request: RequestIn) -> Unsupported | None:
    """A parameter of ``request`` that ``model``'s provider cannot honour (``top_k`` on an
    OpenAI-format model, a ``json_object`` format on an Anthropic one), or None. Refused at
    submission for the model a request runs on; a model further down its chain refuses it
    when called (the request then fails naming it, rather than answer another question)."""
    parameters = request.chat_parameters()
    if not parameters:
        return None
    wire = config.provider_for_model(model).wire_format
    return adapter_for(wire).unsupported(parameters)


def tokens_of(request: RequestIn, payload: dict) -> int:
    """What a request may use, for the submission rate limit (tokens per minute): its input's
    bound in tokens and its ``max_tokens``."""
    output = 0 if request.is_embedding else request.max_tokens
    return queues.payload_input_bound(payload) // 4 + output

"""OpenAI's synchronous surface: ``POST /v1/chat/completions`` (and streaming),
``POST /v1/embeddings``, the model list. Mounted under ``/v1``, so
``OpenAI(base_url=".../v1")`` finds it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from broker.api.auth import authenticate
from broker.api.dropin_calls import answer
from broker.api.resources import Resources
from broker.config.broker_toml import TeamConfig
from broker.dropin import streams
from broker.dropin.embeddings_wire import embeddings_request, embeddings_response
from broker.dropin.openai_wire import chat_completion, chat_request
from broker.errors import NotFound

router = APIRouter(prefix="/v1", tags=["openai"])
Team = Annotated[TeamConfig, Depends(authenticate)]


@router.post("/chat/completions")
async def chat_completions(
    body: Annotated[dict[str, Any], Body()], team: Team, resources: Resources, request: Request
) -> Response:
    """A chat completion through the queues (priority ``high``); ``stream: true`` answers as
    ``chat.completion.chunk`` events. Feature from ``x-broker-feature`` or ``metadata.feature``."""
    asked = chat_request(body, custom_id="chat")
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    stream = streams.openai_of(usage) if body.get("stream") else None
    return await answer(request, team, resources, asked, "x-request-id", chat_completion, stream)


@router.post("/embeddings")
async def embeddings(
    body: Annotated[dict[str, Any], Body()], team: Team, resources: Resources, request: Request
) -> Response:
    """Embeddings through the queues (priority ``high``) on an embedding model of the catalog;
    the vectors as floats or base64, per ``encoding_format``."""
    asked = embeddings_request(body, custom_id="embeddings")
    return await answer(request, team, resources, asked, "x-request-id", embeddings_response, None)


def _models(resources) -> list[dict[str, Any]]:
    config = resources.config
    listed = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": m.provider}
        for m in config.models
    ]
    listed += [
        {"id": name, "object": "model", "created": 0, "owned_by": "inference-broker"}
        for name in config.route_names()
    ]
    return listed


@router.get("/models")
def list_models(team: Team, resources: Resources) -> dict[str, Any]:
    """The catalog's models and the routes (virtual models such as ``auto``)."""
    return {"object": "list", "data": _models(resources)}


@router.get("/models/{model}")
def get_model(model: str, team: Team, resources: Resources) -> dict[str, Any]:
    for found in _models(resources):
        if found["id"] == model:
            return found
    raise NotFound(f"no model or route named {model!r}")

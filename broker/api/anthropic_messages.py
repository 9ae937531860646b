"""Anthropic's synchronous surface: ``POST /v1/messages`` (and streaming). The SDK's paths
carry ``/v1``, so ``Anthropic(base_url="http://broker:8000")`` finds it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from broker.api.auth import authenticate
from broker.api.dropin_calls import answer
from broker.api.resources import Resources
from broker.config.broker_toml import TeamConfig
from broker.dropin import streams
from broker.dropin.anthropic_wire import message, message_request

router = APIRouter(prefix="/v1", tags=["anthropic"])
Team = Annotated[TeamConfig, Depends(authenticate)]


@router.post("/messages")
async def create_message(
    body: Annotated[dict[str, Any], Body()], team: Team, resources: Resources, request: Request
) -> Response:
    """A message through the queues (priority ``high``); ``stream: true`` answers with the
    Messages event sequence. Feature from ``x-broker-feature`` or ``metadata.feature``."""
    asked = message_request(body, custom_id="message")
    stream = streams.anthropic_of if body.get("stream") else None
    return await answer(request, team, resources, asked, "request-id", message, stream)

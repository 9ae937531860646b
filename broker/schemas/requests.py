"""What a caller submits: ``POST /v1/jobs``'s body (:class:`JobCreate`) and each of its
requests (:class:`RequestIn`: a chat conversation or embedding inputs, sampling and output
parameters, response format, cache control).

Apart from the responses (:mod:`.http`) because this is the contract submission, the drop-in
surfaces and the client validate against, with its own rules (one kind per request, chat-only
parameters, ``stop`` as a list). :mod:`.http` re-exports every name here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from broker.schemas.fields import MetadataValue, NulFree, WebhookEvent, WebhookUrl, _Model
from broker.states import Priority


class Message(_Model):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=2_000_000)


EmbeddingText = Annotated[str, Field(min_length=1, max_length=100_000)]


class CacheControl(_Model):
    """Per-request control of the response cache, in the spirit of HTTP's Cache-Control:
    ``read: false`` is ``no-cache`` (ask the provider; with ``store`` still true, the fresh
    answer replaces the cached one: a refresh), ``store: false`` is ``no-store``, ``ttl_s`` is
    ``max-age`` for the answer kept (at most the policy's)."""

    read: bool = Field(default=True, description="Answer from the cache when it can.")
    store: bool = Field(default=True, description="Keep this request's answer in the cache.")
    ttl_s: int | None = Field(default=None, ge=1, le=90 * 86_400)


INT64 = 2**63
"""``seed`` is a signed 64-bit integer at the providers that take one."""

CHAT_PARAMETERS = ("top_p", "stop", "seed", "top_k", "response_format")
"""Sampling and output parameters of a chat request, in the payload only when set."""


class JsonSchemaFormat(_Model):
    """``response_format.json_schema``: the JSON Schema the answer must follow (OpenAI's
    structured outputs; the Anthropic adapter sends it as ``output_config.format``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The format's name: letters, digits, '_' and '-', up to 64.",
    )
    description: str | None = Field(default=None, max_length=10_000)
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="A JSON Schema object."
    )
    strict: bool | None = Field(default=None, description="Enforce the schema exactly.")


class ResponseFormat(_Model):
    """What form the answer takes: free ``text`` (the default), any JSON object
    (``json_object``), or JSON following ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = Field(
        default=None, description="Required with type json_schema, and only then."
    )

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise PydanticCustomError(
                "response_format",
                'type json_schema needs json_schema: {"name": ..., "schema": {...}}',
            )
        if self.type != "json_schema" and self.json_schema is not None:
            raise PydanticCustomError(
                "response_format",
                "json_schema goes with type json_schema, not {type}",
                {"type": self.type},
            )
        return self


def _stop_list(value: Any) -> Any:
    """``stop`` as a list: one string is a list of one, and an empty list is no stop at all."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and not value:
        return None
    return value


StopSequence = Annotated[str, Field(min_length=1, max_length=1_000)]


class RequestIn(_Model):
    """One request of a batch."""

    custom_id: NulFree = Field(min_length=1, max_length=256, description="Unique within the batch.")
    input: list[EmbeddingText] | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="An embedding request's texts (instead of messages), for an embedding model.",
    )
    messages: list[Message] | None = Field(
        default=None,
        min_length=1,
        validate_default=True,
        description="A chat request's conversation (required unless input is given).",
    )
    dimensions: int | None = Field(
        default=None, ge=1, le=4096, description="Embedding length (embedding requests only)."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None,
        description="How the OpenAI surface writes the vectors (embedding requests only).",
    )
    model: NulFree | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A model of the catalog, or a route (a virtual model such as auto); "
        "left out: the team's or feature's default route.",
    )
    max_tokens: int = Field(default=256, ge=1, le=1_000_000)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Nucleus sampling: the probability mass kept."
    )
    stop: Annotated[list[StopSequence] | None, BeforeValidator(_stop_list)] = Field(
        default=None,
        max_length=4,
        description="Up to 4 sequences (or one string) the answer ends before "
        "(Anthropic's stop_sequences).",
    )
    seed: int | None = Field(
        default=None,
        ge=-INT64,
        lt=INT64,
        description="Best-effort determinism (OpenAI-format providers; others have none).",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Sample from the k likeliest tokens (Anthropic-format providers only; "
        "an OpenAI-format model refuses it).",
    )
    response_format: ResponseFormat | None = Field(
        default=None,
        description='{"type": "text"}, {"type": "json_object"}, or {"type": "json_schema", '
        '"json_schema": {"name", "schema", "strict"}}.',
    )
    priority: Priority | None = Field(default=None, description="Defaults to the job's priority.")
    trace_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="Groups the requests of one run (an agent loop) under the trace ceiling.",
    )
    metadata: dict[str, MetadataValue] | None = None
    cache: CacheControl | None = Field(
        default=None, description="Per-request cache control; the team's policy by default."
    )

    @field_validator("messages")
    @classmethod
    def _one_kind(cls, messages: list[Message] | None, info: ValidationInfo) -> Any:
        """Named on ``messages`` (``input`` is validated first): the field most requests miss."""
        embedding = info.data.get("input") is not None
        if messages is None and not embedding and "input" in info.data:
            # "missing", as when the field was simply required: the message a client expects
            raise PydanticCustomError(
                "missing", "Field required (or input, for an embedding request)"
            )
        if messages is not None and embedding:
            raise ValueError("give messages (a chat request) or input (an embedding one), not both")
        return messages

    @model_validator(mode="after")
    def _embedding_fields(self) -> RequestIn:
        if self.input is None and (self.dimensions or self.encoding_format):
            raise ValueError("dimensions and encoding_format are for embedding requests (input)")
        if self.input is not None:
            chat_only = [name for name in CHAT_PARAMETERS if getattr(self, name) is not None]
            if chat_only:
                raise ValueError(
                    f"{', '.join(chat_only)}: for chat requests (messages), not embedding "
                    "requests (input); leave it out"
                )
        return self

    def chat_parameters(self) -> dict[str, Any]:
        """The sampling and output parameters that are set, as the payload stores them: ``stop``
        a list, ``response_format`` without its defaults; ``{"type": "text"}``, the default
        form, left out like an absent one (the same answer, so the same cache key)."""
        found: dict[str, Any] = {}
        for name in CHAT_PARAMETERS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, ResponseFormat):
                if value.type == "text":
                    continue
                value = value.model_dump(exclude_none=True, by_alias=True)
            found[name] = value
        return found

    @property
    def is_embedding(self) -> bool:
        return self.input is not None


class JobCreate(_Model):
    """``POST /v1/jobs``: a batch of requests for one feature."""

    feature: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    priority: Priority = Priority.MEDIUM
    webhook_url: WebhookUrl | None = None
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: ["job.finished"],
        min_length=1,
        description="What webhook_url receives: job.finished when the job ends, and/or "
        "request.finished as each request ends.",
    )
    completion_window: str = Field(
        default="24h",
        pattern=r"^[1-9][0-9]{0,5}(s|m|h|d)$",
        description="Requests not started within this (e.g. 30m, 24h, 7d) end as expired.",
    )
    metadata: dict[str, MetadataValue] | None = None
    requests: list[RequestIn]

    @property
    def completion_window_s(self) -> int:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.completion_window[-1]]
        return int(self.completion_window[:-1]) * unit

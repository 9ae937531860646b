"""What the app needs from a wire format: the shared request type, error type and adapter protocol.

The request pipeline in ``app.py`` is generic; each format module (``openai_format``,
``anthropic_format``) supplies parsing, bodies and headers, never HTTP handling.

The pacing of streamed text (:func:`text_pieces`, :func:`paced`) is shared here too, so both
formats cut an answer into the same pieces and pause between them alike.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workers.simulator.limits import Refusal, WindowState
from workers.simulator.settings import Wire
from workers.simulator.text import Completion

_STREAM_WORDS_PER_PIECE = 4


class SimError(Exception):
    """A response other than 200, described in format-neutral terms and rendered by an adapter.

    ``type`` and ``code`` are the OpenAI body fields when they differ from the status default.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code, self.type, self.retry_after_s = code, type, retry_after_s


@dataclass(frozen=True, slots=True)
class EmbeddingAsk:
    """What an embeddings request asks for: its inputs (texts or token arrays), in order."""

    inputs: tuple[str | list[int], ...]
    dimensions: int
    base64: bool


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    model: str
    max_tokens: int | None
    digest: bytes  # hash of model + prompt, the seed of the answer
    input_tokens: int
    stop: list[str] | None = None
    json_schema: dict | None = None  # a JSON answer: this schema's, or any object ({})
    stream: bool = False
    include_usage: bool = False
    last_user: str | None = None  # the final user turn's text, for recorded answers
    embedding: EmbeddingAsk | None = None  # an embeddings request: vectors, no text


class WireAdapter(Protocol):
    wire: Wire
    request_id_header: str
    default_outage_status: int
    injected_statuses: tuple[int, ...]  # picked from when error_rate fires

    def new_request_id(self) -> str: ...

    def check_auth(self, headers: Mapping[str, str], api_key: str) -> None: ...

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedRequest: ...

    def quota_error(self) -> SimError | None: ...

    def rate_limit_error(self, refusal: Refusal, model: str) -> SimError: ...

    def status_error(self, status: int) -> SimError: ...

    def error_payload(self, error: SimError, request_id: str) -> dict: ...

    def success_payload(self, request: ParsedRequest, completion: Completion) -> dict: ...

    def stream(
        self, request: ParsedRequest, completion: Completion, pause_s: float
    ) -> AsyncIterator[bytes]: ...

    def limit_headers(self, state: WindowState) -> dict[str, str]: ...

    def retry_headers(self, retry_after_s: float) -> dict[str, str]: ...


def text_pieces(text: str) -> list[str]:
    """``text`` cut into pieces of a few words each that join back to exactly ``text``."""
    words = text.split(" ") if text else []
    return [
        (" " if start else "") + " ".join(words[start : start + _STREAM_WORDS_PER_PIECE])
        for start in range(0, len(words), _STREAM_WORDS_PER_PIECE)
    ]


async def paced(pieces: list[str], pause_s: float) -> AsyncIterator[str]:
    """``pieces`` one by one, ``pause_s`` apart (no pause before the first)."""
    for i, piece in enumerate(pieces):
        if i and pause_s > 0:
            await asyncio.sleep(pause_s)
        yield piece


def random_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + os.urandom(nbytes).hex()


def decode_object(body: bytes) -> dict:
    """The JSON object in a request body, or a 400 saying why there is none."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimError(400, f"We could not parse the JSON body of your request. ({exc})") from exc
    if not isinstance(data, dict):
        raise SimError(400, "The request body must be a JSON object.")
    return data


def require(data: dict, field: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``data[field]`` if present and of ``kind`` (bools are not integers), else a 400."""
    if field not in data or data[field] is None:
        raise SimError(
            400,
            f"Missing required parameter: '{field}'.",
            param=field,
            code="missing_required_parameter",
        )
    return check_type(data, field, kind, what)


def check_type(data: dict, field: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise SimError(
            400,
            f"Invalid type for '{field}': expected {what}, but got {type(value).__name__}.",
            param=field,
            code="invalid_type",
        )
    return value

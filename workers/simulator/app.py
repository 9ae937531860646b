"""The simulator's HTTP app: one generic pipeline for both wire formats, plus control endpoints.

A call goes through the same steps in the same order as at a real provider: authentication,
validation, outage, quota, rate limit, injected error, latency, answer. The format adapters only
render; this module decides. Nothing blocks the event loop and nothing logs per request, because
the broker is benchmarked against this server.
"""

from __future__ import annotations

import asyncio
import json
import time

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from workers.providers.base import parse_retry_after
from workers.simulator import replay
from workers.simulator.anthropic_format import AnthropicFormat
from workers.simulator.embeddings import EmbeddingsFormat
from workers.simulator.faults import FaultPlan, malformed_body
from workers.simulator.limits import SlidingWindow, WindowState
from workers.simulator.openai_format import OpenAIFormat
from workers.simulator.settings import SimulatorSettings, Wire
from workers.simulator.stats import Stats
from workers.simulator.structured import complete_json
from workers.simulator.text import Completion, complete
from workers.simulator.wire import ParsedRequest, SimError, WireAdapter

JSON = "application/json"


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Simulator:
    """Runtime state of one server: current settings, fault plan, rate windows and counters."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.faults = FaultPlan(settings)
        self.stats = Stats()
        self.windows = {wire: SlidingWindow(settings.rate_window_s) for wire in Wire}

    @property
    def settings(self) -> SimulatorSettings:
        return self.faults.settings

    def configure(self, changes: dict) -> SimulatorSettings:
        """Apply a partial update; outage windows restart their clock when they are replaced."""
        settings = self.settings.updated(changes)
        if settings.rate_window_s != self.settings.rate_window_s:
            self.windows = {wire: SlidingWindow(settings.rate_window_s) for wire in Wire}
        self.faults.reconfigure(settings, outages_changed="outages" in changes)
        return settings

    def _recorded(self, parsed: ParsedRequest) -> Completion | None:
        settings = self.settings
        if settings.replay_path is None:
            return None
        table = replay.load(
            settings.replay_path, settings.replay_weak_column, settings.replay_strong_column
        )
        return replay.answer(
            table,
            parsed.model,
            parsed.last_user,
            settings.replay_strong_models,
            parsed.input_tokens,
            parsed.max_tokens,
        )

    def _window_state(self, wire: Wire) -> WindowState:
        settings = self.settings
        return self.windows[wire].state(time.monotonic(), settings.rpm, settings.tpm)

    async def handle(self, adapter: WireAdapter, request: Request) -> Response:
        request_id = adapter.new_request_id()
        wire = adapter.wire
        self.stats.arrived(wire)
        settings = self.settings
        model: str | None = None
        try:
            if settings.api_key is not None:
                adapter.check_auth(request.headers, settings.api_key)
            parsed = adapter.parse(await request.body(), request.headers)
            model = parsed.model
            outage = self.faults.outage(wire, model)
            if outage is not None:
                raise adapter.status_error(outage.status or adapter.default_outage_status)
            if settings.quota_exhausted and (quota := adapter.quota_error()) is not None:
                raise quota
            if parsed.embedding is not None:  # vectors, rendered by the format: no text
                completion = Completion("", parsed.input_tokens, 0, False, None)
            elif parsed.json_schema is not None:  # JSON asked for: no recorded prose
                completion = complete_json(
                    parsed.digest,
                    parsed.input_tokens,
                    parsed.max_tokens,
                    parsed.stop,
                    parsed.json_schema,
                )
            else:
                completion = self._recorded(parsed) or complete(
                    parsed.digest, parsed.input_tokens, parsed.max_tokens, parsed.stop
                )
            now = time.monotonic()
            window = self.windows[wire]
            refusal = window.try_admit(now, completion.total_tokens, settings.rpm, settings.tpm)
            if refusal is not None:
                raise adapter.rate_limit_error(refusal, model)
            state = window.state(now, settings.rpm, settings.tpm)
            failing = self.faults.roll_error()
            delay = self.faults.latency_s()
            if delay > 0:
                await asyncio.sleep(delay)
            if failing:
                raise adapter.status_error(self.faults.choose(adapter.injected_statuses))
        except SimError as error:
            return self._error(adapter, error, request_id, model)
        headers = {adapter.request_id_header: request_id, **adapter.limit_headers(state)}
        return self._answer(adapter, parsed, completion, headers)

    def _answer(
        self,
        adapter: WireAdapter,
        parsed: ParsedRequest,
        completion: Completion,
        headers: dict[str, str],
    ) -> Response:
        record = {
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
        }
        if parsed.stream:
            self.stats.record(adapter.wire, parsed.model, 200, **record)
            events = adapter.stream(parsed, completion, self.settings.stream_chunk_ms / 1000)
            return StreamingResponse(events, headers=headers, media_type="text/event-stream")
        payload = adapter.success_payload(parsed, completion)
        kind = self.faults.roll_malformed()
        if kind is None:
            body, content_type = _dumps(payload), JSON
        else:
            body, content_type = malformed_body(kind, payload)
        self.stats.record(adapter.wire, parsed.model, 200, malformed=kind, **record)
        return Response(body, 200, headers, media_type=content_type)

    def _error(
        self, adapter: WireAdapter, error: SimError, request_id: str, model: str | None
    ) -> Response:
        headers = {
            adapter.request_id_header: request_id,
            **adapter.limit_headers(self._window_state(adapter.wire)),
        }
        if error.retry_after_s is not None:
            retry = adapter.retry_headers(error.retry_after_s)
            headers.update(retry)
            self.stats.asked_to_wait(adapter.wire, parse_retry_after(retry) or 0.0)
        self.stats.record(adapter.wire, model, error.status)
        body = _dumps(adapter.error_payload(error, request_id))
        return Response(body, error.status, headers, media_type=JSON)


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    """A fresh simulator app; ``settings`` default to the ``BROKER_SIM_*`` environment."""
    sim = Simulator(settings if settings is not None else SimulatorSettings())
    openai_format, anthropic_format = OpenAIFormat(), AnthropicFormat()
    embeddings_format = EmbeddingsFormat()

    async def chat_completions(request: Request) -> Response:
        return await sim.handle(openai_format, request)

    async def embeddings(request: Request) -> Response:
        return await sim.handle(embeddings_format, request)

    async def messages(request: Request) -> Response:
        return await sim.handle(anthropic_format, request)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            sim.stats.reset()
        return JSONResponse(sim.stats.snapshot())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = json.loads(await request.body() or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                sim.configure(changes)
            except ValidationError as exc:
                errors = json.loads(exc.json(include_url=False, include_input=False))
                return JSONResponse({"error": "invalid settings", "details": errors}, 422)
            except ValueError as exc:
                return JSONResponse({"error": f"invalid JSON: {exc}"}, 400)
        return JSONResponse(sim.settings.model_dump(mode="json"))

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/_sim/stats", stats, methods=["GET", "DELETE"]),
            Route("/_sim/config", config, methods=["GET", "POST"]),
        ]
    )
    app.state.simulator = sim
    return app


def serve(
    settings: SimulatorSettings | None = None, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Run the simulator in the foreground until interrupted (access log off)."""
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_keep_alive=30,
    )

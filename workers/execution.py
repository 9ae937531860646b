"""Running one attempt: claim it, call the provider, record the outcome, free the slot.

Nothing a provider sends back may kill the worker: every failure becomes a recorded outcome
with a reason a person can act on. A stale or redelivered attempt is claimed by nobody and
does nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from broker.config import BrokerConfig, ProviderConfig
from broker.errors import ProviderError
from broker.store.transitions import Claimed, Outcome
from schedulers.capacity import release
from workers.providers import ProviderClient, completion_cost
from workers.recorder import Recorder

log = logging.getLogger(__name__)


class Executor:
    """Per-process resources for running attempts; safe to share across pool threads."""

    def __init__(self, config: BrokerConfig, recorder: Recorder, client: redis.Redis) -> None:
        self._config = config
        self._recorder = recorder
        self._redis = client
        self._clients: dict[str, ProviderClient] = {}
        self._lock = threading.Lock()

    def _client_for(self, provider: ProviderConfig) -> ProviderClient:
        with self._lock:
            client = self._clients.get(provider.name)
            if client is None:
                key = os.environ.get(provider.api_key_env) if provider.api_key_env else None
                client = self._clients[provider.name] = ProviderClient(provider, key)
            return client

    def run(self, request_id: str, attempt: int, provider_name: str) -> None:
        claimed = self._recorder.claim(request_id, attempt)
        if claimed is None:
            log.info("attempt %s/%d is stale or cancelled; skipped", request_id, attempt)
            release(self._redis, provider_name, request_id)
            return
        provider = self._config.provider(provider_name)
        try:
            outcome = self._call(claimed, provider)
            recorded = self._recorder.finish(claimed, outcome)
            if not recorded:
                log.warning("attempt %s/%d was already finished", request_id, attempt)
        finally:
            release(self._redis, provider.name, request_id)

    def _call(self, claimed: Claimed, provider: ProviderConfig) -> Outcome:
        model = self._config.model(claimed.model)
        started = time.monotonic()

        def outcome(**fields) -> Outcome:
            latency_ms = int((time.monotonic() - started) * 1000)
            return Outcome(
                model=model.name, provider=provider.name, latency_ms=latency_ms, **fields
            )

        try:
            completion = self._client_for(provider).complete(model, claimed.payload)
        except ProviderError as exc:
            log.info("request %s failed on %s: %s", claimed.request_id, provider.name, exc.code)
            return outcome(error_code=exc.code, error=str(exc))
        except Exception as exc:  # a bug must fail this request, never the worker
            log.exception("request %s: unexpected error", claimed.request_id)
            return outcome(
                error_code="internal_error", error=f"internal error: {type(exc).__name__}"
            )
        return outcome(
            output=completion.text,
            finish_reason=completion.finish_reason,
            input_tokens=completion.input_tokens,
            cached_input_tokens=completion.cached_input_tokens,
            output_tokens=completion.output_tokens,
            cost_micros=completion_cost(completion, model),
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

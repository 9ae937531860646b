"""Semantic matching in the request path: look up at submission, learn when an answer lands.

Only the final user turn is compared by meaning. Everything else (the cache scope, the model,
the system prompt, earlier turns and every parameter) must match exactly: it is hashed into
the *semantic scope*, and a search never leaves its scope. A candidate is served only when the
guard finds no meaning-flipping difference and the calibrated rule's estimated wrong-hit rate
fits the operator's ``max_wrong_hit_rate`` (:mod:`.decision`); it is then answered from the
exact entry the candidate points at, which must still be there and well formed.

Submission embeds the final user turns of the requests it could not answer (one batch),
searches, and, for the misses that may store, leaves a *pending* entry (the vector, text,
scope and exact key) under the request id. The worker that lands the answer moves it into the
index (:meth:`SemanticCache.learn`), so no worker loads the embedding model.

Never a point of failure, never in the way: the model loads in the background on the first lookup
(:meth:`SemanticCache.warm`; ``GET /healthz`` says ``semantic_cache: ready`` once it has), and
until then every lookup is a miss that learns nothing, so no submission waits for a model to
load, and processes that never see a semantic policy never load it. Without the embedding model installed, or with Redis failing, the same (logged once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from broker import redis_keys
from broker.cache.semantic import CacheUnavailable, CalibrationError, SemanticCacheError
from broker.cache.semantic.decision import Calibration
from broker.cache.semantic.index import SemanticIndex
from broker.embeddings import Embedder, EmbedderError, EmbedderUnavailable

log = logging.getLogger(__name__)

_PENDING_TTL_S = 86_400 + 3_600  # a day's completion window and an hour


def split_final_turn(
    feature: str, scope: str, model: str, payload: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(semantic scope ``<feature>|<cache scope>|<hash of the rest>``, final user turn), or
    None when the request does not end in a user turn."""
    messages = payload.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return None
    text = messages[-1].get("content")
    if not isinstance(text, str) or not text.strip():
        return None
    rest = {k: v for k, v in payload.items() if k != "messages"}
    canonical = json.dumps(
        {"v": 1, "scope": scope, "model": model, "before": messages[:-1], "params": rest},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f"{feature}|{scope}|{hashlib.sha256(canonical.encode()).hexdigest()[:32]}", text


def normalised(text: str) -> str:
    """The text without what never changes a question's meaning: letter case, runs of white
    space, and punctuation at its end ("How do I reset my password?" = "how do i reset my
    password")."""
    return " ".join(text.casefold().split()).rstrip(" ?!.")


@dataclass(frozen=True, slots=True)
class Query:
    request_id: str
    semantic_scope: str
    text: str
    exact_key: str
    max_wrong_hit_rate: float
    store: bool
    ttl_s: int


@dataclass(frozen=True, slots=True)
class Match:
    exact_key: str
    score: float
    estimated_false_hit_rate: float


class SemanticCache:
    def __init__(
        self,
        client: redis.Redis,
        embedder: Embedder | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """``embedder`` None: this process only learns and purges (a worker, the admin API)."""
        self._redis = client
        self._embedder = embedder
        self._calibration = calibration
        self._index = SemanticIndex(client, prefix=redis_keys.semantic_prefix())
        self._warned = False
        self._disabled = embedder is None
        self._state = "off" if embedder is None else "cold"
        self._state_lock = threading.Lock()

    @property
    def state(self) -> str:
        """off (no embedder here), cold, loading, ready or unavailable."""
        return self._state

    def warm(self) -> None:
        """Load the model and the calibration in the background, once."""
        with self._state_lock:
            if self._state != "cold":
                return
            self._state = "loading"
        threading.Thread(target=self._load, name="semantic-warm", daemon=True).start()

    def _load(self) -> None:
        try:
            load = getattr(self._embedder, "load", None)
            if load is not None:
                load()
            self._rule()
        except (EmbedderError, SemanticCacheError, OSError) as exc:
            self._state = "unavailable"
            self._disabled = True
            # not installed is a choice (the embeddings extra), not a fault
            level = logging.INFO if isinstance(exc, EmbedderUnavailable) else logging.WARNING
            log.log(level, "semantic cache off in this process, serving exact matches: %s", exc)
            return
        self._state = "ready"

    def _rule(self) -> Calibration:
        if self._calibration is None:
            assert self._embedder is not None
            self._calibration = Calibration.load(self._embedder.name)
        return self._calibration

    def lookup(self, queries: Sequence[Query]) -> dict[str, Match]:
        """Request id → the cached request its final turn matches, for those that match;
        leaves pending entries for the misses that may store."""
        if not queries or self._disabled:
            return {}
        if self._state != "ready":  # loading in the background: a miss, nothing learned
            self.warm()
            return {}
        try:
            rule = self._rule()
            vectors = self._embedder.embed([q.text for q in queries])
        except (EmbedderUnavailable, CalibrationError) as exc:  # not installed: stays off
            self._disabled = True
            log.info("semantic cache off in this process, serving exact matches: %s", exc)
            return {}
        except (EmbedderError, SemanticCacheError, OSError) as exc:
            self._warn(exc)
            return {}
        found: dict[str, Match] = {}
        pending = []
        try:
            for query, vector in zip(queries, vectors):
                match = self._best(rule, query, vector)
                if match is not None:
                    found[query.request_id] = match
                elif query.store:
                    pending.append((query, vector))
            self._remember(pending)
        except (CacheUnavailable, redis.RedisError) as exc:
            self._warn(exc)
        return found

    def _best(self, rule: Calibration, query: Query, vector: np.ndarray) -> Match | None:
        for payload, cosine, cached in self._index.nearest(query.semantic_scope, vector, k=3):
            try:
                entry = json.loads(payload)
                key, text = entry["k"], entry["t"]
            except (ValueError, KeyError, TypeError):
                continue  # a corrupt entry is never served
            if normalised(query.text) == normalised(text):
                return Match(key, 1.0, 0.0)  # the same words: case, spacing, end punctuation
            decision = rule.decide(
                query.text, text, cosine, query.max_wrong_hit_rate, vectors=(vector, cached)
            )
            if decision.hit:
                return Match(key, decision.score, decision.estimated_false_hit_rate)
        return None

    def _remember(self, pending: Sequence[tuple[Query, np.ndarray]]) -> None:
        if not pending:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for query, vector in pending:
                pipe.hset(
                    redis_keys.semantic_pending(query.request_id),
                    mapping={
                        "scope": query.semantic_scope,
                        "text": query.text,
                        "key": query.exact_key,
                        "ttl": query.ttl_s,
                        "vec": np.asarray(vector, dtype="<f4").tobytes(),
                    },
                )
                pipe.expire(redis_keys.semantic_pending(query.request_id), _PENDING_TTL_S)
            pipe.execute()

    def learn(self, request_id: str) -> bool:
        """Index the final turn of a request whose answer was just kept (see the module doc)."""
        key = redis_keys.semantic_pending(request_id)
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.delete(key)
                entry, _ = pipe.execute()
            if not entry:
                return False
            vector = np.frombuffer(entry[b"vec"], dtype="<f4")
            payload = json.dumps({"k": entry[b"key"].decode(), "t": entry[b"text"].decode()})
            self._index.add(entry[b"scope"].decode(), vector, payload, int(entry[b"ttl"]))
        except (CacheUnavailable, redis.RedisError, KeyError, ValueError) as exc:
            self._warn(exc)
            return False
        return True

    def purge(self, team: str | None = None, feature: str | None = None) -> int:
        """Drop the indexed turns of a team's feature, a team, a feature, or all; returns how
        many keys were deleted."""
        if team is None:
            return self._index.purge(f"{feature}|" if feature else "")
        prefixes = [f"team:{team}|", f"user:{team}:"]
        if feature is not None:
            return sum(self._index.purge(f"{feature}|{p}") for p in prefixes)
        scopes = set()
        for key in self._redis.scan_iter(match=f"{redis_keys.semantic_prefix()}:*", count=1000):
            scope = key.decode()[len(redis_keys.semantic_prefix()) + 1 :].rsplit(":", 1)[0]
            _, _, rest = scope.partition("|")
            if any(rest.startswith(p) for p in prefixes):
                scopes.add(scope)
        return sum(self._index.purge(scope) for scope in sorted(scopes))

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("semantic cache unavailable, serving exact matches only: %s", exc)
            self._warned = True
        else:
            log.debug("semantic cache unavailable: %s", exc)

"""Answering a batch's requests from the response cache at submission, before anything is queued.

A request's cache token (key, TTL, read/store, under the team's and feature's policy and the
request's own ``cache`` control) goes on its row and queue entry; a request whose answer is
already cached, exactly (:mod:`broker.cache.exact`) or, under a semantic policy, by its final
user turn (:mod:`broker.cache.semantic`), is written as a hit in its row instead. The
:class:`~broker.submission.submitter.Submitter` holds one :class:`KnownAnswers` and calls it
for each part of a batch; it is apart because it reads only the cache, never the store or the
queues.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from broker.cache.exact import ExactCache, request_key, scope_of
from broker.cache.semantic.serving import Query, SemanticCache, split_final_turn
from broker.config.broker_toml import BrokerConfig
from broker.schemas.http import RequestIn
from broker.store.cache_hits import Hit, hit_fields


class KnownAnswers:
    """The cache's side of a submission: tokens for new requests, hits for known ones."""

    def __init__(
        self, config: BrokerConfig, client: redis.Redis, semantic: SemanticCache | None
    ) -> None:
        self._config = config
        self._cache = ExactCache(client)
        self._semantic = semantic

    def token(
        self, team_id: str, feature: str, request: RequestIn, model: str, payload: dict
    ) -> str | None:
        """``<key>/<ttl_s>/<r|w|rw>`` for a cacheable request (see
        :class:`~broker.queues.QueueEntry`), or None when its policy, scope or cache control
        leaves it out of the cache."""
        policy = self._config.cache.policy(team_id, feature)
        scope = scope_of(policy, team_id, feature, request.metadata)
        control = request.cache
        read = control is None or control.read
        store = control is None or control.store
        if scope is None or not (read or store):
            return None
        ttl = min(control.ttl_s or policy.ttl_s, policy.ttl_s) if control else policy.ttl_s
        flags = ("r" if read else "") + ("w" if store else "")
        # How the vectors are written back is not part of the answer: both share one entry.
        asked = {k: v for k, v in payload.items() if k != "encoding_format"}
        return f"{request_key(scope, model, asked)}/{ttl}/{flags}"

    def answer(
        self,
        job_id: str,
        team_id: str,
        feature: str,
        requests: Sequence[RequestIn],
        rows: list[dict],
        entries: list[tuple],
        now,
    ) -> list[Hit]:
        """Write the requests the cache can answer now as hits (in ``rows``, in place): exact
        matches, then, where the policy is semantic, matches of the final user turn.
        ``requests``, ``rows`` and ``entries`` are read side by side."""
        keys = [e.cache_key for _, e in entries if e.cache_read]
        if not keys:
            return []
        found = {key: ("exact", answer) for key, answer in self._cache.get_many(keys).items()}
        by_request = self._semantic_matches(team_id, feature, requests, rows, entries, found)
        if not found and not by_request:
            return []
        hits = []
        sample = next(iter({**found, **by_request}.values()))[1]
        blank = dict.fromkeys(hit_fields("exact", sample, now))
        for row, (_, entry) in zip(rows, entries):
            for name, value in blank.items():  # one insert for all: every row the same keys
                row.setdefault(name, value)
            known = by_request.get(row["id"]) or (
                found.get(entry.cache_key) if entry.cache_read else None
            )
            if known is not None:
                kind, answer = known
                row.update(hit_fields(kind, answer, now))
                hits.append(
                    Hit(
                        row["id"],
                        job_id,
                        kind,
                        answer,
                        row["team_id"],
                        row["feature"],
                        row["trace_id"],
                    )
                )
        return hits

    def _semantic_matches(
        self,
        team_id: str,
        feature: str,
        requests: Sequence[RequestIn],
        rows: list[dict],
        entries: list[tuple],
        exact: dict,
    ) -> dict[str, tuple]:
        """Request id → ("semantic", answer) for requests of a semantic policy that no exact
        entry answers and whose final user turn matches a cached one (:mod:`broker.cache.semantic`)."""
        policy = self._config.cache.policy(team_id, feature)
        if self._semantic is None or policy.mode != "semantic":
            return {}
        queries = []
        for row, request, (_, entry) in zip(rows, requests, entries):
            if not entry.cache_read or entry.cache_key in exact:
                continue
            scope = scope_of(policy, team_id, feature, request.metadata)
            split = (
                split_final_turn(feature, scope, row["model"], row["payload"]) if scope else None
            )
            if split is not None:
                queries.append(
                    Query(
                        row["id"],
                        *split,
                        entry.cache_key,
                        policy.max_wrong_hit_rate,
                        entry.cache_store,
                        entry.cache_ttl_s,
                    )
                )
        matches = self._semantic.lookup(queries)
        answers = self._cache.get_many(m.exact_key for m in matches.values())
        return {
            rid: ("semantic", answers[m.exact_key])
            for rid, m in matches.items()
            if m.exact_key in answers
        }

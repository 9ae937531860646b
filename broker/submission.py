"""Turning a validated batch into Job and Request rows and queue entries, all or nothing.

The rows are bulk-inserted in one transaction; the queue push happens inside it, so a Redis
failure rolls the rows back. Validation happens before anything is written: a rejected
submission leaves no rows and no queue entries. A batch read from an uploaded file
(:meth:`Submitter.submit_stream`) is written a slice at a time inside that one transaction, so
the API holds one slice of a 200 MB file, not all of it.

With ``redact`` (``BROKER_REDACT``) each message's content is stored with e-mail addresses,
phone and card numbers replaced (:mod:`broker.telemetry.redaction`); the worker sends the stored payload,
so the provider gets the redacted prompt too and the original is kept nowhere.

A request whose answer is already in the response cache (:mod:`broker.cache.exact`, under the
team's and feature's policy and the request's own ``cache`` control) is written as a hit at
once, in the same transaction, and never queued: it reserves and charges nothing. The others
carry their cache token (key, TTL, read/store) on their row and queue entry, for the scheduler
(hits found later, single-flight) and the worker (keeping the answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

import redis
from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from broker import queues
from broker.cache.exact import ExactCache, request_key, scope_of
from broker.cache.semantic.serving import Query, SemanticCache, split_final_turn
from broker.config.broker_toml import BrokerConfig, TeamConfig
from broker.config.settings import Settings
from broker.embeddings.local import LocalEmbedder
from broker.errors import InvalidRequest, PayloadTooLarge, ServiceUnavailable, TooManyRequests
from broker.ids import new_job_id, request_id
from broker.money import format_usd
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate, RequestIn
from broker.states import JobStatus, Priority, RequestStatus
from broker.store import Database, Job, Request
from broker.store.cache_hits import Hit, count_hits, hit_fields
from broker.store.models import utcnow
from broker.telemetry import metrics, redaction
from broker.webhooks import ssrf
from schedulers.budgets import BudgetLimits, Budgets
from schedulers.ratelimits import RateLimits
from schedulers.tiers.choose import TierChooser, TierDecision
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


@dataclass(frozen=True)
class Stream:
    """A batch's requests as its source yields them (:meth:`Submitter.submit_stream`): how
    many, the :func:`tokens_of` them all (for admission), and the requests, in order."""

    count: int
    tokens: int
    requests: Iterable[RequestIn]


@dataclass
class Prepared:
    """Part of a batch ready to write: request rows, queue entries, and the cache's hits."""

    rows: list[dict]
    entries: list[tuple[Priority, QueueEntry]]
    hits: list[Hit]


#: Rows per INSERT of a batch's requests (one transaction either way).
INSERT_SLICE = 2_000


@dataclass(frozen=True)
class Submitter:
    db: Database
    redis: redis.Redis
    config: BrokerConfig
    max_batch_size: int = 50_000
    submissions_per_minute: int = 0  # per API key; 0: no limit (the API passes its setting)
    redact: bool = False  # store (and so send) prompts with personal data replaced
    semantic: SemanticCache | None = None  # default: the local embedder, if a policy asks

    @classmethod
    def from_settings(
        cls, settings: Settings, db: Database, client: redis.Redis, config: BrokerConfig
    ) -> Submitter:
        """The API's submitter: batch size, submission rate and redaction from ``settings``."""
        return cls(
            db,
            client,
            config,
            max_batch_size=settings.max_batch_size,
            submissions_per_minute=settings.submissions_per_minute,
            redact=settings.redact,
        )

    def validate(self, batch: JobCreate) -> None:
        """Refuse what cannot run, naming the request and field to fix."""
        self._check_size(len(batch.requests))
        if batch.webhook_url:
            check_webhook_url(batch.webhook_url, self.config.webhooks.allow_private_hosts)
        seen: set[str] = set()
        # A batch names a few models many times: each is looked up once (None: a route).
        limits: dict[str, int | None] = {}
        for i, request in enumerate(batch.requests):
            if request.custom_id in seen:
                where = f"requests[{i}]"
                raise InvalidRequest(
                    f"duplicate custom_id {request.custom_id!r} at {where}",
                    field=f"{where}.custom_id",
                )
            seen.add(request.custom_id)
            model = request.model
            if request.is_embedding:
                self._check_embedding(model, f"requests[{i}]")
                continue
            if model is None:
                continue  # resolved per team at submission (a default route's tier)
            if model not in limits:
                limits[model] = self._chat_limit(model, f"requests[{i}]")
            limit = limits[model]
            if limit is None:
                continue  # a route: resolved per team at submission (one of its tiers)
            if request.max_tokens > limit:
                self._check_max_tokens(model, request.max_tokens, f"requests[{i}]")
            self._check_parameters(model, request, f"requests[{i}]")

    def _chat_limit(self, model: str, where: str) -> int | None:
        """The ``max_tokens`` limit of chat model ``model``, None for a route; refuses a name
        that is neither, or an embedding model."""
        if self.config.route(model) is not None:
            return None
        if not self.config.has_model(model):
            routes = self.config.route_names()
            raise InvalidRequest(
                f"unknown model {model!r} at {where}; known models: "
                + ", ".join(self.config.model_names())
                + (f"; routes: {', '.join(routes)}" if routes else ""),
                field=f"{where}.model",
            )
        if reason := self.config.wrong_kind(model, "chat"):
            raise InvalidRequest(f"model at {where}: {reason}", field=f"{where}.model")
        return self.config.model(model).max_output

    def _check_size(self, count: int) -> None:
        if not count:
            raise InvalidRequest("the batch is empty: send at least one request", field="requests")
        if count > self.max_batch_size:
            raise PayloadTooLarge(
                f"the batch has {count} requests; the limit is {self.max_batch_size}",
                field="requests",
            )

    def _check_parameters(self, model: str, request: RequestIn, where: str) -> None:
        if (refused := unhonoured(self.config, model, request)) is not None:
            raise InvalidRequest(
                f"{refused.param} at {where} cannot go to model {model!r}: {refused.reason}",
                field=f"{where}.{refused.param}",
            )

    def _check_embedding(self, model: str | None, where: str) -> None:
        """An embedding request names an embedding model of the catalog (routes are chat)."""
        allowed = ", ".join(self.config.model_names("embedding")) or "none configured"
        if model is None or not self.config.has_model(model):
            asked = (
                "no model"
                if model is None
                else f"{model!r} is a route of chat models"
                if self.config.route(model) is not None
                else f"unknown model {model!r}"
            )
            raise InvalidRequest(
                f"{asked} at {where}; an embedding request needs an embedding model: {allowed}",
                field=f"{where}.model",
            )
        if reason := self.config.wrong_kind(model, "embedding"):
            raise InvalidRequest(f"model at {where}: {reason}", field=f"{where}.model")

    def _check_max_tokens(self, model: str, max_tokens: int, where: str) -> None:
        limit = self.config.model(model).max_output
        if max_tokens > limit:
            raise InvalidRequest(
                f"max_tokens {max_tokens} at {where} is over {model}'s limit of {limit}",
                field=f"{where}.max_tokens",
            )

    def resolve_model(
        self, team_id: str, feature: str, request: RequestIn, messages: list[dict], where: str
    ) -> tuple[str, TierDecision | None]:
        """The catalog model a request runs on, and the route's decision when it named one
        (or left ``model`` out and its team or feature has a default route)."""
        route = (
            self.config.route(request.model)
            if request.model is not None
            else self.config.default_route(team_id, feature)
        )
        if route is None and request.model is None:
            raise InvalidRequest(
                f"no model at {where}, and team {team_id!r} (feature {feature!r}) has no default "
                f"route; name a model ({', '.join(self.config.model_names())}) or a route "
                f"({', '.join(self.config.route_names()) or 'none configured'})",
                field=f"{where}.model",
            )
        if route is None:
            return request.model, None
        decision = self._tiers.choose(
            route, team_id, feature, messages, request.max_tokens, request.metadata
        )
        self._check_max_tokens(decision.model, request.max_tokens, where)
        self._check_parameters(decision.model, request, where)
        return decision.model, decision

    def __post_init__(self) -> None:
        # Frozen: set once here. Both only read and write Redis (and the budget limits table).
        object.__setattr__(self, "_limits", RateLimits(self.redis, self.config))
        budgets = Budgets(self.redis, self.db, self.config, BudgetLimits(self.db, self.config))
        object.__setattr__(self, "_budgets", budgets)
        object.__setattr__(self, "_cache", ExactCache(self.redis))
        object.__setattr__(self, "_tiers", TierChooser())
        if self.semantic is None and any(
            p.mode == "semantic" for p in (self.config.cache, *self.config.cache.policies)
        ):
            object.__setattr__(self, "semantic", SemanticCache(self.redis, LocalEmbedder.shared()))

    def cache_token(
        self, team_id: str, feature: str, request: RequestIn, model: str, payload: dict
    ) -> str | None:
        """``<key>/<ttl_s>/<r|w|rw>`` for a cacheable request (see :class:`QueueEntry`), or
        None when its policy, scope or cache control leaves it out of the cache."""
        policy = self.config.cache.policy(team_id, feature)
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

    def admit(
        self,
        team: TeamConfig,
        batch: JobCreate,
        payloads: Sequence[dict],
        key_sha256: str | None = None,
    ) -> None:
        """Refuse with 429 what a team may not submit now: over the key's submissions per
        minute, over its runaway guard (requests or tokens per minute, the team's or the
        feature's), or, under the ``reject`` budget policy, into a budget that is already
        spent. ``payloads``: the requests' :func:`payload_of`, in order."""
        tokens = sum(tokens_of(r, payload) for r, payload in zip(batch.requests, payloads))
        self._admit(team, batch.feature, len(batch.requests), tokens, key_sha256)

    def _admit(
        self, team: TeamConfig, feature: str, count: int, tokens: int, key_sha256: str | None
    ) -> None:
        try:
            if key_sha256 is not None and self.submissions_per_minute:
                self._admit_key(key_sha256)
            wait = self._limits.admit(team.id, feature, count, tokens)
            if wait is not None:
                raise TooManyRequests(
                    f"team {team.id!r} (feature {feature!r}) is over its submission rate "
                    f"limit; retry in {wait:.0f} s",
                    type_="rate_limited",
                    retry_after=wait,
                )
            if team.budget_policy != "reject":
                return
            scopes = self._budgets.scopes(team.id, feature, None)
            state = self._budgets.snapshot(scopes)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the queue (Redis) is unreachable: {exc}") from exc
        for scope in scopes:
            spent, reserved = state[scope.key]
            if spent + reserved >= scope.limit:
                assert scope.end is not None  # team and feature budgets have windows
                raise TooManyRequests(
                    f"budget {scope.label} is spent: {format_usd(spent)} spent and "
                    f"{format_usd(reserved)} reserved of {format_usd(scope.limit)}; it renews at "
                    f"{scope.end.isoformat()}",
                    type_="budget_exceeded",
                    retry_after=(scope.end - utcnow()).total_seconds(),
                )

    def _admit_key(self, key_sha256: str) -> None:
        per_minute = self.submissions_per_minute
        wait = self._limits.admit_key(key_sha256, per_minute)
        if wait is not None:
            raise TooManyRequests(
                f"this API key is over its {per_minute} submissions per minute "
                f"(submissions_per_minute); retry in {max(1, round(wait))} s",
                type_="rate_limited",
                retry_after=wait,
            )

    def submit(
        self,
        team: TeamConfig,
        batch: JobCreate,
        key_sha256: str | None = None,
        *,
        surface: str | None = None,
        surface_meta: dict | None = None,
        streamed: bool = False,
    ) -> Job:
        """Validate, admit and write ``batch``; ``key_sha256`` (the caller's key's digest)
        counts it against that key's submissions per minute. ``surface`` and ``surface_meta``
        record the drop-in SDK surface it came through (:mod:`broker.dropin`); ``streamed``
        marks requests whose caller reads the answer as it is written."""
        self.validate(batch)
        payloads = [payload_of(request, self.redact) for request in batch.requests]
        self.admit(team, batch, payloads, key_sha256)
        job = self._job(team, batch, len(batch.requests), surface, surface_meta)
        # Prepared before the transaction: cache lookups (and embeddings) hold no lock.
        prepared = self._prepare(job, batch, batch.requests, payloads, 0)
        if streamed:
            for row in prepared.rows:
                row["streamed"] = True
        return self._write(job, team.id, [prepared])

    def submit_stream(
        self,
        team: TeamConfig,
        batch: JobCreate,
        stream: Stream,
        key_sha256: str | None = None,
        *,
        surface: str | None = None,
        surface_meta: dict | None = None,
    ) -> Job:
        """:meth:`submit` for a batch too large to hold (an uploaded file of up to 200 MB):
        ``batch`` gives the job's fields, ``stream`` its requests, each already validated by
        the caller (:meth:`validate` of a batch of one), read once, a slice at a time. Each
        slice's rows are written before the next is read, in the one transaction, so memory
        holds one slice, not the batch."""
        self._check_size(stream.count)
        if batch.webhook_url:
            check_webhook_url(batch.webhook_url, self.config.webhooks.allow_private_hosts)
        self._admit(team, batch.feature, stream.count, stream.tokens, key_sha256)
        job = self._job(team, batch, stream.count, surface, surface_meta)

        def parts() -> Iterator[Prepared]:
            seq, requests = 0, iter(stream.requests)
            while chunk := list(islice(requests, INSERT_SLICE)):
                payloads = [payload_of(request, self.redact) for request in chunk]
                yield self._prepare(job, batch, chunk, payloads, seq)
                seq += len(chunk)
            if seq != stream.count:
                raise InvalidRequest(
                    f"the batch held {seq} requests, not the {stream.count} it was read with"
                )

        return self._write(job, team.id, parts())

    def _job(
        self,
        team: TeamConfig,
        batch: JobCreate,
        count: int,
        surface: str | None,
        surface_meta: dict | None,
    ) -> Job:
        now = utcnow()
        return Job(
            id=new_job_id(),
            team_id=team.id,
            feature=batch.feature,
            priority=batch.priority,
            status=JobStatus.QUEUED,
            webhook_url=batch.webhook_url,
            webhook_events=list(batch.webhook_events) if batch.webhook_url else None,
            metadata_=batch.metadata,
            n_total=count,
            n_succeeded=0,
            n_failed=0,
            n_cancelled=0,
            n_expired=0,
            input_tokens=0,
            output_tokens=0,
            cost_micros=0,
            created_at=now,
            expires_at=now + timedelta(seconds=batch.completion_window_s),
            surface=surface,
            surface_meta=surface_meta,
        )

    def _prepare(
        self,
        job: Job,
        batch: JobCreate,
        requests: Sequence[RequestIn],
        payloads: Sequence[dict],
        first_seq: int,
    ) -> Prepared:
        """The rows and queue entries of ``requests`` (numbered from ``first_seq``), with those
        the cache answers now written as hits."""
        team_id, now = job.team_id, job.created_at
        queued = int(now.timestamp() * 1000)
        rows, entries = [], []
        for seq, (request, payload) in enumerate(zip(requests, payloads), start=first_seq):
            rid = request_id(job.id, seq)
            priority = request.priority or batch.priority
            model, decision = self.resolve_model(
                team_id, batch.feature, request, payload.get("messages", []), f"requests[{seq}]"
            )
            max_output = 0 if request.is_embedding else request.max_tokens
            token = self.cache_token(team_id, batch.feature, request, model, payload)
            rows.append(
                {
                    "id": rid,
                    "job_id": job.id,
                    "seq": seq,
                    "team_id": team_id,
                    "feature": batch.feature,
                    "custom_id": request.custom_id,
                    "payload": payload,
                    "model": model,
                    "route": decision.route if decision else None,
                    "route_decision": decision.as_dict() if decision else None,
                    "trace_id": request.trace_id,
                    "priority": priority.value,
                    "status": RequestStatus.QUEUED.value,
                    "attempts": 0,
                    "metadata": request.metadata,
                    "cache": token,
                    "created_at": now,
                }
            )
            entry = QueueEntry(
                rid,
                model,
                queues.payload_input_bound(payload),
                max_output,
                queued,
                batch.feature,
                request.trace_id or "-",
                cache=token or "-",
                route=decision.route if decision else "-",
            )
            entries.append((priority, entry))
        hits = self._answer_known(job.id, team_id, batch, rows, entries, now)
        return Prepared(rows, entries, hits)

    def _write(self, job: Job, team_id: str, parts: Iterable[Prepared]) -> Job:
        """Insert the job and its parts' rows in one transaction, and queue what the cache did
        not answer; a part is dropped (its payloads freed) once its rows are written."""
        entries: list[tuple[Priority, QueueEntry]] = []
        hits: list[Hit] = []
        try:
            with self.db.session() as session:
                session.add(job)
                session.flush()
                for part in parts:
                    for start in range(0, len(part.rows), INSERT_SLICE):
                        # In slices: the driver's parameters (each payload as JSON text) exist
                        # for one slice at a time, not for the whole batch at once.
                        rows = part.rows[start : start + INSERT_SLICE]
                        session.execute(insert(Request.__table__), rows)
                    answered = {h.request_id for h in part.hits}
                    entries.extend(e for e in part.entries if e[1].request_id not in answered)
                    hits.extend(part.hits)
                    del part
                if hits:
                    count_hits(session, job.id, hits)
                    session.refresh(job)  # the counters (and the end, if all were known)
                queues.push(self.redis, team_id, entries)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the queue (Redis) is unreachable: {exc}") from exc
        except SQLAlchemyError as exc:
            raise ServiceUnavailable(
                f"the result store is unavailable: {exc.__class__.__name__}"
            ) from exc
        metrics.count_hits(
            self.redis, ((h.kind, h.answer.model, h.answer.cost_micros) for h in hits)
        )
        return job

    def _answer_known(
        self,
        job_id: str,
        team_id: str,
        batch: JobCreate,
        rows: list[dict],
        entries: list[tuple],
        now,
    ) -> list[Hit]:
        """Write the requests the cache can answer now as hits (in ``rows``, in place): exact
        matches, then, where the policy is semantic, matches of the final user turn."""
        keys = [e.cache_key for _, e in entries if e.cache_read]
        if not keys:
            return []
        found = {key: ("exact", answer) for key, answer in self._cache.get_many(keys).items()}
        by_request = self._semantic_matches(team_id, batch, rows, entries, found)
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
        batch: JobCreate,
        rows: list[dict],
        entries: list[tuple],
        exact: dict,
    ) -> dict[str, tuple]:
        """Request id → ("semantic", answer) for requests of a semantic policy that no exact
        entry answers and whose final user turn matches a cached one (:mod:`broker.cache.semantic`)."""
        policy = self.config.cache.policy(team_id, batch.feature)
        if self.semantic is None or policy.mode != "semantic":
            return {}
        queries = []
        for row, request, (_, entry) in zip(rows, batch.requests, entries):
            if not entry.cache_read or entry.cache_key in exact:
                continue
            scope = scope_of(policy, team_id, batch.feature, request.metadata)
            split = (
                split_final_turn(batch.feature, scope, row["model"], row["payload"])
                if scope
                else None
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
        matches = self.semantic.lookup(queries)
        answers = self._cache.get_many(m.exact_key for m in matches.values())
        return {
            rid: ("semantic", answers[m.exact_key])
            for rid, m in matches.items()
            if m.exact_key in answers
        }

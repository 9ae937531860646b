"""The :class:`Submitter`: turning a validated batch into Job and Request rows and queue
entries, all or nothing.

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

This module holds the validation against the catalog, the choice of model and the writing;
the request's payload (:mod:`broker.submission.payloads`), the 429s
(:mod:`broker.submission.admission`) and the cache's answers
(:mod:`broker.submission.known_answers`) are its siblings.
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
from broker.cache.semantic.serving import SemanticCache
from broker.config.broker_toml import BrokerConfig, TeamConfig
from broker.config.settings import Settings
from broker.embeddings.local import LocalEmbedder
from broker.errors import InvalidRequest, PayloadTooLarge, ServiceUnavailable
from broker.ids import new_job_id, request_id
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate, RequestIn
from broker.states import JobStatus, Priority, RequestStatus
from broker.store import Database, Job, Request
from broker.store.cache_hits import Hit, count_hits
from broker.store.models import utcnow
from broker.submission.admission import Admission
from broker.submission.known_answers import KnownAnswers
from broker.submission.payloads import check_webhook_url, payload_of, tokens_of, unhonoured
from broker.telemetry import metrics
from schedulers.tiers.choose import TierChooser, TierDecision


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
        # Frozen: set once here. Admission only reads and writes Redis (and the budget limits
        # table); the known answers only read the cache.
        admission = Admission(self.redis, self.db, self.config, self.submissions_per_minute)
        object.__setattr__(self, "_admission", admission)
        object.__setattr__(self, "_tiers", TierChooser())
        if self.semantic is None and any(
            p.mode == "semantic" for p in (self.config.cache, *self.config.cache.policies)
        ):
            object.__setattr__(self, "semantic", SemanticCache(self.redis, LocalEmbedder.shared()))
        object.__setattr__(self, "_known", KnownAnswers(self.config, self.redis, self.semantic))

    def cache_token(
        self, team_id: str, feature: str, request: RequestIn, model: str, payload: dict
    ) -> str | None:
        """``<key>/<ttl_s>/<r|w|rw>`` for a cacheable request (see :class:`QueueEntry`), or
        None when its policy, scope or cache control leaves it out of the cache."""
        return self._known.token(team_id, feature, request, model, payload)

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
        self._admission.admit(team, batch.feature, len(batch.requests), tokens, key_sha256)

    def submit(
        self,
        team: TeamConfig,
        batch: JobCreate,
        key_sha256: str | None = None,
        *,
        surface: str | None = None,
        surface_meta: dict | None = None,
        streamed: bool = False,
        job_id: str | None = None,
    ) -> Job:
        """Validate, admit and write ``batch``; ``key_sha256`` (the caller's key's digest)
        counts it against that key's submissions per minute. ``surface`` and ``surface_meta``
        record the drop-in SDK surface it came through (:mod:`broker.dropin`); ``streamed``
        marks requests whose caller reads the answer as it is written. ``job_id``: the id to
        give the job (from :func:`broker.ids.new_job_id`), for a caller that must be ready
        for its end before the job exists; a new one by default."""
        self.validate(batch)
        payloads = [payload_of(request, self.redact) for request in batch.requests]
        self.admit(team, batch, payloads, key_sha256)
        job = self._job(team, batch, len(batch.requests), surface, surface_meta, job_id)
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
        self._admission.admit(team, batch.feature, stream.count, stream.tokens, key_sha256)
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
        job_id: str | None = None,
    ) -> Job:
        now = utcnow()
        return Job(
            id=job_id or new_job_id(),
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
        hits = self._known.answer(job.id, team_id, batch.feature, requests, rows, entries, now)
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

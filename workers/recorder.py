"""Group commit for a worker pool: many threads' claims and outcomes, one transaction.

Every attempt writes twice (claim before the call, then its outcome, or its hand-back to the
queue) and every outcome moves its job's counters, one hot row per job. With a hundred threads
each committing on its own, the pool spends its time queueing for the database (and, on
SQLite, sleeping in the busy handler). Instead, threads hand their writes to one writer thread
and wait; the writer takes whatever has gathered since its last commit and writes it in one
transaction. Under no load a write commits at once; under load, batches grow by themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from broker.store import Database, cascades, transitions
from broker.store.cascades import Escalation
from broker.store.transitions import Claimed, HandBack, Outcome

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Batch:
    claims: list[tuple[tuple[str, int], Future]] = field(default_factory=list)
    finishes: list[tuple[tuple[Claimed, Outcome], Future]] = field(default_factory=list)
    hand_backs: list[tuple[tuple[Claimed, HandBack], Future]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.claims) + len(self.finishes) + len(self.hand_backs)

    def add(self, kind: str, payload: object, future: Future) -> None:
        getattr(self, kind).append((payload, future))


class Recorder:
    def __init__(self, db: Database, max_batch: int = 500) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def claim(self, request_id: str, attempt: int) -> Claimed | None:
        """dispatched → running; None when the attempt is stale or was cancelled."""
        return self._submit("claims", (request_id, attempt)).result()

    def finish(self, claimed: Claimed, outcome: Outcome) -> bool:
        """Record the outcome; False when this attempt had already been recorded."""
        return self._submit("finishes", (claimed, outcome)).result()

    def hand_back(self, claimed: Claimed, back: HandBack) -> bool:
        """running → queued with the attempt's calls; True when the request should be pushed
        back onto its queue (False: stale, or its job is being cancelled)."""
        return self._submit("hand_backs", (claimed, back)).result()

    def escalate(self, claimed: Claimed, outcome: Outcome, escalation: Escalation) -> bool:
        """running → queued on the next tier, this attempt charged (rare: written at once,
        outside the group commit); False when the attempt is stale."""
        return self._db.write(
            lambda session: cascades.escalate(session, claimed, outcome, escalation)
        )

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _submit(self, kind: str, item: object) -> Future:
        future: Future = Future()
        self._queue.put((kind, item, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = _Batch()
            batch.add(*first)
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._write(batch)
                    return
                batch.add(*item)
            self._write(batch)

    def _write(self, batch: _Batch) -> None:
        def work(session):
            claimed = transitions.claim_many(session, [key for key, _ in batch.claims])
            recorded = transitions.finish_many(session, [item for item, _ in batch.finishes])
            requeued = transitions.hand_back_many(session, [i for i, _ in batch.hand_backs])
            return claimed, recorded, requeued

        try:
            claimed, recorded, requeued = self._db.write(work)
        except Exception as exc:  # hand the failure to every waiting thread
            log.error("recording %d writes failed: %s", len(batch), exc)
            for _, future in batch.claims + batch.finishes + batch.hand_backs:
                future.set_exception(exc)
            return
        for key, future in batch.claims:
            # pop: if the same attempt was claimed twice in this batch (a redelivered task),
            # only the first caller runs it.
            future.set_result(claimed.pop(key, None))
        for (_, future), ok in zip(batch.finishes, recorded):
            future.set_result(ok)
        for (_, future), ok in zip(batch.hand_backs, requeued):
            future.set_result(ok)

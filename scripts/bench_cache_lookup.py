"""Lookup latency of the exact cache and the semantic index, beside the provider latency a
hit saves.

    python scripts/bench_cache_lookup.py [--json] [--sizes 10000 100000] [--queries 200]
                                         [--provider-ms 800]

Starts a private ``redis-server`` on a free port (never 6379; no persistence), fills one
scope per size with random unit vectors of the embedder's dimension (384), then times
``SemanticIndex.search`` from a *second* index object (a fresh mirror, as another process
would have): the first search (full load of the mirror) is reported apart, then p50/p95 of
steady-state searches, each including the refresh round trip to Redis. It also times one
query embedding with the local all-MiniLM-L6-v2 when installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _start_redis() -> tuple[subprocess.Popen, int, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found on PATH")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ib-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, port, workdir


def bench_index(client, size: int, queries: int, dim: int = 384) -> dict[str, float]:
    from broker.cache.semantic.index import SemanticIndex

    rng = np.random.default_rng(size)
    writer = SemanticIndex(client, prefix="bench:sem", max_entries=size)
    scope = f"team:bench:{size}:"
    vectors = rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    for i in range(size):
        writer.add(scope, vectors[i], f"req-{i}", ttl_s=3600)
    fill_s = time.perf_counter() - started
    reader = SemanticIndex(client, prefix="bench:sem", max_entries=size)
    t0 = time.perf_counter()
    reader.search(scope, vectors[0])
    first_ms = (time.perf_counter() - t0) * 1000
    samples = []
    for q in range(queries):
        query = vectors[q % size] + 0.05 * rng.standard_normal(dim).astype(np.float32)
        t0 = time.perf_counter()
        reader.search(scope, query)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"entries": size, "fill_s": round(fill_s, 2), "first_search_ms": round(first_ms, 2),
            "p50_ms": round(_percentile(samples, 50), 3), "p95_ms": round(_percentile(samples, 95), 3)}


def bench_exact(client, entries: int = 10_000, queries: int = 2_000) -> dict[str, float]:
    """``ExactCache.get_many`` for one key (what a request's lookup costs), among ``entries``."""
    from broker.cache.exact import CachedAnswer, ExactCache, request_key

    cache = ExactCache(client)
    keys = []
    for i in range(entries):
        payload = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 64}
        key = request_key("team:bench", "gpt-4o-mini", payload)
        keys.append(key)
        answer = CachedAnswer(key, f"req_{i}", "gpt-4o-mini", "sim", "an answer " * 20, "stop",
                              30, 0, 40, 123, time.time())  # fmt: skip
        cache.put(answer, 3600, "bench", "chatbot")
    samples = []
    for q in range(queries):
        t0 = time.perf_counter()
        payload = {"messages": [{"role": "user", "content": f"question {q % entries}"}], "max_tokens": 64}
        found = cache.get_many([request_key("team:bench", "gpt-4o-mini", payload)])
        samples.append((time.perf_counter() - t0) * 1000)
        assert found, "every lookup is a hit here"
    return {"entries": entries, "p50_ms": round(_percentile(samples, 50), 3),
            "p95_ms": round(_percentile(samples, 95), 3)}  # fmt: skip


def bench_embedding(repeats: int = 20) -> dict[str, float] | None:
    try:
        from broker.embeddings.local import LocalEmbedder

        embedder = LocalEmbedder()
        embedder.embed(["warm up"])
    except Exception as exc:  # noqa: BLE001 - optional extra; report and carry on
        return {"error": str(exc)}
    samples = []
    for i in range(repeats):
        t0 = time.perf_counter()
        embedder.embed([f"How do I reset my password on the mobile app? ({i})"])
        samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(_percentile(samples, 50), 2), "p95_ms": round(_percentile(samples, 95), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--provider-ms", type=float, default=800.0,
                        help="provider latency a hit saves, for comparison")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import redis

    proc, port, workdir = _start_redis()
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        exact = bench_exact(client)
        semantic = [bench_index(client, size, args.queries) for size in args.sizes]
        client.flushall()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    embedding = bench_embedding()
    result = {
        "provider_ms": args.provider_ms,
        "exact": exact,
        "semantic": semantic,
        "embedding_one_query": embedding,
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Cache lookup latency (provider call saved: {args.provider_ms:.0f} ms)")
    for column in ("lookup", "entries/scope", "p50 ms", "p95 ms", "first search ms", "share of provider p50"):
        table.add_column(column, justify="left" if column == "lookup" else "right")
    table.add_row("exact (key + GET)", f"{exact['entries']:,}", f"{exact['p50_ms']:.3f}",
                  f"{exact['p95_ms']:.3f}", "-", f"{exact['p50_ms'] / args.provider_ms:.2%}")  # fmt: skip
    for row in semantic:
        table.add_row("semantic index search", f"{row['entries']:,}", f"{row['p50_ms']:.2f}",
                      f"{row['p95_ms']:.2f}", f"{row['first_search_ms']:.1f}",
                      f"{row['p50_ms'] / args.provider_ms:.2%}")
    if embedding and "p50_ms" in embedding:
        table.add_row("embed one query (MiniLM, CPU)", "-", f"{embedding['p50_ms']:.2f}",
                      f"{embedding['p95_ms']:.2f}", "-", f"{embedding['p50_ms'] / args.provider_ms:.2%}")
    Console(width=max(120, Console().width)).print(table)
    if embedding and "error" in embedding:
        print(f"embedding not measured: {embedding['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

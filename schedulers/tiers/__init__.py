"""Choosing a route's tier: the learned layer and the curve that judges it.

A route (issue 14) has ordered tiers, cheapest first. A request's tier is chosen in layers:
explicit hints, then configured rules, then a learned router. This package holds the learned
layer and its evaluation, each small and usable without Celery or Redis:

- :mod:`schedulers.tiers.features` — what the router sees of a prompt: the local MiniLM
  embedding and cheap lexical features (lexical-only when the embedder extra is missing).
- :mod:`schedulers.tiers.data` — labelled rows (prompt → was the cheaper tier's answer
  acceptable) from JSONL or a routing-data directory.
- :mod:`schedulers.tiers.learned` — :class:`LearnedRouter`: a logistic regression predicting
  P(cheaper tier acceptable), calibrated to a strong-call share or a quality target, stored as
  JSON (no pickle) with its version and training data.
- :mod:`schedulers.tiers.curves` — the cost–quality curve, random and oracle routing,
  RouterBench's AIQ and the strong share needed for a fraction of strong-only accuracy.

``default_router.json`` beside this file is the router trained on ``../shared/data/routing``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_ROUTER_PATH"]

#: The shipped router, trained on all of the RouteLLM MMLU and GSM8K correctness data.
DEFAULT_ROUTER_PATH = Path(__file__).resolve().parent / "default_router.json"

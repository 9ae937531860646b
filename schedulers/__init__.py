"""Deciding what runs next, where, and whether it may.

Each policy is a small module with a narrow interface that :mod:`schedulers.loop` calls in a
fixed order, testable without Celery: :mod:`fairness` (which team next), :mod:`routing`
(which provider serves a model), :mod:`capacity` (may that provider take one more).
"""
